#!/usr/bin/env python
"""Diagnostics of one model's best grid point: confusion matrix pooled over the test folds,
per-class accuracy, learning curves of every fold, and a gallery of misclassified images."""

import argparse
import sys
from pathlib import Path

import pandas as pd

from cvgrid import plots
from cvgrid.data import class_names, load_prepared
from cvgrid.grid import axes_of
from cvgrid.io import write_tsv
from cvgrid.summary import MetricsError, best_points, planned_metrics, read_metrics


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--summary", type=Path, required=True, help="cv_summary.tsv")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--metrics-list", type=Path, required=True,
                   help="file naming the training jobs' metrics.json files, one path a line (history/predictions beside)")
    a = p.parse_args(argv)
    try:
        metrics = planned_metrics(a.metrics_list)
    except MetricsError as error:
        sys.exit(f"error: {error}")
    summary = pd.read_csv(a.summary, sep="\t")
    best = best_points(summary).set_index("model").loc[a.model]
    point = {"model": a.model, **{k: best[k] for k in axes_of(summary) if k != "model"}}
    title = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())

    histories, predictions = [], []
    for path in metrics:
        config = read_metrics(path)["config"]
        if any(config[k] != v for k, v in point.items()):
            continue
        tag = {"repeat": config["repeat"], "fold": config["fold"]}
        histories.append(pd.read_csv(path.with_name("history.tsv"), sep="\t").assign(**tag))
        predictions.append(pd.read_csv(path.with_name("predictions.tsv"), sep="\t", dtype={"file": str}).assign(**tag))
    histories, predictions = pd.concat(histories), pd.concat(predictions)

    images, index = load_prepared(a.images, a.index)
    names = class_names(index)
    out = a.out_dir
    out.mkdir(parents=True, exist_ok=True)
    per_class = (predictions.assign(correct=predictions["true"] == predictions["predicted"])
                 .groupby("true").agg(images=("correct", "size"), accuracy=("correct", "mean")).reset_index())
    per_class.insert(1, "class_name", [names[t] for t in per_class["true"]])
    write_tsv(per_class.rename(columns={"true": "label"}), out / "per_class_accuracy.tsv")
    plots.confusion(predictions, names, f"{title}, all test folds", out / "confusion.svg")
    plots.learning_curves(histories, title, out / "learning_curves.svg")
    errors = predictions[predictions["true"] != predictions["predicted"]]
    plots.error_gallery(images, errors, names, title, out / "errors.png")


if __name__ == "__main__":
    main()
