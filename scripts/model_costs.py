#!/usr/bin/env python
"""The size of each model of the grid: parameters and multiply-accumulates per image at its
input size (torch's flop counter), one row per model, as model_costs.tsv. The one step of the
statistics that needs torch; the statistics step reads this table.

    python scripts/model_costs.py --index results/data/index.tsv \\
        --config '{"models": {"model_a": {}}}' --out results/stats/model_costs.tsv
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from cvgrid.costs import CostError, model_sizes
from cvgrid.data import DataError, class_names
from cvgrid.io import write_tsv


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", type=Path, required=True, help="index.tsv from prepare_dataset.py (the classes)")
    p.add_argument("--config", type=json.loads, required=True, help="JSON object: the config's models")
    p.add_argument("--models", nargs="+", required=True, help="the grid's models")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    try:
        classes = class_names(pd.read_csv(a.index, sep="\t", dtype={"class_name": str}))
        table = model_sizes(a.config, a.models, len(classes))
    except (CostError, DataError, OSError) as error:
        sys.exit(f"error: {error}")
    write_tsv(table, a.out)


if __name__ == "__main__":
    main()
