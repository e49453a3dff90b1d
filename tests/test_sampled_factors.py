"""The factors of a sampled grid (grid.sample): an axis drawn from a range is a trend over its
values (a rank correlation with an interval over the points, and quantile bins), not a
level-by-level table of its drawn values; an axis drawn from a list keeps level effects,
computed across points; the summary words them as what they are. On cv_folds tables built from
the points that config/search.yaml draws, with a known dependence on some axes and none on the
others."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import update_config, validate

from conftest import REPO
from cvgrid import plots, stats, wording
from cvgrid.analysis import analyse
from cvgrid.grid import grid_table, sampled_ranges
from cvgrid.summary import cv_summary

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
THRESHOLDS = stats.Thresholds(rope=0.005, probability=0.95, alpha=0.05, metric="accuracy")


def merged(name: str) -> dict:
    """config/<name> merged over config/config.yaml and validated, as the workflow reads it."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if name != "config.yaml":
        update_config(config, yaml.safe_load((REPO / "config" / name).read_text()))
    validate(config, SCHEMA)
    return config


SEARCH = merged("search.yaml")
RANGES = sampled_ranges(SEARCH)
RULE = {"contender_probability": 0.5, "choose": "best", "cost": "work"}  # the schema's defaults


def sampled_folds(score, folds: int = 5, noise: float = 0.004, seed: int = 1) -> pd.DataFrame:
    """cv_folds.tsv of the 32 points config/search.yaml draws: each fold's accuracy is
    score(point) plus a fold effect shared by every point (a harder test fold) and noise."""
    rng = np.random.default_rng(seed)
    fold_effect = rng.normal(0, 0.01, folds)
    rows = []
    for _, point in grid_table(SEARCH).iterrows():
        for fold in range(folds):
            rows.append({**point.to_dict(), "repeat": 0, "fold": fold,
                         "accuracy": score(point) + fold_effect[fold] + rng.normal(0, noise),
                         "epochs_run": 20, "seconds": 60.0, "diverged": False,
                         "n_train": 1484, "n_validation": 165, "n_test": 413})
    return pd.DataFrame(rows)


def falling_with_learning_rate(point) -> float:
    """Down 1 point per decade of learning rate; affine augmentation +1 point; nothing else."""
    return 0.97 - 0.01 * math.log10(point["learning_rate"] / 1e-4) + 0.01 * (point["augmentation"] == "affine")


def test_the_config_says_which_axes_are_ranges():
    assert RANGES == {"learning_rate": {"log_uniform": [0.0001, 0.03]}, "weight_decay": {"uniform": [0, 0.1]},
                      "label_smoothing": {"uniform": [0, 0.2]}}
    # A grid of lists is no sample: None, so that its factor effects stay the paired, matched ones.
    assert sampled_ranges(merged("config.yaml")) is None and sampled_ranges(merged("study.yaml")) is None
    lists_only = {**SEARCH, "grid": {k: v for k, v in SEARCH["grid"].items() if k not in RANGES}
                  | {"learning_rate": [0.001, 0.0001]}}
    assert sampled_ranges(lists_only) == {}


def test_a_monotone_dependence_on_learning_rate_is_a_trend_and_weight_decay_has_none():
    folds = sampled_folds(falling_with_learning_rate)
    trends = stats.factor_trends(folds, RANGES, alpha=0.05, metric="accuracy").set_index("factor")
    assert list(trends.index) == ["learning_rate", "weight_decay", "label_smoothing"]
    lr, wd = trends.loc["learning_rate"], trends.loc["weight_decay"]
    assert lr["points"] == 32 and lr["k"] == 5 and lr["scale"] == "log" and wd["scale"] == "linear"
    assert lr["rho"] < -0.6 and lr["ci_high"] < 0 and lr["significant"] and lr["folds_same_sign"] == 5
    assert lr["ci_low"] <= lr["rho"] <= lr["ci_high"]
    assert not wd["significant"] and wd["ci_low"] < 0 < wd["ci_high"] and abs(wd["rho"]) < 0.4
    assert lr["value_low"] >= 1e-4 and lr["value_high"] <= 0.03
    # Seeded: the same table every run.
    pd.testing.assert_frame_equal(trends.reset_index(),
                                  stats.factor_trends(folds, RANGES, alpha=0.05, metric="accuracy"))

    bins = stats.factor_bins(folds, RANGES, metric="accuracy")
    lr_bins = bins[bins["factor"] == "learning_rate"]
    assert list(lr_bins["bin"]) == [1, 2, 3, 4] and lr_bins["points"].sum() == 32
    assert lr_bins["mean"].is_monotonic_decreasing and (lr_bins["value_low"].iloc[1:].to_numpy()
                                                         > lr_bins["value_high"].iloc[:-1].to_numpy()).all()
    assert ((lr_bins["ci_low"] < lr_bins["mean"]) & (lr_bins["mean"] < lr_bins["ci_high"])).all()
    # Weight decay's bins overlap each other: no bin stands out.
    wd_bins = bins[bins["factor"] == "weight_decay"]
    assert wd_bins["ci_low"].max() < wd_bins["ci_high"].min()


