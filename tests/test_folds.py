"""The one fold assignment: stratified, disjoint, covering, seeded, and stable under more repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvgrid.folds import FoldError, make_folds, repeat_folds, split_indices

# Classes smaller than the 10 parts of the early-stopping split warn in scikit-learn; expected here.
pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")

# Unequal classes (one not divisible by the fold count) so that stratification is not trivial.
COUNTS = {0: 40, 1: 23, 2: 57, 3: 10}


def labels_for(counts=COUNTS, seed=1):
    labels = np.concatenate([np.full(n, label) for label, n in counts.items()])
    return np.random.default_rng(seed).permutation(labels)  # classes interleaved, not in blocks


@pytest.fixture(scope="module")
def labels():
    return labels_for()


@pytest.fixture(scope="module")
def folds(labels):
    return make_folds(labels, n_folds=5, repeats=2, seed=42, validation_fraction=0.1)


def test_table_has_one_role_per_sample_fold_and_repeat(folds, labels):
    assert list(folds.columns) == ["repeat", "fold", "sample", "role"]
    assert len(folds) == 2 * 5 * len(labels)
    assert set(folds["role"]) == {"train", "validation", "test"}
    assert not folds.duplicated(["repeat", "fold", "sample"]).any()


def test_test_folds_are_disjoint_and_cover_every_sample_once_per_repeat(folds, labels):
    for repeat in (0, 1):
        tests = [split_indices(folds, repeat, f)["test"] for f in range(5)]
        everything = np.concatenate(tests)
        assert len(everything) == len(labels)  # disjoint ...
        assert np.array_equal(np.sort(everything), np.arange(len(labels)))  # ... and covering
        sizes = [len(t) for t in tests]
        assert max(sizes) - min(sizes) <= len(COUNTS)  # balanced


def test_test_folds_are_stratified(folds, labels):
    for repeat in (0, 1):
        for fold in range(5):
            test = split_indices(folds, repeat, fold)["test"]
            for label, n in COUNTS.items():
                got = int(np.sum(labels[test] == label))
                assert abs(got - n / 5) <= 1, (repeat, fold, label, got)


def test_repeats_shuffle_differently(folds):
    first = split_indices(folds, 0, 0)["test"]
    assert not any(np.array_equal(first, split_indices(folds, 1, f)["test"]) for f in range(5))


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25])
def test_validation_is_a_stratified_share_of_the_training_part(labels, fraction):
    folds = make_folds(labels, n_folds=5, repeats=1, seed=3, validation_fraction=fraction)
    for fold in range(5):
        split = split_indices(folds, 0, fold)
        train, val, test = (set(split[r]) for r in ("train", "validation", "test"))
        assert not (train & val) and not (train & test) and not (val & test)
        training_part = set(range(len(labels))) - test
        assert train | val == training_part  # validation comes from the training part
        share = len(val) / len(training_part)
        assert share == pytest.approx(fraction, abs=0.02)
        for label, n in COUNTS.items():  # and is stratified
            in_part = sum(labels[i] == label for i in training_part)
            got = sum(labels[i] == label for i in val)
            assert abs(got - in_part * fraction) <= 1.5, (fold, label, got)


def test_same_arguments_give_the_same_folds_and_another_seed_other_folds(labels):
    a = make_folds(labels, 5, 1, seed=7, validation_fraction=0.1)
    b = make_folds(labels, 5, 1, seed=7, validation_fraction=0.1)
    c = make_folds(labels, 5, 1, seed=8, validation_fraction=0.1)
    pd.testing.assert_frame_equal(a, b)
    assert not a["role"].equals(c["role"])
    # The test folds themselves differ, not just the validation split.
    assert not np.array_equal(split_indices(a, 0, 0)["test"], split_indices(c, 0, 0)["test"])


def test_more_repeats_keep_the_earlier_repeats(labels):
    one = make_folds(labels, 5, 1, seed=42, validation_fraction=0.1)
    three = make_folds(labels, 5, 3, seed=42, validation_fraction=0.1)
    assert sorted(three["repeat"].unique()) == [0, 1, 2]
    pd.testing.assert_frame_equal(three[three["repeat"] == 0].reset_index(drop=True), one)


def test_a_repeat_added_later_is_the_repeat_a_longer_assignment_holds(labels):
    # cv.decide adds repeat r for some grid points only: every point that gets it reads this one
    # assignment, the one make_folds would have drawn for r, so the comparisons stay paired.
    three = make_folds(labels, 5, 3, seed=42, validation_fraction=0.1)
    added = repeat_folds(labels, 5, 2, seed=42, validation_fraction=0.1)
    pd.testing.assert_frame_equal(added, three[three["repeat"] == 2].reset_index(drop=True))
    other = repeat_folds(labels, 5, 1, seed=42, validation_fraction=0.1)
    assert not np.array_equal(split_indices(added, 2, 0)["test"], split_indices(other, 1, 0)["test"])
    with pytest.raises(FoldError, match="repeat must be at least 0, got -1"):
        repeat_folds(labels, 5, -1, seed=42, validation_fraction=0.1)


def test_folds_do_not_depend_on_the_validation_fraction(labels):
    a = make_folds(labels, 5, 1, seed=42, validation_fraction=0.1)
    b = make_folds(labels, 5, 1, seed=42, validation_fraction=0.2)
    for f in range(5):
        assert np.array_equal(split_indices(a, 0, f)["test"], split_indices(b, 0, f)["test"])


def test_a_class_with_fewer_images_than_folds_is_named():
    labels = np.array([0] * 10 + [1] * 10 + [7] * 3)
    with pytest.raises(FoldError, match=r"\b7 \(3\)"):
        make_folds(labels, 5, 1, seed=0, validation_fraction=0.1)


def test_string_labels_are_named_too():
    labels = np.array(["cat"] * 10 + ["dog"] * 2)
    with pytest.raises(FoldError, match="dog"):
        make_folds(labels, 3, 1, seed=0, validation_fraction=0.1)


@pytest.mark.parametrize(("kwargs", "word"), [({"n_folds": 1}, "folds"), ({"validation_fraction": 0.5}, "validation")])
def test_bad_arguments_are_refused(labels, kwargs, word):
    args = {"n_folds": 5, "repeats": 1, "seed": 0, "validation_fraction": 0.1, **kwargs}
    with pytest.raises(FoldError, match=word):
        make_folds(labels, **args)


def test_split_indices_returns_sorted_roles_and_names_a_missing_fold(folds, labels):
    split = split_indices(folds, 1, 3)
    assert set(split) == {"train", "validation", "test"}
    for role, idx in split.items():
        assert np.array_equal(idx, np.sort(idx)), role
        rows = folds[(folds["repeat"] == 1) & (folds["fold"] == 3) & (folds["role"] == role)]
        assert set(idx) == set(rows["sample"])
    assert sum(len(v) for v in split.values()) == len(labels)
    with pytest.raises(FoldError, match="repeat 2, fold 0"):
        split_indices(folds, 2, 0)


@pytest.mark.parametrize(("per_class", "n_folds"), [(12, 2), (6, 3), (5, 5)])
def test_small_classes_get_valid_folds_or_a_fold_error(per_class, n_folds):
    """Every class has at least `folds` images, so the class-size check passes; the early-stopping
    split must then either work (a non-empty validation part inside the training part) or be
    refused with a FoldError that says why -- not crash inside scikit-learn."""
    labels = np.repeat(np.arange(3), per_class)
    try:
        folds = make_folds(labels, n_folds, 1, seed=0, validation_fraction=0.1)
    except FoldError as error:
        assert "validation" in str(error) or "images" in str(error)
        return
    for fold in range(n_folds):
        split = split_indices(folds, 0, fold)
        assert len(split["validation"]) >= 1 and len(split["train"]) >= 1
        assert not set(split["validation"]) & set(split["test"])
