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


def check_validation_fraction(validation_fraction: float) -> None:
    if not 0 < validation_fraction < 0.5:
        raise FoldError(f"validation_fraction must be in (0, 0.5), got {validation_fraction}")


def early_stopping_split(labels, validation_fraction: float, seed_key: tuple[int, ...], groups=None,
                         source: str = "the images") -> tuple[np.ndarray, np.ndarray]:
    """Positions (fit, validation) in `labels`: the validation part is the first part of a
    stratified (grouped, if `groups`) shuffled split into round(1 / validation_fraction) parts,
    seeded from SeedSequence(seed_key). `source` names what is split, in the error."""
    parts = round(1 / validation_fraction)
    splitter = _splitter(parts, _random_state(*seed_key), groups is not None)
    positions = np.arange(len(labels))
    try:
        return next(splitter.split(positions, labels, groups))
    except ValueError as error:  # scikit-learn: too few members (or groups) for the split
        raise FoldError(
            f"the early-stopping split (validation_fraction {validation_fraction}, so {parts} parts) "
            f"cannot be made from {source}: {error}. "
            "Use more images per class, fewer folds or a larger validation_fraction."
        ) from error


def make_folds(
    labels,
    n_folds: int,
    repeats: int,
    *,
    seed: int,
    validation_fraction: float,
    groups=None,
    class_names=None,
) -> pd.DataFrame:
    """Stratified (optionally grouped) k-fold x repeats, with a stratified early-stopping split:
    repeats 0 .. repeats - 1 of :func:`repeat_folds`, one after the other."""
    return pd.concat(
        [repeat_folds(labels, n_folds, repeat, seed, validation_fraction, groups, class_names)
         for repeat in range(repeats)],
        ignore_index=True,
    )


def repeat_folds(
    labels,
    n_folds: int,
    repeat: int,
    seed: int,
    validation_fraction: float,
    groups=None,
    class_names=None,
) -> pd.DataFrame:
    """The fold assignment of repeat `repeat` alone (rows as in :func:`make_folds`), drawn from
    (seed, repeat) only: every grid point that gets this repeat shares it, and a repeat added
    later is the one a longer `make_folds` would have drawn.

    The early-stopping split is the first part of a stratified (grouped) split of the
    training part into round(1 / validation_fraction) parts, so with groups no group is
    in both the training and the validation part either.
    """
    labels = np.asarray(labels)
    if n_folds < 2:
        raise FoldError(f"folds must be at least 2, got {n_folds}")
    if repeat < 0:
        raise FoldError(f"repeat must be at least 0, got {repeat}")
    check_validation_fraction(validation_fraction)
    check_class_sizes(labels, n_folds, class_names)
    grouped = groups is not None
    groups = np.asarray(groups) if grouped else None
    samples = np.arange(len(labels))
    parts = []
    outer = _splitter(n_folds, _random_state(seed, repeat), grouped)
    for fold, (train_idx, test_idx) in enumerate(outer.split(samples, labels, groups)):
        fit_pos, val_pos = early_stopping_split(
            labels[train_idx], validation_fraction, (seed, repeat, fold),
            groups[train_idx] if grouped else None, f"the training part of fold {fold}",
        )
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


def refit_split(labels, seed: int, validation_fraction: float, groups=None) -> dict[str, np.ndarray]:
    """Roles of all samples for the final refit: "train" and "validation" (early stopping),
    no "test". The validation part is drawn as make_folds draws it inside a training fold,
    here from all samples, seeded from SeedSequence([seed]) (the CV folds use (seed, repeat)
    and (seed, repeat, fold), so this draw is its own)."""
    labels = np.asarray(labels)
    check_validation_fraction(validation_fraction)
    fit_pos, val_pos = early_stopping_split(
        labels, validation_fraction, (seed,), None if groups is None else np.asarray(groups), "all images"
    )
    return {"train": np.sort(fit_pos), "validation": np.sort(val_pos), "test": np.array([], dtype=np.int64)}


def split_indices(folds: pd.DataFrame, repeat: int, fold: int) -> dict[str, np.ndarray]:
    """Sample indices of each role for one (repeat, fold), sorted."""
    rows = folds[(folds["repeat"] == repeat) & (folds["fold"] == fold)]
    if rows.empty:
        raise FoldError(f"the fold table has no repeat {repeat}, fold {fold}")
    return {role: np.sort(rows.loc[rows["role"] == role, "sample"].to_numpy()) for role in ROLES}
