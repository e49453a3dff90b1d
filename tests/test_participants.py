"""Participant-group inference for the Sign Language Digits names (cvgrid.participants)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cvgrid.participants import (
    MAX_NUMBER_GAP,
    RESTART_MIN_DROP,
    group_summary,
    infer_participants,
)

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "sign-language-digits"


def run(start: int, digits: list[int], folder: bool = True) -> tuple[list[str], list[int]]:
    """Consecutive numbers from ``start``, one per digit."""
    files = [
        (f"{d}/" if folder else "") + f"IMG_{start + k}.JPG" for k, d in enumerate(digits)
    ]
    return files, list(digits)


def concat(*runs):
    files, labels = [], []
    for f, lab in runs:
        files += f
        labels += lab
    return files, labels


def groups_in_number_order(df) -> list[list[int]]:
    """The digits of each group, groups and photos in number order."""
    ordered = df.sort_values("number")
    return [list(g["digit"]) for _, g in ordered.groupby("group", sort=True)]


ALL = list(range(10))


def test_restart_rule_splits_consecutive_people():
    files, labels = concat(run(100, ALL), run(110, ALL), run(120, ALL))
    df = infer_participants(files, labels)
    assert list(df.columns[:4]) == ["file", "number", "digit", "group"]
    assert groups_in_number_order(df) == [ALL, ALL, ALL]
    assert df["group"].tolist() == ["p001"] * 10 + ["p002"] * 10 + ["p003"] * 10
    assert df["complete"].all()
    assert df.loc[df["number"] == 110, "starts_group"].item() == "restart"
    assert df.loc[df["number"] == 100, "starts_group"].item() == "first"
    s = group_summary(df)
    assert s["groups"] == 3 and s["complete_groups"] == 3
    assert s["size_histogram"] == {10: 3}
    assert s["leftover_groups"] == 0 and s["leftover_photos"] == 0


def test_restart_after_swapped_last_digits_and_swapped_first_digits():
    # Seen upstream: "..., 7, 9, 8" then 0 and "9" then "1, 0, 2, ...".
    a = [0, 1, 2, 3, 4, 5, 6, 7, 9, 8]
    b = [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]
    files, labels = concat(run(1, ALL), run(11, a), run(21, b), run(31, ALL))
    df = infer_participants(files, labels)
    assert groups_in_number_order(df) == [ALL, a, b, ALL]


def test_small_drops_inside_a_run_stay_with_the_person():
    # A repeated digit (drop 0) and an out-of-place label (drop 3) seen upstream.
    repeated = [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9]
    odd = [0, 1, 2, 3, 4, 5, 6, 3, 8, 9]
    assert RESTART_MIN_DROP > 3
    files, labels = concat(run(1, repeated), run(12, odd), run(22, ALL))
    df = infer_participants(files, labels)
    assert groups_in_number_order(df) == [repeated, odd, ALL]
    s = group_summary(df)
    assert s["groups_with_repeated_digit"] == 2
    assert s["size_histogram"] == {10: 2, 11: 1}
    # The literal rule "digit does not increase" cuts those runs.
    strict = infer_participants(files, labels, restart_min_drop=0)
    assert groups_in_number_order(strict) == [
        repeated[:9], repeated[9:], odd[:7], odd[7:], ALL
    ]


def test_jump_rule_splits_even_when_digits_keep_rising():
    first = [0, 1, 2, 3, 4]
    second = [5, 6, 7, 8, 9]
    small = run(100 + len(first) + MAX_NUMBER_GAP - 1, second)  # gap == MAX_NUMBER_GAP
    big = run(100 + len(first) + MAX_NUMBER_GAP, second)  # gap == MAX_NUMBER_GAP + 1
    df = infer_participants(*concat(run(100, first), small))
    assert groups_in_number_order(df) == [ALL]
    df = infer_participants(*concat(run(100, first), big))
    assert groups_in_number_order(df) == [first, second]
    assert df.loc[df["digit"] == 5, "starts_group"].item() == "jump"
    s = group_summary(df)
    assert s["complete_groups"] == 0 and s["leftover_groups"] == 2


def test_restart_and_jump_together_and_session_gap():
    files, labels = concat(run(1118, ALL), run(4040, ALL))
    df = infer_participants(files, labels)
    assert groups_in_number_order(df) == [ALL, ALL]
    assert df.loc[df["number"] == 4040, "starts_group"].item() == "restart+jump"


def test_partial_run_stays_its_own_group():
    # A lone 5 right before a full run (as IMG_4039 upstream), a run that stops
    # at 8, and a 4..9 run after a gap: none is merged with a neighbour.
    lone = run(50, [5])
    stops = run(51, [0, 1, 2, 3, 4, 5, 6, 7, 8])
    tail = run(51 + 9 + MAX_NUMBER_GAP + 5, [4, 5, 6, 7, 8, 9])
    full = run(200, ALL)
    files, labels = concat(lone, stops, tail, full)
    df = infer_participants(files, labels)
    assert groups_in_number_order(df) == [[5], stops[1], tail[1], ALL]
    s = group_summary(df)
    assert s["groups"] == 4
    assert s["complete_groups"] == 1
    assert s["size_histogram"] == {1: 1, 6: 1, 9: 1, 10: 1}
    assert s["leftover_groups"] == 3 and s["leftover_photos"] == 16
    assert s["leftover_group_ids"] == ["p001", "p002", "p003"]
    assert df.loc[df["group"] == "p002", "group_size"].eq(9).all()
    assert not df.loc[df["group"] == "p002", "complete"].any()


def test_input_order_kept_and_irrelevant_to_groups():
    files, labels = concat(run(1, ALL), run(11, [0, 1, 2]), run(14, ALL))
    df = infer_participants(files, labels)
    perm = list(reversed(range(len(files))))
    shuffled = infer_participants([files[i] for i in perm], [labels[i] for i in perm])
    assert shuffled["file"].tolist() == [files[i] for i in perm]
    assert dict(zip(shuffled["file"], shuffled["group"])) == dict(zip(df["file"], df["group"]))


def test_class_names_as_strings_and_bare_names():
    files, labels = run(7, ALL, folder=False)
    df = infer_participants(files, [str(d) for d in labels])
    assert df["digit"].tolist() == ALL
    assert df["number"].tolist() == list(range(7, 17))
    assert df["group"].unique().tolist() == ["p001"]


def test_bad_file_name_names_the_first_offender():
    files, labels = run(1, ALL)
    files[3] = "3/photo_4.jpg"
    files[6] = "6/IMG_7.png"
    with pytest.raises(ValueError, match=r"'photo_4\.jpg'.*IMG_<n>"):
        infer_participants(files, labels)


def test_other_bad_inputs():
    files, labels = run(1, ALL)
    with pytest.raises(ValueError, match="labels"):
        infer_participants(files, labels[:-1])
    with pytest.raises(ValueError, match="not a digit"):
        infer_participants(files, labels[:-1] + ["ten"])
    with pytest.raises(ValueError, match="more than one file"):
        infer_participants(files + ["9/IMG_10.JPG"], labels + [9])


def test_empty_input():
    df = infer_participants([], [])
    assert len(df) == 0 and "group" in df.columns
    assert group_summary(df)["groups"] == 0


@pytest.mark.real_data
def test_real_names():
    if not REAL_DATA.is_dir():
        reason = f"real data set not found at {REAL_DATA}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)")
        pytest.skip(reason)
    files = sorted(str(p) for p in REAL_DATA.glob("[0-9]/*") if p.is_file())
    labels = [int(Path(f).parent.name) for f in files]
    assert len(files) == 2062
    df = infer_participants(files, labels)
    s = group_summary(df)
    # Measured: 208 groups, 199 with all ten digits, sizes {1: 1, 6: 2, 9: 4, 10: 198, 11: 3}.
    assert 200 <= s["groups"] <= 220
    assert s["complete_groups"] >= 190
    assert s["size_histogram"].get(10, 0) >= 190
    assert s["leftover_photos"] <= 100
    # No group merges two people: at most 11 photos, no digit three times,
    # and a repeated digit only in the few runs measured upstream (5).
    assert s["max_group_size"] <= 11
    per_digit = df.groupby(["group", "digit"]).size()
    assert per_digit.max() <= 2
    assert s["groups_with_repeated_digit"] <= 5
    # The literal rule never repeats a digit, at the price of cutting runs.
    strict = infer_participants(files, labels, restart_min_drop=0)
    assert strict.groupby(["group", "digit"]).size().max() == 1
    assert group_summary(strict)["groups"] > s["groups"]
    # Deterministic.
    assert infer_participants(files, labels).equals(df)
