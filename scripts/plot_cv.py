#!/usr/bin/env python
"""Plots of the CV results: a heatmap per model (on a sampled grid a scatter, one dot per grid point) and
every fold's value of the metric per grid point."""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from cvgrid import plots
from cvgrid.metrics import METRICS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--summary", type=Path, required=True, help="cv_summary.tsv")
    p.add_argument("--folds", type=Path, help="cv_folds.tsv (for --fold-plot)")
    p.add_argument("--heatmap", nargs=2, metavar=("MODEL", "OUT"), help="heatmap of MODEL to OUT")
    p.add_argument("--verdicts", type=Path, help="compare_to_best.tsv: each cell's verdict on the heatmap")
    p.add_argument("--heatmap-axes", nargs=2, metavar=("ROWS", "COLUMNS"),
                   help="the heatmap's two grid axes (config plots.heatmap_axes; default: cvgrid.plots.heatmap_layout)")
    p.add_argument("--metric", choices=sorted(METRICS), required=True,
                   help="statistics.metric: the heatmap's values and the fold plot's")
    p.add_argument("--fold-plot", type=Path, help="every fold's value of the metric per grid point to this file")
    p.add_argument("--sampled-ranges", type=json.loads, default=None, metavar="JSON",
                   help="a sampled grid (grid.sample): its ranged axes as JSON {axis: {distribution: [low, high]}}; "
                        "its --heatmap is a scatter (cvgrid.plots.sampled_scatter)")
    a = p.parse_args(argv)
    summary = pd.read_csv(a.summary, sep="\t")
    if a.heatmap:
        verdicts = pd.read_csv(a.verdicts, sep="\t") if a.verdicts else None
        try:
            if a.sampled_ranges is not None:
                plots.sampled_scatter(summary, a.heatmap[0], a.heatmap[1], verdicts, a.heatmap_axes,
                                      ranges=a.sampled_ranges, metric=a.metric)
            else:
                plots.heatmap(summary, a.heatmap[0], a.heatmap[1], verdicts, a.heatmap_axes, metric=a.metric)
        except ValueError as error:
            sys.exit(f"error: {error}")
    if a.fold_plot:
        plots.fold_accuracies(pd.read_csv(a.folds, sep="\t"), summary, a.fold_plot, metric=a.metric)


if __name__ == "__main__":
    main()
