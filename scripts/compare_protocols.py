#!/usr/bin/env python
"""Put the same grid under two CV protocols side by side (e.g. random stratified folds vs
participant-grouped folds): a table per grid point, a JSON of the facts, and a plot. With
cv.race, a point stopped under either protocol is left out of the comparison (named in the log)."""

import argparse
import sys
from pathlib import Path

import pandas as pd

from cvgrid import plots
from cvgrid.io import write_json, write_tsv
from cvgrid.protocols import compare_protocols


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
    print(f"{facts['points_compared']} grid points compared", file=sys.stderr)
    for point in facts["left_out"]:  # cv.race stopped it under a protocol: its mean there is partial
        race = {key: point.pop(key) for key in ("race_primary", "race_compared")}
        print(f"left out of the comparison: {', '.join(f'{k} {v}' for k, v in point.items())} ({a.primary_label}:"
              f" {race['race_primary']}; {a.compared_label}: {race['race_compared']})", file=sys.stderr)


if __name__ == "__main__":
    main()
