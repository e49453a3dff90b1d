"""The grid of configurations, from the config. Pure pandas: the Snakefile imports this,
so nothing here may import torch (a dry run of 180 jobs must stay fast)."""

from __future__ import annotations

import itertools
import math

import pandas as pd

from cvgrid.models import get_spec, model_names  # the registry is torch-free too
from cvgrid.sampling import DEFAULT_METHOD, DEFAULT_SEED, DISTRIBUTIONS, MAX_DRAWS, METHODS, SIGNIFICANT_DIGITS, sample_points

# Every training setting a grid may vary, in the order of the folders in results/train/...
# and of the columns of cv_folds.tsv / cv_summary.tsv, with the type of its values. The first
# four are always axes (the reference grid's); any other is an axis when `grid:` lists it,
# else its one value comes from `training:` (TRAINING_SETTINGS), so a grid without them has
# the reference grid's folders and results.
AXES: dict[str, type] = {
    "model": str,
    "batch_size": int,
    "learning_rate": float,
    "augmentation": str,
    "recipe": str,  # a named set of the settings below (config `recipes:`), compared as one
    "optimizer": str,  # adam | adamw | sgd (Nesterov momentum 0.9)
    "weight_decay": float,
    "label_smoothing": float,
    "schedule": str,  # constant | cosine | onecycle (cvgrid.training.make_scheduler)
    "warmup_epochs": int,
    "max_epochs": int,
    "patience": int,
    "dropout": float,  # the model's dropout option; training.dropout null = the model's own
    "seed": int,  # the training seed: as an axis it measures training noise on the same folds
    "tta": str,  # test-time augmentation when scoring the test fold: none | shifts
    "class_weights": str,  # none | balanced: the training loss weighs each class by its inverse frequency
}
REQUIRED_AXES = ("model", "batch_size", "learning_rate", "augmentation")
TRAINING_SETTINGS = tuple(key for key in AXES if key not in (*REQUIRED_AXES, "recipe"))
# The reference grid's axes (kept for code that reads tables of that grid).
GRID_KEYS = list(REQUIRED_AXES)
# What an augmentation policy sets (the schema fills in 0 for each key a policy leaves out).
AUGMENTATION_KEYS = ("rotation_degrees", "shift_fraction", "zoom_fraction")
# Settings added after runs were published, with the value every earlier job trained with: at
# that value point_settings leaves them out, so that a finished job's params (the sorted JSON of
# its settings) stay what they were and nothing retrains (cvgrid.training.TrainSettings has the
# same defaults; its checkpoints leave them out too).
LATER_SETTINGS = {"class_weights": "none"}
# The key of `grid:` that turns it from a product of lists into points drawn from its axes
# (cvgrid.sampling): {points, method, seed}.
SAMPLE = "sample"
SAMPLE_KEYS = ("points", "method", "seed")


class ConfigError(ValueError):
    pass


def grid_axes(config: dict) -> list[str]:
    """The axes of the config's grid (lists, or ranges of a sampled grid), in AXES order."""
    unknown = [key for key in config["grid"] if key not in AXES and key != SAMPLE]
    if unknown:  # the schema refuses them first; this guards direct callers
        raise ConfigError(f"grid: unknown axis {unknown[0]!r} (axes: {list(AXES)})")
    return [key for key in AXES if key in config["grid"]]


def axes_of(table) -> list[str]:
    """The grid axes among a table's columns (cv_folds.tsv, cv_summary.tsv, ...) or a row's
    keys (a Series or dict), in AXES order."""
    names = table.columns if isinstance(table, pd.DataFrame) else table
    return [key for key in AXES if key in names]


def architecture(config: dict, model: str) -> str:
    """The registry entry (scripts/cvgrid/models.py) that builds the config's model `model`:
    its `architecture`, or its own name."""
    return (config.get("models", {}).get(model) or {}).get("architecture", model)


def model_options(config: dict, model: str) -> dict:
    """The builder options of the config's model `model` (`models.<model>.options`)."""
    return dict((config.get("models", {}).get(model) or {}).get("options") or {})