def test_a_best_value_inside_the_range_shows_in_the_bins_not_in_the_rank_correlation():
    middle = math.log(math.sqrt(1e-4 * 0.03))
    folds = sampled_folds(lambda p: 0.97 - 0.01 * (math.log(p["learning_rate"]) - middle) ** 2)
    lr = stats.factor_trends(folds, RANGES, alpha=0.05, metric="accuracy").set_index("factor").loc["learning_rate"]
    assert not lr["significant"]
    bins = stats.factor_bins(folds, RANGES, metric="accuracy").query("factor == 'learning_rate'")["mean"].to_numpy()
    assert bins[1:3].min() > max(bins[0], bins[-1])


def test_choices_of_a_sampled_grid_are_level_effects_across_points():
    folds = sampled_folds(falling_with_learning_rate)
    choices = ["batch_size", "augmentation", "schedule"]
    effects = stats.sampled_level_effects(folds, choices, alpha=0.05, metric="accuracy")
    aug = effects[effects["factor"] == "augmentation"].iloc[0]
    points = grid_table(SEARCH)
    assert (aug["level"], aug["reference"]) == ("affine", "none")
    assert (aug["n_level"], aug["n_reference"]) == ((points["augmentation"] == "affine").sum(),
                                                    (points["augmentation"] == "none").sum())
    # +1 point built in; the learning rates drawn at each level differ only by chance, so the
    # interval is wide (their spread is in it) but holds the effect.
    assert aug["ci_low"] < 0.01 < aug["ci_high"] and aug["ci_low"] > -0.01
    schedule = effects[effects["factor"] == "schedule"].iloc[0]
    assert not schedule["significant"] and schedule["ci_low"] < 0 < schedule["ci_high"]
    assert sorted(effects.loc[effects["factor"] == "batch_size", "level"]) == [64, 128]
    # Differences of the point means, each point its mean over its folds.
    means = folds.groupby(list(points.columns))["accuracy"].mean().reset_index()
    expected = (means.loc[means["augmentation"] == "affine", "accuracy"].mean()
                - means.loc[means["augmentation"] == "none", "accuracy"].mean())
    assert aug["mean_diff"] == pytest.approx(expected)


def test_the_analysis_and_summary_of_a_sampled_grid_show_trends_not_32_levels():
    folds = sampled_folds(falling_with_learning_rate)
    result = analyse(folds, cv_summary(folds, metric="accuracy"), THRESHOLDS, ranges=RANGES, **RULE)
    effects = result.tables["factor_effects"]
    assert set(effects["factor"]) == {"batch_size", "augmentation", "schedule"}  # no ranged axis in it
    assert set(result.tables["factor_trends"]["factor"]) == set(RANGES)
    text = wording.summary_text(result)
    assert "**Factors of a sampled grid** (32 points drawn by grid.sample" in text
    assert "Learning rate (drawn log-uniform" in text and "higher values go with lower accuracy" in text
    assert "Weight decay (drawn uniform" in text and "no significant trend, which does not show there is none" in text
    assert "not a causal effect" in text and "Welch" in text and "only by chance" in text
    assert "averaged over this grid's levels of the other factors" not in text
    lr_values = set(grid_table(SEARCH)["learning_rate"])
    assert not any(f"{v:g} vs" in text for v in lr_values)  # no level-by-level learning rates
    decision = wording.decision_block(result)
    assert "- **Factors** (sampled grid): augmentation (affine vs none +" in decision
    assert "learning rate (ρ = -0." in decision and "higher values with lower accuracy" in decision
    assert "no significant effect or trend of" in decision and "weight decay" in decision.split("no significant")[1]


