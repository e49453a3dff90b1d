"""The grid of configurations, from the config. Pure pandas: the Snakefile imports this,
so nothing here may import torch (a dry run of 180 jobs must stay fast)."""

from __future__ import annotations

import itertools

import pandas as pd

from cvgrid.models import model_names  # the registry is torch-free too

# Column order = folder order in results/train/... and column order in cv_summary.tsv.
GRID_KEYS = ["model", "batch_size", "learning_rate", "augmentation"]
# What an augmentation policy sets (the schema fills in 0 for each key a policy leaves out).
AUGMENTATION_KEYS = ("rotation_degrees", "shift_fraction", "zoom_fraction")


class ConfigError(ValueError):
    pass


def grid_table(config: dict) -> pd.DataFrame:
    """One row per grid point: the Cartesian product of config["grid"] lists."""
    unregistered = [m for m in config.get("models", {}) if m not in model_names()]
    if unregistered:
        raise ConfigError(
            f"models: {unregistered} {'is' if len(unregistered) == 1 else 'are'} not registered in "
            f"scripts/cvgrid/models.py (registered: {model_names()})"
        )
    grid = config["grid"]
    for key, known in (("model", config.get("models", {})), ("augmentation", config.get("augmentations", {}))):
        unknown = [v for v in grid[key] if v not in known]
        if unknown:
            raise ConfigError(
                f"grid.{key} names {unknown}, which {'is' if len(unknown) == 1 else 'are'} not defined "
                f"under '{key}s:' in the config (defined: {sorted(known)})"
            )
    rows = list(itertools.product(*(grid[key] for key in GRID_KEYS)))
    table = pd.DataFrame(rows, columns=GRID_KEYS)
    duplicated = table[table.duplicated()]
    if not duplicated.empty:
        raise ConfigError(f"the grid lists a point twice: {duplicated.iloc[0].to_dict()}")
    return table.astype({"model": str, "batch_size": int, "learning_rate": float, "augmentation": str})


def augmentation_policy(augmentations: dict, name: str) -> dict[str, float]:
    """The policy `name` of the config's (validated) `augmentations`, every key in AUGMENTATION_KEYS."""
    if name not in augmentations:
        raise ConfigError(f"augmentation {name!r} is not defined under 'augmentations:' in the config "
                          f"(defined: {sorted(augmentations)})")
    policy = augmentations[name] or {}
    missing = [key for key in AUGMENTATION_KEYS if key not in policy]
    if missing:
        raise ConfigError(f"augmentations.{name} lacks {missing}")
    return {key: float(policy[key]) for key in AUGMENTATION_KEYS}


def fold_keys(config: dict) -> list[tuple[int, int]]:
    cv = config["cv"]
    return [(r, f) for r in range(cv["repeats"]) for f in range(cv["folds"])]


# What one training job trains (training.folds_per_job): one fold, the folds of one repeat of a
# grid point, or all its repeats and folds.
JOB_UNITS = ("fold", "repeat", "all")


def job_unit(config: dict) -> str:
    """training.folds_per_job as one of JOB_UNITS. Snakemake names a job by its output files,
    so the folds of one job must be a set that wildcards can name: 1, cv.folds (the folds of a
    repeat: the wildcard `repeat`) or all of them (cv.folds x cv.repeats, or `all`)."""
    value = config["training"]["folds_per_job"]
    folds, repeats = config["cv"]["folds"], config["cv"]["repeats"]
    if value == 1:
        return "fold"
    if value == "all" or value == folds * repeats:
        return "all"
    if value == folds:
        return "repeat"
    raise ConfigError(
        f"training.folds_per_job is {value!r}; it can be 1 (one job per fold), {folds} (cv.folds: the "
        f"folds of one repeat of a grid point in one job) or all (every repeat and fold of a grid point, "
        f"{folds * repeats} here)"
    )

