#!/usr/bin/env python
"""Write the one fold assignment that every configuration uses: a table of
(repeat, fold, sample, role) with role train, validation (early stopping) or test.
With --groups, no group (e.g. a person) is in two of train, validation and test."""

import argparse
import sys
from pathlib import Path

import pandas as pd

from cvgrid.data import DataError, class_names
from cvgrid.folds import FoldError, groups_for_index, make_folds, repeat_folds
from cvgrid.io import write_tsv


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--index", type=Path, required=True, help="index.tsv from prepare_dataset.py")
    p.add_argument("--folds", type=int, required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--repeats", type=int, help="repeats 0 .. REPEATS - 1 (folds.tsv)")
    which.add_argument("--only-repeat", type=int,
                       help="repeat ONLY_REPEAT alone, the one a longer --repeats would draw (cv.decide's added repeats)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--validation-fraction", type=float, required=True)
    p.add_argument("--groups", type=Path, help="TSV with columns file, group: no group in two folds")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    index = pd.read_csv(a.index, sep="\t", dtype={"file": str, "class_name": str})
    try:
        groups = None
        if a.groups:
            groups = groups_for_index(index, pd.read_csv(a.groups, sep="\t", dtype=str), str(a.groups))
        labels, names = index["label"].to_numpy(), class_names(index)
        if a.only_repeat is None:
            folds = make_folds(labels, a.folds, a.repeats, seed=a.seed,
                               validation_fraction=a.validation_fraction, groups=groups, class_names=names)
        else:
            folds = repeat_folds(labels, a.folds, a.only_repeat, a.seed, a.validation_fraction, groups, names)
    except (DataError, FoldError) as error:
        sys.exit(f"error in {a.index}: {error}")
    write_tsv(folds, a.out)


if __name__ == "__main__":
    main()