def test_a_grid_of_lists_keeps_its_paired_factor_effects():
    # The same folds read as a grid of lists (ranges None): the analysis is the one it always was.
    folds = sampled_folds(falling_with_learning_rate)
    summary = cv_summary(folds, metric="accuracy")
    listed = analyse(folds, summary, THRESHOLDS, ranges=None, **RULE)
    assert "factor_trends" not in listed.tables
    pd.testing.assert_frame_equal(listed.tables["factor_effects"],
                                  stats.factor_effects(folds, alpha=0.05, metric="accuracy"))


def test_log_loss_trends_are_of_the_score_and_bins_of_its_values():
    folds = sampled_folds(falling_with_learning_rate)
    folds["log_loss"] = 1.0 - folds["accuracy"]  # lower is better: falls as accuracy rises
    trends = stats.factor_trends(folds, RANGES, alpha=0.05, metric="log_loss").set_index("factor")
    assert trends.loc["learning_rate", "rho"] < -0.6  # a higher rate: a worse (higher) log-loss
    bins = stats.factor_bins(folds, RANGES, metric="log_loss").query("factor == 'learning_rate'")
    assert bins["mean"].is_monotonic_increasing and (bins["ci_low"] < bins["ci_high"]).all()


def test_figures_of_a_sampled_grid(tmp_path):
    folds = sampled_folds(falling_with_learning_rate)
    summary = cv_summary(folds, metric="accuracy")
    result = analyse(folds, summary, THRESHOLDS, ranges=RANGES, **RULE)
    # The scatter's axes: two ranged axes by default, the config's when given.
    assert plots.trend_axes(summary, "model_a", None, RANGES) == ("learning_rate", "weight_decay")
    assert plots.trend_axes(summary, "model_a", ["batch_size", "learning_rate"], RANGES) == ("batch_size", "learning_rate")
    with pytest.raises(ValueError, match="plots.heatmap_axes names 'dropout'"):
        plots.trend_axes(summary, "model_a", ["dropout", "learning_rate"], RANGES)
    # A log-uniform axis to scale on a log scale: the geometric middle halfway.
    spec = RANGES["learning_rate"]
    assert plots.range_position(spec, [1e-4, math.sqrt(1e-4 * 0.03), 0.03]) == pytest.approx([0, 0.5, 1])
    assert plots.range_position(RANGES["weight_decay"], [0.05]) == pytest.approx([0.5])
    assert [v for v, _ in plots.range_ticks(spec)] == [0.0001, 0.00042, 0.0017, 0.0072, 0.03]
    for name, draw in {
        "scatter": lambda path: plots.sampled_scatter(summary, "model_a", path, result.tables["compare_to_best"],
                                                      ["batch_size", "learning_rate"], ranges=RANGES, metric="accuracy"),
        "default_scatter": lambda path: plots.sampled_scatter(summary, "model_a", path, None, None, ranges=RANGES,
                                                              metric="accuracy"),
        "trends": lambda path: plots.factor_trends(summary, result.tables["factor_trends"], result.tables["factor_bins"],
                                                   RANGES, path, metric="accuracy"),
        "parallel": lambda path: plots.parallel_coordinates(summary, path, metric="accuracy", ranges=RANGES),
    }.items():
        draw(tmp_path / f"{name}.svg")
        assert (tmp_path / f"{name}.svg").read_text().startswith("<?xml")


def test_a_few_finished_points_give_no_trend_and_say_so():
    # An interim summary early in a search: 3 complete points.
    folds = sampled_folds(falling_with_learning_rate)
    first = grid_table(SEARCH).head(3)
    folds = folds.merge(first)
    result = analyse(folds, cv_summary(folds, metric="accuracy"), THRESHOLDS, ranges=RANGES, **RULE)
    trends = result.tables["factor_trends"]
    assert (trends["points"] == 3).all() and trends["rho"].isna().all() and not trends["significant"].any()
    assert (result.tables["factor_bins"].groupby("factor")["points"].sum() == 3).all()
    effects = result.tables["factor_effects"]
    assert effects.loc[(effects["n_level"] < 2) | (effects["n_reference"] < 2), "p"].isna().all()
    text = wording.summary_text(result)
    assert "Learning rate (drawn log-uniform, " in text and "no trend computed (3 points" in text
