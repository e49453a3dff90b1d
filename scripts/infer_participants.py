#!/usr/bin/env python
"""Infer the participant of every Sign Language Digits photo from its file name
(IMG_<n>.JPG numbering, see cvgrid/participants.py) and write a table file, group, ...
plus a JSON summary (groups, complete groups, sizes, leftovers)."""

import argparse
import sys
from pathlib import Path

import pandas as pd

from cvgrid.io import write_json, write_tsv
from cvgrid.participants import group_summary, infer_participants


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--index", type=Path, required=True, help="index.tsv from prepare_dataset.py")
    p.add_argument("--out", type=Path, required=True, help="output TSV: file, group, ...")
    p.add_argument("--summary", type=Path, required=True, help="output JSON")
    a = p.parse_args(argv)
    index = pd.read_csv(a.index, sep="\t", dtype={"file": str, "class_name": str})
    try:
        groups = infer_participants(index["file"].tolist(), index["class_name"].tolist())
    except ValueError as error:
        sys.exit(f"error: cv.groups is 'participants', which only works for the Sign Language Digits "
                 f"file names: {error}. Give a groups file (file, group) instead.")
    write_tsv(groups, a.out)
    write_json(group_summary(groups), a.summary)


if __name__ == "__main__":
    main()
