#!/usr/bin/env python
"""One round of a race (cv.race, cvgrid.race.race_round): the survivors' folds 0..k-1 compared
with each model's best; the race table says which points train fold k and which are stopped."""

import argparse
import sys
from pathlib import Path

import pandas as pd

from cvgrid.io import write_tsv
from cvgrid.metrics import METRICS
from cvgrid.race import point_folder, race_round, read_race
from cvgrid.stats import Thresholds
from cvgrid.summary import MetricsError, fold_table, planned_metrics, read_metrics


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metrics-list", type=Path, required=True,
                   help="the metrics.json of every survivor's folds 0..k-1, one path a line")
    p.add_argument("--axes", type=lambda text: text.split(","), required=True,
                   help="the grid's axes in folder order, comma-separated")
    p.add_argument("--previous", type=Path, help="the race table of the round before (none in the first round)")
    p.add_argument("--rope", type=float, required=True)
    p.add_argument("--probability", type=float, required=True)
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--metric", choices=sorted(METRICS), required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    try:
        paths = planned_metrics(a.metrics_list)
        folds = fold_table(paths, a.axes)
        folders = pd.DataFrame([{**{k: read_metrics(path)["config"][k] for k in a.axes}, "point": point_folder(path)}
                                for path in paths]).drop_duplicates(ignore_index=True)
    except MetricsError as error:
        sys.exit(f"error: {error}")
    previous = read_race(a.previous) if a.previous else None
    table = race_round(folds, folders, Thresholds(rope=a.rope, probability=a.probability, alpha=a.alpha,
                                                  metric=a.metric), previous)
    stopped = table[(table["status"] == "stopped") & (table["round"] == table["round"].max())]
    print(f"round {table['round'].max()}: {int((table['status'] == 'racing').sum())} points train on,"
          f" {len(stopped)} stopped now: {stopped['point'].tolist()}", file=sys.stderr)
    write_tsv(table, a.out)


if __name__ == "__main__":
    main()
