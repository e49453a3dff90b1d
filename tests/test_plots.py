"""The heatmap a reader looks at first: every cell says its mean, fold spread and verdict; the
figures of a big grid: the best panels and points with a note, raster lines past a size."""

from __future__ import annotations

import pandas as pd

from cvgrid import plots
from cvgrid.summary import cv_summary


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
    plots.heatmap(summary, "model_a", path, verdicts, metric="accuracy")
    svg = path.read_text()  # matplotlib writes each text as a comment beside its glyphs
    for text in ("97.6", "±1.2", "best", "worse", "?", "equiv.", "95.1", "±2.1"):
        assert f"<!-- {text} -->" in svg, text
    plots.heatmap(summary, "model_a", tmp_path / "plain.svg", metric="accuracy")  # without verdicts: mean and spread only
    assert "worse" not in (tmp_path / "plain.svg").read_text()
    # The same figure twice gives the same bytes: a published SVG changes only when its numbers do.
    plots.heatmap(summary, "model_a", tmp_path / "again.svg", verdicts, metric="accuracy")
    assert (tmp_path / "again.svg").read_bytes() == path.read_bytes()
    assert "<dc:date>" not in svg


def grid_of_panels(panels: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fold table and cv_summary of a grid with `panels` augmentation policies (one heatmap panel
    each) x 2 batch sizes x 2 learning rates, 3 folds; policy p's points score about p / 1000."""
    rows = [{"model": "model_a", "batch_size": b, "learning_rate": lr, "augmentation": f"policy{p:03d}", "repeat": 0,
             "fold": f, "accuracy": 0.5 + p / 1000 + b / 1e5 + lr + f / 1e4, "epochs_run": 3, "seconds": 1.0}
            for p in range(panels) for b in (32, 64) for lr in (0.001, 0.0001) for f in range(3)]
    folds = pd.DataFrame(rows)
    return folds, cv_summary(folds, metric="accuracy")


def test_a_heatmap_past_its_panel_limit_shows_the_best_panels_and_says_how_many_are_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "MAX_HEATMAP_PANELS", 4)
    _, summary = grid_of_panels(10)
    plots.heatmap(summary, "model_a", tmp_path / "heatmap.svg", metric="accuracy")
    svg = (tmp_path / "heatmap.svg").read_text()
    shown = sorted(p for p in range(10) if f"augmentation: policy{p:03d} -->" in svg)
    assert shown == [6, 7, 8, 9]  # the panels holding the best points, in panel order
    assert "the 4 panels holding the best grid points; 6 more panels are not shown" in svg


def test_a_heatmap_within_its_limit_draws_every_panel_without_a_note(tmp_path):
    _, summary = grid_of_panels(5)
    plots.heatmap(summary, "model_a", tmp_path / "heatmap.svg", metric="accuracy")
    svg = (tmp_path / "heatmap.svg").read_text()
    assert all(f"augmentation: policy{p:03d} -->" in svg for p in range(5))
    assert "not shown" not in svg


def test_the_fold_plot_of_a_big_grid_shows_its_best_points_and_says_how_many_are_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "MAX_FOLD_PLOT_POINTS", 6)
    folds, summary = grid_of_panels(10)
    plots.fold_accuracies(folds, summary, tmp_path / "folds.svg", metric="accuracy")
    svg = (tmp_path / "folds.svg").read_text()
    labels = [label for label in plots.point_labels(summary) if f"<!-- {label} -->" in svg]
    assert labels == list(plots.point_labels(summary.head(6)))  # the six best, nothing else
    assert "the 6 best grid points; 34 more are not shown" in svg


def test_parallel_coordinates_of_many_points_are_one_raster_image_inside_the_svg(tmp_path, monkeypatch):
    _, summary = grid_of_panels(3)  # 12 lines: vector paths
    plots.parallel_coordinates(summary, tmp_path / "few.svg", metric="accuracy")
    few = (tmp_path / "few.svg").read_text()
    monkeypatch.setattr(plots, "MAX_VECTOR_LINES", 10)
    plots.parallel_coordinates(summary, tmp_path / "many.svg", metric="accuracy")
    many = (tmp_path / "many.svg").read_text()
    # The colour bar is an image in both; the lines add one more, and their vector paths are gone.
    assert many.count("<image") == few.count("<image") + 1
    assert many.count("<path") < few.count("<path") - 10
    assert "mean accuracy (%)" in many  # labels stay text


def test_the_fold_plot_shows_the_metric_of_the_statistics_each_fold_and_its_direction(tmp_path):
    """statistics.metric reaches the fold plot: its axis names the metric and its units (and for
    log-loss that lower is better), and the grid points are in the metric's order, best on top."""
    folds, _ = grid_of_panels(2)
    # log-loss ranks the points the other way round from accuracy here
    folds = folds.assign(balanced_accuracy=folds["accuracy"] - 0.1, log_loss=folds["accuracy"])
    for metric, label in (("balanced_accuracy", "test-fold balanced accuracy (%)  —  bar: mean"),
                          ("log_loss", "test-fold log-loss (nats; lower is better)  —  bar: mean")):
        summary = cv_summary(folds, metric=metric)
        path = tmp_path / f"{metric}.svg"
        plots.fold_accuracies(folds, summary, path, metric=metric)
        svg = path.read_text()
        assert f"<!-- {label} -->" in svg and "test-fold accuracy" not in svg
        labels = list(plots.point_labels(summary))
        # matplotlib draws the first category at the top, writing the tick labels top down
        assert sorted(labels, key=lambda label: svg.index(f"<!-- {label} -->")) == labels
    assert labels[0] == plots.point_labels(cv_summary(folds, metric="accuracy")).iloc[-1]