def _check_models(config: dict) -> None:
    for name in config.get("models", {}):
        arch = architecture(config, name)
        if arch not in model_names():
            where = f"models.{name}.architecture is {arch!r}, which" if arch != name else f"models: {name!r}"
            raise ConfigError(f"{where} is not registered in scripts/cvgrid/models.py (registered: {model_names()})")
        accepted = get_spec(arch).options
        for option in model_options(config, name):
            if option not in accepted:
                raise ConfigError(f"models.{name}.options.{option}: the model {arch!r} has no option {option!r} "
                                  f"(its options: {sorted(accepted) or 'none'})")


def grid_table(config: dict) -> pd.DataFrame:
    """One row per grid point, a column per axis (of the axis's type): the Cartesian product of
    the config["grid"] lists or, with grid.sample, the points drawn from its axes
    (cvgrid.sampling; table.attrs["sample"] says how they were drawn)."""
    _check_models(config)
    grid = config["grid"]
    axes = grid_axes(config)
    sampled = SAMPLE in grid
    _check_ranges(grid, axes, sampled)
    named = (("model", config.get("models", {})), ("augmentation", config.get("augmentations", {})),
             ("recipe", config.get("recipes", {})))
    for key, known in named:
        unknown = [v for v in grid.get(key, []) if v not in known]
        if unknown:
            raise ConfigError(
                f"grid.{key} names {unknown}, which {'is' if len(unknown) == 1 else 'are'} not defined "
                f"under '{key}s:' in the config (defined: {sorted(known)})"
            )
    for name in grid.get("recipe", []):
        both = [key for key in config["recipes"][name] or {} if key in axes]
        if both:
            raise ConfigError(f"recipes.{name} sets {both[0]}, which is also an axis of the grid: "
                              "one of the two must go")
    if sampled:
        table = _sampled_table(grid, axes)
    else:
        table = pd.DataFrame(list(itertools.product(*(grid[key] for key in axes))), columns=axes)
        duplicated = table[table.duplicated()]
        if not duplicated.empty:
            raise ConfigError(f"the grid lists a point twice: {duplicated.iloc[0].to_dict()}")
    recipes = [config["recipes"][name] or {} for name in grid.get("recipe", [])]
    dropout = (table["dropout"] if "dropout" in axes else
               [config.get("training", {}).get("dropout"), *(recipe.get("dropout") for recipe in recipes)])
    if any(value is not None for value in dropout):
        without = [m for m in grid["model"] if "dropout" not in get_spec(architecture(config, m)).options]
        if without:
            raise ConfigError(f"dropout is set (grid.dropout, training.dropout or a recipe), but the model {without[0]!r} "
                              "has no dropout option (scripts/cvgrid/models.py)")
    attrs = table.attrs
    table = table.astype({key: AXES[key] for key in axes})
    table.attrs = attrs
    return table


def is_range(values) -> bool:
    """Whether a grid axis is a range to sample ({distribution: [low, high]}) rather than a list."""
    return isinstance(values, dict)


