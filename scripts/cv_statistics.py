#!/usr/bin/env python
"""Paired statistics of the CV results: every grid point against its model's best, the
models' bests against each other (corrected resampled t-test, Holm, Bayesian correlated
t-test, exact McNemar), factor effects, the noise floor across repeats, a written summary
and the plots that go with them. All outputs go to --out-dir."""

import argparse
import html
import re
from pathlib import Path

import pandas as pd

from cvgrid import plots, stats
from cvgrid.io import atomic_path, write_tsv
from cvgrid.summary import prediction_table


def summary_html(text: str, title: str) -> str:
    """The summary's paragraphs (with **bold**) as a small self-contained HTML page."""
    body = "\n".join(
        "<p>" + re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(paragraph)) + "</p>"
        for paragraph in text.split("\n\n") if paragraph.strip()
    )
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;line-height:1.5}</style></head>"
            f"<body><h2>{html.escape(title)}</h2>\n{body}\n</body></html>\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--folds", type=Path, required=True, help="cv_folds.tsv (one row per training job)")
    p.add_argument("--summary", type=Path, required=True, help="cv_summary.tsv")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--rope", type=float, default=0.005, help="region of practical equivalence (accuracy)")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("metrics", nargs="+", type=Path, help="metrics.json files (predictions.tsv beside each)")
    a = p.parse_args(argv)
    out = a.out_dir
    folds = pd.read_csv(a.folds, sep="\t")
    cv = pd.read_csv(a.summary, sep="\t")

    to_best = stats.compare_to_best(folds, by_model=True, alpha=a.alpha, rope=a.rope)
    models = stats.compare_models(folds, alpha=a.alpha, rope=a.rope)
    mcnemar = stats.mcnemar_models(prediction_table(a.metrics), folds)
    effects = stats.factor_effects(folds, alpha=a.alpha)
    noise = stats.repeat_noise(folds)
    noise_by_model = stats.repeat_noise_by_model(noise)

    # The text quotes the same mean and 2 x std as cv_summary.tsv.
    quoted = cv.assign(std_accuracy=cv["acc_std_x2"] / 2, k=cv["folds"])
    text = stats.summary_text(quoted, to_best, effects, model_comparisons=models,
                              noise_by_model=noise_by_model, alpha=a.alpha)

    for name, table in [("compare_to_best", to_best), ("compare_models", models), ("mcnemar", mcnemar),
                        ("factor_effects", effects), ("repeat_noise", noise)]:
        write_tsv(table, out / f"{name}.tsv")
    with atomic_path(out / "summary.html") as tmp:
        tmp.write_text(summary_html(text, "Which configuration to choose"))
    plots.factor_effects(effects, out / "factor_effects.svg")
    plots.parallel_coordinates(cv, out / "parallel_coordinates.svg")


if __name__ == "__main__":
    main()
