"""One fold assignment for every configuration.

The assignment is a long table with one row per (repeat, fold, sample) and the sample's
role in that fold: "train", "validation" (the early-stopping split, taken from the
training part) or "test". Every configuration reads the same table, so configurations
are compared fold by fold. Repeat r is drawn from the seed sequence (seed, r) only, so
adding repeats later adds folds and leaves the earlier ones as they were.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ROLES = ("train", "validation", "test")


class FoldError(ValueError):
    pass


def _random_state(*key: int) -> int:
    """A scikit-learn seed derived from a tuple of ints, the same on every machine."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def _splitter(n_splits: int, seed: int, grouped: bool):
    # Imported here: training jobs import this module for split_indices only, and
    # scikit-learn would add seconds to every job's start-up.
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if grouped:
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def check_class_sizes(labels: np.ndarray, n_folds: int, class_names=None) -> None:
    values, counts = np.unique(labels, return_counts=True)
    small = [(v, c) for v, c in zip(values, counts) if c < n_folds]
    if small:
        named = ", ".join(
            f"{class_names[v] if class_names is not None else v} ({c})" for v, c in small
        )
        raise FoldError(
            f"{n_folds}-fold CV needs at least {n_folds} images in every class; too few in: {named}"
        )


def make_folds(
    labels,
    n_folds: int,
    repeats: int,
    seed: int,
    validation_fraction: float,
    groups=None,
    class_names=None,
) -> pd.DataFrame:
    """Stratified (optionally grouped) k-fold x repeats, with a stratified early-stopping split.

    The early-stopping split is the first part of a stratified (grouped) split of the
    training part into round(1 / validation_fraction) parts, so with groups no group is
    in both the training and the validation part either.
    """
    labels = np.asarray(labels)
    if n_folds < 2:
        raise FoldError(f"folds must be at least 2, got {n_folds}")
    if not 0 < validation_fraction < 0.5:
        raise FoldError(f"validation_fraction must be in (0, 0.5), got {validation_fraction}")
    check_class_sizes(labels, n_folds, class_names)
    grouped = groups is not None
    groups = np.asarray(groups) if grouped else None
    inner_splits = round(1 / validation_fraction)
    samples = np.arange(len(labels))
    parts = []
    for repeat in range(repeats):
        outer = _splitter(n_folds, _random_state(seed, repeat), grouped)
        for fold, (train_idx, test_idx) in enumerate(outer.split(samples, labels, groups)):
            inner = _splitter(inner_splits, _random_state(seed, repeat, fold), grouped)
            inner_groups = groups[train_idx] if grouped else None
            try:
                fit_pos, val_pos = next(inner.split(train_idx, labels[train_idx], inner_groups))
            except ValueError as error:  # scikit-learn: too few members (or groups) for the split
                raise FoldError(
                    f"the early-stopping split of fold {fold} (validation_fraction {validation_fraction}, "
                    f"so {inner_splits} parts) cannot be made from its training part: {error}. "
                    "Use more images per class, fewer folds or a larger validation_fraction."
                ) from error
            role = np.empty(len(labels), dtype=object)
            role[test_idx] = "test"
            role[train_idx[fit_pos]] = "train"
            role[train_idx[val_pos]] = "validation"
            parts.append(pd.DataFrame({"repeat": repeat, "fold": fold, "sample": samples, "role": role}))
    return pd.concat(parts, ignore_index=True)


def groups_for_index(index: pd.DataFrame, groups_table: pd.DataFrame, source: str) -> np.ndarray:
    """The group of every sample in `index`, from a table with columns file, group (`source`
    names that table in errors). Every indexed file must have a group."""
    missing_columns = {"file", "group"} - set(groups_table.columns)
    if missing_columns:
        raise FoldError(f"groups file {source} lacks the column(s) {sorted(missing_columns)}")
    duplicated = groups_table["file"][groups_table["file"].duplicated()]
    if not duplicated.empty:
        raise FoldError(f"groups file {source} lists {duplicated.iloc[0]!r} twice")
    group_of = dict(zip(groups_table["file"].astype(str), groups_table["group"].astype(str)))
    missing = [f for f in index["file"] if f not in group_of]
    if missing:
        raise FoldError(
            f"groups file {source} has no group for {len(missing)} image(s), e.g. {missing[0]!r} "
            "(file names are relative to data_dir, as in results/data/index.tsv)"
        )
    return np.array([group_of[f] for f in index["file"]])


def split_indices(folds: pd.DataFrame, repeat: int, fold: int) -> dict[str, np.ndarray]:
    """Sample indices of each role for one (repeat, fold), sorted."""
    rows = folds[(folds["repeat"] == repeat) & (folds["fold"] == fold)]
    if rows.empty:
        raise FoldError(f"the fold table has no repeat {repeat}, fold {fold}")
    return {role: np.sort(rows.loc[rows["role"] == role, "sample"].to_numpy()) for role in ROLES}
