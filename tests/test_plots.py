"""The heatmap a reader looks at first: every cell says its mean, fold spread and verdict."""

from __future__ import annotations

import pandas as pd

from cvgrid import plots


def test_heatmap_cells_carry_mean_spread_and_verdict(tmp_path):
    keys = dict(model="model_a", augmentation="none")
    summary = pd.DataFrame([
        {**keys, "batch_size": 32, "learning_rate": 0.001, "mean_accuracy": 0.976, "acc_std_x2": 0.012},
        {**keys, "batch_size": 32, "learning_rate": 0.0001, "mean_accuracy": 0.951, "acc_std_x2": 0.021},
        {**keys, "batch_size": 64, "learning_rate": 0.001, "mean_accuracy": 0.970, "acc_std_x2": 0.015},
        {**keys, "batch_size": 64, "learning_rate": 0.0001, "mean_accuracy": 0.974, "acc_std_x2": 0.004},
    ])
    verdicts = summary.assign(verdict=["best", "worse", "undecided", "practically equivalent"])
    path = tmp_path / "heatmap.svg"
    plots.heatmap(summary, "model_a", path, verdicts)
    svg = path.read_text()  # matplotlib writes each text as a comment beside its glyphs
    for text in ("97.6", "±1.2", "best", "worse", "?", "equiv.", "95.1", "±2.1"):
        assert f"<!-- {text} -->" in svg, text
    plots.heatmap(summary, "model_a", tmp_path / "plain.svg")  # without verdicts: mean and spread only
    assert "worse" not in (tmp_path / "plain.svg").read_text()
    # The same figure twice gives the same bytes: a published SVG changes only when its numbers do.
    plots.heatmap(summary, "model_a", tmp_path / "again.svg", verdicts)
    assert (tmp_path / "again.svg").read_bytes() == path.read_bytes()
    assert "<dc:date>" not in svg