def _check_ranges(grid: dict, axes: list[str], sampled: bool) -> None:
    """One-line errors, naming the key, for grid.sample and every range among the axes."""
    if sampled:
        sample = grid[SAMPLE]
        if not isinstance(sample, dict):
            raise ConfigError(f"grid.{SAMPLE} must be a mapping {{points: N, method: sobol | random, seed: S}}, "
                              f"not {sample!r}")
        unknown = [key for key in sample if key not in SAMPLE_KEYS]
        if unknown:
            raise ConfigError(f"grid.{SAMPLE}.{unknown[0]}: unknown key (keys: {', '.join(SAMPLE_KEYS)})")
        points = sample.get("points")
        if not _is_integer(points) or points < 1:
            raise ConfigError(f"grid.{SAMPLE}.points is {points!r}; it must be a whole number of points, at least 1")
        if sample.get("method", DEFAULT_METHOD) not in METHODS:
            raise ConfigError(f"grid.{SAMPLE}.method: unknown method {sample['method']!r} (methods: {', '.join(METHODS)})")
        seed = sample.get("seed", DEFAULT_SEED)
        if not _is_integer(seed) or seed < 0:
            raise ConfigError(f"grid.{SAMPLE}.seed is {seed!r}; it must be a whole number, at least 0")
    for axis in axes:
        values = grid[axis]
        if not is_range(values):
            if sampled and len(set(values)) < len(values):
                raise ConfigError(f"grid.{axis} lists a value twice: {values}")
            continue
        if AXES[axis] is str:
            raise ConfigError(f"grid.{axis} is a range ({values}), but {axis} takes names: list them "
                              f"(a sampled grid draws among a list's values)")
        if not sampled:
            raise ConfigError(f"grid.{axis} is a range ({values}), which needs grid.{SAMPLE} "
                              "({points: N, method: sobol | random, seed: S}) to draw points from; or list its values")
        if len(values) != 1:
            raise ConfigError(f"grid.{axis} must name one distribution ({', '.join(DISTRIBUTIONS)}), not {sorted(values)}")
        (distribution, bounds), = values.items()
        key = f"grid.{axis}.{distribution}"
        if distribution not in DISTRIBUTIONS:
            raise ConfigError(f"grid.{axis}: unknown distribution {distribution!r} (distributions: {', '.join(DISTRIBUTIONS)})")
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)):
            hint = " (YAML reads 1e-4 as text: write 0.0001)" if isinstance(bounds, list) and any(isinstance(b, str) for b in bounds) else ""
            raise ConfigError(f"{key} must be [low, high], two numbers, not {bounds!r}{hint}")
        low, high = bounds
        if low >= high:
            raise ConfigError(f"{key}: low {low} is not below high {high}")
        if distribution == "log_uniform" and low <= 0:
            raise ConfigError(f"{key}: low is {low}, and the log of a bound at or below 0 is undefined: "
                              "low must be above 0 (or use uniform)")
        if distribution == "int" and (AXES[axis] is not int or not all(_is_integer(b) for b in bounds)):
            raise ConfigError(f"{key}: int draws whole numbers, for an integer axis with whole-number bounds "
                              f"({axis} takes {AXES[axis].__name__} values; bounds {bounds})")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sampled_table(grid: dict, axes: list[str]) -> pd.DataFrame:
    """The first grid.sample.points distinct points drawn from the axes (cvgrid.sampling)."""
    sample = grid[SAMPLE]
    points, method, seed = sample["points"], sample.get("method", DEFAULT_METHOD), sample.get("seed", DEFAULT_SEED)
    specs, sizes = {}, []  # each axis: its list, or (distribution, low, high); how many values it holds
    for axis in axes:
        if is_range(grid[axis]):
            (distribution, (low, high)), = grid[axis].items()
            specs[axis] = (distribution, low, high)
            sizes.append(high - low + 1 if distribution == "int" else math.inf)
        else:
            specs[axis] = grid[axis]
            sizes.append(len(grid[axis]))
    if math.prod(sizes) < points:
        raise ConfigError(f"grid.{SAMPLE}.points is {points}, but the grid's lists and int ranges hold only "
                          f"{math.prod(sizes)} distinct points")
    rows, draws = sample_points(specs, AXES, points, method, seed)
    if len(rows) < points:
        raise ConfigError(f"grid.{SAMPLE}.points is {points}, but only {len(rows)} distinct points come out of "
                          f"{MAX_DRAWS} draws (floats keep {SIGNIFICANT_DIGITS} significant digits): widen the ranges "
                          "or draw fewer points")
    table = pd.DataFrame(rows, columns=axes)
    table.attrs["sample"] = {"points": points, "method": method, "seed": seed, "draws": draws}
    return table


def sample_note(table: pd.DataFrame) -> str:
    """What the log says of a sampled grid's points (grid_table's table.attrs["sample"])."""
    sample = table.attrs["sample"]
    skipped = sample["draws"] - sample["points"]
    return (f"grid.{SAMPLE}: {sample['points']} grid points drawn ({sample['method']}, seed {sample['seed']}, "
            f"floats to {SIGNIFICANT_DIGITS} significant digits) from the first {sample['draws']} draws"
            + (f"; {skipped} repeated an earlier point after rounding and {'was' if skipped == 1 else 'were'} skipped"
               if skipped else ""))


