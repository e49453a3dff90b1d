"""Participant-group inference for the Sign Language Digits names (cvgrid.participants)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvgrid.participants import (
    MAX_NUMBER_GAP,
    RESTART_MIN_DROP,
    group_summary,
    infer_participants,
)



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
    # The literal rule "digit does not increase" cuts those runs (before any merging).
    strict = infer_participants(files, labels, restart_min_drop=0, merge_partial=False)
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
    df = infer_participants(*concat(run(100, first), big), merge_partial=False)
    assert groups_in_number_order(df) == [first, second]
    assert df.loc[df["digit"] == 5, "starts_group"].item() == "jump"
    s = group_summary(df)
    assert s["complete_groups"] == 0 and s["leftover_groups"] == 2
    # Two partial runs that complete each other then merge again.
    assert groups_in_number_order(infer_participants(*concat(run(100, first), big))) == [ALL]


def test_restart_and_jump_together_and_session_gap():
    files, labels = concat(run(1118, ALL), run(4040, ALL))
    df = infer_participants(files, labels)
    assert groups_in_number_order(df) == [ALL, ALL]
    assert df.loc[df["number"] == 4040, "starts_group"].item() == "restart+jump"


def test_partial_runs_merge_with_a_partial_neighbour_that_they_complete():
    # A lone 5 right before a run without a 5 (as IMG_4039 upstream); a run that stops at 8,
    # then 4..9 after a gap (as IMG_4668-4673); a lone 5 before a run that has a 5 (adds
    # nothing: kept apart); a partial run next to complete ones (kept apart).
    lone = run(50, [5])
    no_five = run(51, [0, 1, 2, 3, 4, 6, 7, 8, 9])
    stops = run(100, [0, 1, 2, 3, 4, 5, 6, 7, 8])
    tail = run(100 + 9 + MAX_NUMBER_GAP + 5, [4, 5, 6, 7, 8, 9])
    lone_again = run(300, [5])
    stops_again = run(301, [0, 1, 2, 3, 4, 5, 6, 7, 8])
    full = run(400, ALL)
    files, labels = concat(lone, no_five, stops, tail, lone_again, stops_again, full)
    df = infer_participants(files, labels)
    assert groups_in_number_order(df) == [
        [5, 0, 1, 2, 3, 4, 6, 7, 8, 9], stops[1] + tail[1], [5], stops_again[1], ALL,
    ]
    assert df.loc[df["number"] == 51, "merged"].item() and df.loc[df["number"] == 51, "starts_group"].item() == ""
    assert df["merged"].sum() == 2
    s = group_summary(df)
    assert s["groups"] == 5 and s["complete_groups"] == 3 and s["merged_runs"] == 2
    assert s["size_histogram"] == {1: 1, 9: 1, 10: 2, 15: 1}
    assert s["leftover_groups"] == 2 and s["leftover_photos"] == 10
    assert s["leftover_group_ids"] == ["p003", "p004"]
    assert df.loc[df["group"] == "p002", "complete"].all()
    # Without merging, every run is its own group.
    unmerged = infer_participants(files, labels, merge_partial=False)
    assert group_summary(unmerged)["groups"] == 7 and not unmerged["merged"].any()


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
def test_real_names(real_data_dir):
    files = sorted(str(p) for p in real_data_dir.glob("[0-9]/*") if p.is_file())
    labels = [int(Path(f).parent.name) for f in files]
    assert len(files) == 2062
    df = infer_participants(files, labels)
    s = group_summary(df)
    # The counts the module docstring documents ("Leftovers").
    assert s["groups"] == 205 and s["complete_groups"] == 202
    assert s["size_histogram"] == {9: 1, 10: 199, 11: 3, 15: 2}
    assert s["merged_runs"] == 3
    assert s["leftover_groups"] == 3 and s["leftover_photos"] == 29
    merged = df.loc[df["merged"], "file"].map(lambda f: Path(f).name).sort_values().tolist()
    assert merged == ["IMG_4040.JPG", "IMG_4668.JPG", "IMG_4820.JPG"]
    # A group holds at most two people's partial runs: no digit three times, and a repeated
    # digit only in the runs the docstring names (7).
    assert s["max_group_size"] == 15
    per_digit = df.groupby(["group", "digit"]).size()
    assert per_digit.max() <= 2
    assert s["groups_with_repeated_digit"] == 7
    # Before merging: 208 groups, 199 complete.
    unmerged = group_summary(infer_participants(files, labels, merge_partial=False))
    assert (unmerged["groups"], unmerged["complete_groups"]) == (208, 199)
    # The literal rule never repeats a digit, at the price of cutting runs.
    strict = infer_participants(files, labels, restart_min_drop=0, merge_partial=False)
    assert strict.groupby(["group", "digit"]).size().max() == 1
    assert group_summary(strict)["groups"] > unmerged["groups"]
    # Deterministic.
    assert infer_participants(files, labels).equals(df)
