#!/usr/bin/env python
"""Gather metrics.json files (and the predictions.tsv beside each, for the other metrics) into
results/cv_folds.tsv (one row per job) and results/cv_summary.tsv (one row per grid point, best
first)."""

import argparse
import sys
from pathlib import Path

from cvgrid.io import write_tsv
from cvgrid.metrics import METRICS, unavailable_notes
from cvgrid.race import mark_race, read_race
from cvgrid.summary import MetricsError, cv_summary, fold_table, planned_metrics


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--folds-out", type=Path, required=True)
    p.add_argument("--summary-out", type=Path, required=True)
    p.add_argument("--axes", type=lambda text: text.split(","), required=True,
                   help="the grid's axes (cvgrid.grid.grid_axes) in folder order, comma-separated: model,batch_size,...")
    p.add_argument("--metric", choices=sorted(METRICS), required=True,
                   help="statistics.metric: what ranks the grid points and what the statistics compare")
    # A file, not the command line: a big grid's paths exceed what a command may hold.
    p.add_argument("--metrics-list", type=Path, required=True,
                   help="file naming the training jobs' metrics.json files, one path a line")
    p.add_argument("--race", type=Path,
                   help="cv.race: the race's last table (cvgrid.race); adds the column race to both tables")
    a = p.parse_args(argv)
    try:
        folds = fold_table(planned_metrics(a.metrics_list), a.axes)
    except MetricsError as error:
        sys.exit(f"error: {error}")
    for note in unavailable_notes(folds):
        print(f"note: {note}", file=sys.stderr)
    try:
        summary = cv_summary(folds, metric=a.metric)
    except MetricsError as error:
        sys.exit(f"error: {error}")
    if a.race:
        record = read_race(a.race)
        folds, summary = mark_race(folds, record), mark_race(summary, record)
    write_tsv(folds, a.folds_out)
    write_tsv(summary, a.summary_out)


if __name__ == "__main__":
    main()