def sampled_ranges(config: dict) -> dict[str, dict] | None:
    """What the statistics and figures need to know of a sampled grid: None for a grid of lists
    (the product of its lists, where factor effects pair the other axes' levels); with
    grid.sample, each ranged axis as the config gives it ({distribution: [low, high]}), in
    grid order, and {} where every axis is a list of choices (the points are still drawn, not a
    product). Passed explicitly to the steps that need it, never guessed from a table."""
    grid = config["grid"]
    if SAMPLE not in grid:
        return None
    return {axis: dict(grid[axis]) for axis in grid_axes(config) if is_range(grid[axis])}


def listed_grid(config: dict, table: pd.DataFrame) -> dict:
    """A copy of the config whose grid lists every value its ranges can reach: each range's
    bounds and the values drawn, so that the schema's checks of listed values (a weight decay
    at most 1, ...) hold for sampled values too; without grid.sample."""
    grid = {}
    for axis in grid_axes(config):
        values = config["grid"][axis]
        if is_range(values):
            (bounds,) = values.values()
            values = [*bounds, *table[axis].unique().tolist()]
        grid[axis] = values
    return {**config, "grid": grid}


def point_settings(config: dict, point: dict) -> dict:
    """Everything a training job of the grid point `point` (axis -> value) needs, as the
    keyword arguments of cvgrid.training.TrainSettings without repeat, fold and weights: the
    point's axes, every other training setting from its recipe (`recipes:`, if the grid has
    that axis) or else from `training:`, the augmentation policy's
    numbers and the model's registry entry and options; a setting of LATER_SETTINGS at the value
    every earlier job trained with is left out (without_later_defaults). `config` needs `training`,
    `augmentations`, `models` and `recipes` (refit_best.py gets just these). One function, so that a
    CV job and the refit of the same point train the same way."""
    training = config["training"]
    settings = {key: AXES[key](point[key]) for key in REQUIRED_AXES}
    # An axis's value, else the point's recipe's, else the one of `training:`.
    recipe = {}
    if "recipe" in point:
        recipe = (config.get("recipes") or {}).get(point["recipe"]) or {}
    for key in TRAINING_SETTINGS:
        value = point[key] if key in point else recipe.get(key, training.get(key, LATER_SETTINGS.get(key)))
        settings[key] = None if value is None else AXES[key](value)
    settings["recipe"] = point.get("recipe")
    settings = without_later_defaults(settings)
    settings.update(augmentation_policy(config["augmentations"], settings["augmentation"]))
    settings["architecture"] = architecture(config, settings["model"])
    settings["model_options"] = model_options(config, settings["model"])
    return settings


def without_later_defaults(settings: dict) -> dict:
    """`settings` without the LATER_SETTINGS that hold the value every earlier job trained with."""
    return {key: value for key, value in settings.items()
            if not (key in LATER_SETTINGS and value == LATER_SETTINGS[key])}


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


def decide_max_repeats(config: dict) -> int | None:
    """cv.decide.max_repeats, or None where cv.decide is off. cv.decide adds the repeats
    cv.repeats .. max_repeats - 1, one round each, to the points they could decide
    (rules/decide.smk); refused with a config it cannot work with."""
    cv = config["cv"]
    decide = cv.get("decide")
    if not decide:
        return None
    if cv.get("race"):
        raise ConfigError("cv.decide and cv.race are both set: racing drops points early, deciding adds repeats"
                          " to undecided ones; use one of them")
    most = decide["max_repeats"]
    if most <= cv["repeats"]:
        raise ConfigError(f"cv.decide.max_repeats is {most}, not above cv.repeats ({cv['repeats']}): cv.decide adds"
                          f" the repeats cv.repeats .. max_repeats - 1, so it would add none")
    return most


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
    if decide_max_repeats(config) is not None:
        # cv.decide adds repeats to some points only: a job cannot train every repeat.
        if value == folds:
            return "repeat"
        raise ConfigError(
            f"training.folds_per_job is {value!r} with cv.decide: a job would train every repeat of a grid point,"
            f" but cv.decide adds repeats to some points only (set it to 1 or to cv.folds, {folds})"
        )
    if value == "all" or value == folds * repeats:
        return "all"
    if value == folds:
        return "repeat"
    raise ConfigError(
        f"training.folds_per_job is {value!r}; it can be 1 (one job per fold), {folds} (cv.folds: the "
        f"folds of one repeat of a grid point in one job) or all (every repeat and fold of a grid point, "
        f"{folds * repeats} here)"
    )

