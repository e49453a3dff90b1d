"""Infer participant groups for the Sign Language Digits data set from file names.

The upstream photos are named ``IMG_<n>.JPG``. The camera numbered the
photos in shooting order and each participant showed the digits 0, 1, ..., 9
in turn, so the number sequence, read together with the digit (the class
folder), marks where one participant stops and the next starts. There are two
numbering sessions (``IMG_1118`` ... ``IMG_1331`` and ``IMG_4039`` ...
``IMG_5999``) with a gap of 2708 numbers between them.

Rule (applied after sorting all photos by number)
-------------------------------------------------
A photo starts a new group when, compared with the photo just before it,

1. *restart*: the digit falls by at least ``RESTART_MIN_DROP`` (4), or
2. *jump*: the number rises by more than ``MAX_NUMBER_GAP`` (10), i.e. at
   least ten numbers are missing in between: room for a whole participant.

Otherwise it joins the current group. Then partial runs merge with a partial
neighbour (see "Leftovers"). The first photo starts group ``p001``; groups are
numbered in file-number order.

Why these thresholds (evidence from the 2062 real names)
--------------------------------------------------------
Between neighbouring photos (2061 steps) the digit rises by one 1828 times
and falls from 9 to 0 199 times. The remaining steps split cleanly by how
far the digit falls:

- Inside one run the digit falls by at most 3: three repeated digits
  (``IMG_1166``/``IMG_1167`` both 8, ``IMG_4246``/``4247`` both 3,
  ``IMG_5043``/``5044`` both 1; the first pair was checked by eye: same hand,
  same background), eight swapped neighbours (e.g. ``..., 7, 9, 8`` then 0;
  drop 1) and one out-of-place label (``IMG_5108`` labelled 3 between a 6 and
  an 8; drop 3).
- Between runs the digit falls by at least 4: 9 -> 0 (199 times), 9 -> 1 or
  8 -> 0 when the first or last two digits were swapped (4 times), 9 -> 5
  across the session gap, 5 -> 0 (``IMG_4039`` -> ``4040``), and 8 -> 4
  twice, after number gaps of 16 and 6.
- Number gaps while the digit keeps rising are at most 5
  (``IMG_5549`` -> ``5554``, digit 1 -> 2): deleted retakes. Every gap of 6
  or more (6, 7, 15, 16, 18, 2708) coincides with a restart anyway, so the
  jump rule only guards other copies of the data; any value from 5 up gives
  the same groups here.

The literal rule "new group whenever the digit does not increase"
(``restart_min_drop=0``, without merging: ``merge_partial=False``) gives 220 groups (190 complete) and no repeated
digit in any group, but it cuts 12 participants' runs in two at a repeated,
swapped or out-of-place digit, leaving pieces as small as one photo (four
single photos, four pairs) of the same person in separate groups. For
participant-held-out cross-validation that is leakage (the same hand in
training and test), so the tolerant drop of 4 is the default.

Leftovers
---------
A partial run (a group without all ten digits) is merged with its neighbour (the group just
before it in number order) when that neighbour is partial too and the two together show more
different digits than either alone: most likely one person's run, cut by a number gap or a
restart. Putting two people in one group never leaks in a grouped CV; splitting one person
does. Merges go left to right, so a merged group can take in the next partial run as well.

On the real data the first rule gives 208 groups, 199 with all ten digits; three pairs of
partial runs then merge: ``IMG_4039`` (a single 5, just before a 0-9 run without a 5), and
the runs of 6 ``IMG_4668``-``4673`` and ``IMG_4820``-``4825`` (digits 4-9, each after a number
gap and right after a 0-8 run). That leaves 205 groups, 202 with all ten digits, and three
partial groups that have no partial neighbour: two runs of 10 that miss one digit and repeat
another (``IMG_5108``; ``IMG_5174``/``5176``) and the last run, 0-8 (``IMG_5991``-``5999``).
Size histogram: {9: 1, 10: 199, 11: 3, 15: 2}. Seven groups hold one digit twice (the three
repeats, ``IMG_5108``, ``IMG_5174``/``5176`` and the two merged 0-8 + 4-9 runs); none holds a
digit three times.

The upstream README speaks of 218 participants; the names support about 205.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence

import pandas as pd

#: File names the rule understands: ``IMG_<n>.JPG`` (extension case-insensitive).
FILE_NAME_PATTERN = re.compile(r"^IMG_(\d+)\.jpe?g$", re.IGNORECASE)
#: A new group starts when the digit falls by at least this much (previous - current).
RESTART_MIN_DROP = 4
#: A new group starts when the number rises by more than this (>= 10 numbers missing).
MAX_NUMBER_GAP = 10
#: Digits a complete participant shows.
N_DIGITS = 10
#: Group ids are ``GROUP_PREFIX`` + zero-padded running number (at least 3 wide).
GROUP_PREFIX = "p"

COLUMNS = ["file", "number", "digit", "group", "group_size", "complete", "starts_group", "merged"]


def _parse_number(file: str) -> int | None:
    match = FILE_NAME_PATTERN.match(os.path.basename(str(file)))
    return int(match.group(1)) if match else None


def _parse_digit(label, file: str) -> int:
    try:
        digit = int(str(label).strip())
    except ValueError:
        digit = None
    if digit is None or not 0 <= digit < N_DIGITS:
        raise ValueError(
            f"label {label!r} of {file!r} is not a digit 0-{N_DIGITS - 1}: "
            "participant inference only works on the Sign Language Digits classes"
        )
    return digit


def infer_participants(
    files: Sequence[str],
    labels: Sequence[int] | Sequence[str],
    *,
    restart_min_drop: int = RESTART_MIN_DROP,
    max_number_gap: int = MAX_NUMBER_GAP,
    merge_partial: bool = True,
) -> pd.DataFrame:
    """Assign every photo to an inferred participant group.

    ``files`` are paths or names (only the base name ``IMG_<n>.JPG`` is read);
    ``labels`` are the digits, as ints or class names ``"0"`` ... ``"9"``, in
    the same order. See the module docstring for the rule.

    Returns one row per input photo, **in input order** (so
    ``result["group"]`` lines up with ``files``), with columns

    - ``file``: as given; ``number``: n from ``IMG_<n>``; ``digit``: int label;
    - ``group``: ``"p001"``, ``"p002"``, ... numbered in file-number order;
    - ``group_size``: photos in the group; ``complete``: the group holds all
      ten digits;
    - ``starts_group``: why this photo opens a group (``"first"``,
      ``"restart"``, ``"jump"``, or ``"restart+jump"``), ``""`` otherwise;
    - ``merged``: this photo opened a partial run that was merged into the
      group before it (``merge_partial``, see "Leftovers").

    Sort by ``number`` to read the groups in shooting order.

    Raises ``ValueError`` for a name that is not ``IMG_<n>`` (naming the first
    such file), a label that is not a digit, two photos with the same number,
    or ``files`` and ``labels`` of different lengths. Pure and deterministic:
    a photo gets the same group whatever the order of the input.
    """
    files = list(files)
    labels = list(labels)
    if len(files) != len(labels):
        raise ValueError(f"{len(files)} files but {len(labels)} labels")
    numbers: list[int] = []
    for file in files:
        number = _parse_number(file)
        if number is None:
            raise ValueError(
                f"file name {os.path.basename(str(file))!r} ({file!r}) does not match "
                f"IMG_<n>.JPG; participant groups can only be inferred for the "
                f"Sign Language Digits upstream names"
            )
        numbers.append(number)
    digits = [_parse_digit(label, file) for label, file in zip(labels, files)]
    repeated = [n for n, c in Counter(numbers).items() if c > 1]
    if repeated:
        first = min(repeated)
        clash = [f for f, n in zip(files, numbers) if n == first]
        raise ValueError(f"number {first} occurs in more than one file: {clash}")

    order = sorted(range(len(files)), key=lambda i: numbers[i])
    group_index = [0] * len(files)
    reasons = [""] * len(files)
    current = 0
    for rank, i in enumerate(order):
        if rank == 0:
            current, reasons[i] = 1, "first"
        else:
            prev = order[rank - 1]
            why = []
            if digits[prev] - digits[i] >= restart_min_drop:
                why.append("restart")
            if numbers[i] - numbers[prev] > max_number_gap:
                why.append("jump")
            if why:
                current += 1
                reasons[i] = "+".join(why)
        group_index[i] = current

    merged = [False] * len(files)
    if merge_partial:
        runs: list[list[int]] = [[] for _ in range(current)]
        for i in order:
            runs[group_index[i] - 1].append(digits[i])
        group_of_run = merge_partial_neighbours(runs)
        for i in order:
            run = group_index[i] - 1
            group_index[i] = group_of_run[run] + 1
            if reasons[i] and run > 0 and group_of_run[run] == group_of_run[run - 1]:  # a run that joined the one before
                reasons[i], merged[i] = "", True
        current = max(group_of_run, default=-1) + 1

    width = max(3, len(str(current)))
    df = pd.DataFrame(
        {
            "file": pd.Series(files, dtype=object),
            "number": pd.Series(numbers, dtype="int64"),
            "digit": pd.Series(digits, dtype="int64"),
            "group": pd.Series(
                [f"{GROUP_PREFIX}{g:0{width}d}" for g in group_index], dtype=object
            ),
            "starts_group": pd.Series(reasons, dtype=object),
            "merged": pd.Series(merged, dtype=bool),
        }
    )
    by_group = df.groupby("group")["digit"]
    df["group_size"] = by_group.transform("size").astype("int64")
    df["complete"] = by_group.transform("nunique").eq(N_DIGITS)
    return df[COLUMNS]


def merge_partial_neighbours(runs: list[list[int]]) -> list[int]:
    """For each run (its digits, runs in number order), the index of the group it ends in
    (0, 1, ... in order): a partial run joins the group before it when that group is partial
    too and together they show more different digits than either alone."""
    groups: list[set[int]] = []
    index = []
    for digits in runs:
        shown = set(digits)
        if groups and len(groups[-1]) < N_DIGITS and len(shown) < N_DIGITS and len(groups[-1] | shown) > max(
            len(groups[-1]), len(shown)
        ):
            groups[-1] |= shown
        else:
            groups.append(shown)
        index.append(len(groups) - 1)
    return index


def group_summary(df: pd.DataFrame) -> dict:
    """Counts for the report's note, from a table made by :func:`infer_participants`.

    Keys: ``photos``, ``groups``, ``complete_groups`` (all ten digits),
    ``size_histogram`` ({group size: number of groups}, sizes ascending),
    ``leftover_groups`` / ``leftover_photos`` (groups without all ten digits
    after the merging), ``leftover_group_ids``, ``merged_runs`` (partial runs
    merged into the group before them),
    ``groups_with_repeated_digit`` and ``max_group_size``. Plain Python ints,
    so the dict can be written as JSON or YAML.
    """
    per_group = df.groupby("group", sort=True)["digit"].agg(["size", "nunique"])
    sizes = Counter(int(s) for s in per_group["size"])
    leftover = per_group[per_group["nunique"] < N_DIGITS]
    return {
        "photos": int(len(df)),
        "groups": int(len(per_group)),
        "complete_groups": int((per_group["nunique"] == N_DIGITS).sum()),
        "size_histogram": {size: sizes[size] for size in sorted(sizes)},
        "leftover_groups": int(len(leftover)),
        "leftover_photos": int(leftover["size"].sum()),
        "leftover_group_ids": [str(g) for g in leftover.index],
        "merged_runs": int(df["merged"].sum()),
        "groups_with_repeated_digit": int((per_group["size"] > per_group["nunique"]).sum()),
        "max_group_size": int(per_group["size"].max()) if len(per_group) else 0,
    }
