#!/usr/bin/env python
"""Put the same grid under two CV protocols side by side (e.g. random stratified folds vs
participant-grouped folds): a table per grid point, a JSON of the facts, and a plot."""

import argparse
from pathlib import Path

import pandas as pd

from cvgrid import plots
from cvgrid.io import write_json, write_tsv
from cvgrid.summary import compare_protocols


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--primary", type=Path, required=True, help="cv_summary.tsv of the first protocol")
    p.add_argument("--primary-label", required=True)
    p.add_argument("--compared", type=Path, required=True, help="cv_summary.tsv of the second protocol")
    p.add_argument("--compared-label", required=True)
    p.add_argument("--out", type=Path, required=True, help="output TSV (facts go beside it as .json)")
    p.add_argument("--plot", type=Path, required=True)
    a = p.parse_args(argv)
    table, facts = compare_protocols(pd.read_csv(a.primary, sep="\t"), pd.read_csv(a.compared, sep="\t"))
    write_tsv(table, a.out)
    write_json({**facts, "primary": a.primary_label, "compared": a.compared_label}, a.out.with_suffix(".json"))
    plots.protocol_comparison(table, a.primary_label, a.compared_label, a.plot)


if __name__ == "__main__":
    main()
