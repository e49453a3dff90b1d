"""Tests of cvgrid.stats against values computed by hand on small made-up fold accuracies.

Each expected value is derived step by step in the test (mean, variance,
corrected variance, t, then the tail probability from scipy.stats), so that a
wrong formula in the library -- a missing correction, the wrong degrees of
freedom, a one-sided p -- makes a test fail.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cvgrid import stats, wording
from cvgrid.analysis import analyse
from cvgrid.summary import cv_summary, point_summary, selected_points, selection_corrected

# The statistics section's schema defaults, as one Thresholds for every test.
T = stats.Thresholds(rope=0.005, probability=0.95, alpha=0.05, metric="accuracy")


def design(sd, k, ratio):
    """The posterior at a zero difference for k pairs with this SD of the differences."""
    return stats.CorrelatedPosterior.for_design(0.0, sd, k, ratio)

N_TRAIN, N_TEST = 80, 20  # n_test / n_train = 0.25

# Made-up per-fold differences used in several tests: mean 0.02, deviations
# (0, -0.01, +0.01, -0.02, +0.02), sum of squares 0.001, sample variance
# 0.001 / 4 = 0.00025.
DIFFS = [0.02, 0.01, 0.03, 0.00, 0.04]
HAND_MEAN = 0.02
HAND_VAR = 0.001 / 4
HAND_CORR_VAR = (1 / 5 + 20 / 80) * HAND_VAR  # = 0.45 * 0.00025 = 0.0001125
HAND_SE = math.sqrt(HAND_CORR_VAR)  # = 0.010606601717798...
HAND_T = HAND_MEAN / HAND_SE  # = 1.885618083164127
HAND_P = 2 * sps.t.sf(HAND_T, 4)


def make_folds(accuracies: dict, repeats: int = 1, n_train=N_TRAIN, n_test=N_TEST) -> pd.DataFrame:
    """Long `folds` frame from {(model, batch_size, learning_rate, augmentation): [acc per pair]}.

    The accuracies of a configuration are listed repeat by repeat, fold by fold.
    """
    rows = []
    for (model, bs, lr, aug), accs in accuracies.items():
        n_folds = len(accs) // repeats
        assert n_folds * repeats == len(accs)
        for i, acc in enumerate(accs):
            rows.append({"model": model, "batch_size": bs, "learning_rate": lr, "augmentation": aug,
                         "repeat": i // n_folds, "fold": i % n_folds, "accuracy": acc,
                         "n_train": n_train, "n_test": n_test})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# corrected_resampled_ttest
# ---------------------------------------------------------------------------


def test_hand_constants_are_what_the_comments_say():
    assert np.mean(DIFFS) == pytest.approx(HAND_MEAN)
    assert np.var(DIFFS, ddof=1) == pytest.approx(HAND_VAR)
    assert HAND_CORR_VAR == pytest.approx(0.0001125)
    assert HAND_T == pytest.approx(1.885618083164127)
    assert 0.13 < HAND_P < 0.14


def test_corrected_ttest_matches_hand_computation():
    r = stats.corrected_resampled_ttest(DIFFS, N_TRAIN, N_TEST)
    assert r["k"] == 5 and r["df"] == 4
    assert r["mean_diff"] == pytest.approx(HAND_MEAN)
    assert r["se"] == pytest.approx(HAND_SE)
    assert r["t"] == pytest.approx(HAND_T)
    assert r["p"] == pytest.approx(HAND_P)
    half = sps.t.ppf(0.975, 4) * HAND_SE  # 2.776445 * 0.0106066 = 0.029449
    assert half == pytest.approx(0.0294486, abs=1e-6)
    assert r["ci_low"] == pytest.approx(HAND_MEAN - half)
    assert r["ci_high"] == pytest.approx(HAND_MEAN + half)


def test_correction_is_applied_and_vanishes_for_tiny_test_sets():
    plain = sps.ttest_1samp(DIFFS, 0.0)  # t = 0.02 / sqrt(0.00025 / 5) = 2.828
    r = stats.corrected_resampled_ttest(DIFFS, N_TRAIN, N_TEST)
    assert plain.statistic == pytest.approx(2.8284271)
    assert r["t"] < plain.statistic - 0.9  # the correction widens the variance
    assert r["p"] > plain.pvalue
    # n_test / n_train -> 0 leaves only the 1/k term: the ordinary paired t-test.
    r0 = stats.corrected_resampled_ttest(DIFFS, 10**12, 1)
    assert r0["t"] == pytest.approx(plain.statistic, rel=1e-9)
    assert r0["p"] == pytest.approx(plain.pvalue, rel=1e-9)


def test_corrected_ttest_sign_and_per_fold_sizes():
    r = stats.corrected_resampled_ttest([-d for d in DIFFS], [80, 80, 80, 80, 80], [20] * 5)
    assert r["t"] == pytest.approx(-HAND_T)
    assert r["p"] == pytest.approx(HAND_P)
    assert r["ci_high"] == pytest.approx(-HAND_MEAN + sps.t.ppf(0.975, 4) * HAND_SE)


def test_identical_configurations_give_p_one_and_zero_difference():
    acc = np.array([0.91, 0.87, 0.93, 0.89, 0.90])
    r = stats.corrected_resampled_ttest(acc - acc, N_TRAIN, N_TEST)
    assert r["mean_diff"] == 0.0
    assert r["p"] == 1.0
    assert r["t"] == 0.0
    assert (r["ci_low"], r["ci_high"]) == (0.0, 0.0)


def test_constant_offset_is_detected():
    a = np.array([0.91, 0.87, 0.93, 0.89, 0.90])
    b = a - 0.02  # better on every fold by exactly 2 points; float rounding makes tiny jitter
    r = stats.corrected_resampled_ttest(a - b, N_TRAIN, N_TEST)
    assert r["mean_diff"] == pytest.approx(0.02)
    assert r["p"] == 0.0
    assert r["t"] == math.inf
    assert r["ci_low"] == pytest.approx(0.02) and r["ci_high"] == pytest.approx(0.02)
    r = stats.corrected_resampled_ttest(b - a, N_TRAIN, N_TEST)
    assert r["t"] == -math.inf and r["p"] == 0.0


def test_ttest_rejects_fewer_than_two_pairs_and_nan():
    with pytest.raises(ValueError):
        stats.corrected_resampled_ttest([0.1], N_TRAIN, N_TEST)
    with pytest.raises(ValueError):
        stats.corrected_resampled_ttest([0.1, np.nan, 0.2], N_TRAIN, N_TEST)


# ---------------------------------------------------------------------------
# holm
# ---------------------------------------------------------------------------


def test_holm_on_a_known_vector():
    # sorted: 0.005 * 4 = 0.02; 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> max(0.06, 0.04)
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_skips_nan():
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # 0.5*2 = 1.0; max(1.0, 0.6)
    out = stats.holm([0.01, np.nan, 0.04])  # family of m = 2: 0.02, 0.04
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])
    assert stats.holm([]).size == 0
    np.testing.assert_allclose(stats.holm([0.2]), [0.2])


# ---------------------------------------------------------------------------
# Bayesian correlated t-test
# ---------------------------------------------------------------------------


def test_bayesian_matches_hand_computation():
    rho = 20 / (80 + 20)  # correlation between folds, Corani & Benavoli (2015)
    assert rho / (1 - rho) == pytest.approx(20 / 80)
    scale = math.sqrt((1 / 5 + rho / (1 - rho)) * HAND_VAR)
    assert scale == pytest.approx(HAND_SE)
    r = stats.bayesian_correlated_ttest(DIFFS, N_TRAIN, N_TEST, rope=0.005)
    left = sps.t.cdf(-0.005, 4, loc=0.02, scale=scale)
    right = sps.t.sf(0.005, 4, loc=0.02, scale=scale)
    assert r["p_left"] == pytest.approx(left)
    assert r["p_right"] == pytest.approx(right)
    assert r["p_rope"] == pytest.approx(1 - left - right)
    assert r["p_left"] + r["p_rope"] + r["p_right"] == pytest.approx(1.0)
    assert r["p_right"] > 0.8 > r["p_rope"] > r["p_left"] > 0


def test_bayesian_large_offset_is_certain():
    noise = np.array([0.01, -0.01, 0.005, 0.0, -0.005, 0.002, -0.002, 0.0, 0.003, -0.003])
    r = stats.bayesian_correlated_ttest(0.10 + noise, 900, 100, rope=0.005)
    assert r["p_right"] > 0.9999
    assert r["p_left"] + r["p_rope"] + r["p_right"] == pytest.approx(1.0)
    r = stats.bayesian_correlated_ttest(-0.10 + noise, 900, 100, rope=0.005)
    assert r["p_left"] > 0.9999


def test_bayesian_zero_variance():
    a = np.array([0.91, 0.87, 0.93, 0.89, 0.90])
    r = stats.bayesian_correlated_ttest(a - (a - 0.02), N_TRAIN, N_TEST, rope=0.005)
    assert (r["p_left"], r["p_rope"], r["p_right"]) == (0.0, 0.0, 1.0)
    r = stats.bayesian_correlated_ttest(a - a, N_TRAIN, N_TEST, rope=0.005)
    assert (r["p_left"], r["p_rope"], r["p_right"]) == (0.0, 1.0, 0.0)
    r = stats.bayesian_correlated_ttest(a - (a + 0.002), N_TRAIN, N_TEST, rope=0.005)
    assert r["p_rope"] == 1.0  # a constant offset inside the ROPE is practically equivalent


def test_bayesian_small_difference_is_in_rope():
    diffs = np.array([0.001, -0.001, 0.0005, -0.0005, 0.0, 0.0002, -0.0002, 0.0, 0.0001, -0.0001])
    r = stats.bayesian_correlated_ttest(diffs, 900, 100, rope=0.005)
    assert r["p_rope"] > 0.99


# ---------------------------------------------------------------------------
# Grid comparisons
# ---------------------------------------------------------------------------

C1 = ("A", 16, 0.001, "none")
C2 = ("A", 16, 0.01, "none")
C3 = ("A", 32, 0.001, "none")
C4 = ("A", 16, 0.001, "affine")
CB = ("B", 16, 0.001, "none")
ACC1 = [0.90, 0.88, 0.92, 0.86, 0.94]  # mean 0.90, sample variance 0.004 / 4 = 0.001


def grid_folds() -> pd.DataFrame:
    a1 = np.array(ACC1)
    return make_folds({
        C1: list(a1),
        C2: list(a1 - np.array(DIFFS)),  # C2 - C1 = -DIFFS: mean -0.02
        C3: list(a1),  # identical to C1: same mean, tie broken by batch size 16 < 32
        C4: list(a1 - 0.05),  # 5 points worse on every fold
        CB: [0.80, 0.79, 0.83, 0.78, 0.80],  # mean 0.80
    })


def test_point_summary_is_the_one_definition_of_best():
    s = point_summary(grid_folds(), metric="accuracy")
    row = s[(s["model"] == "A") & (s["batch_size"] == 16) & (s["learning_rate"] == 0.001)
            & (s["augmentation"] == "none")].iloc[0]
    assert row["mean_accuracy"] == pytest.approx(0.90)
    assert row["acc_std_x2"] == pytest.approx(2 * np.std(ACC1))  # ddof=0, stated in summary.STD_DDOF
    assert row["folds"] == 5 and row["rank"] == 1
    # C1 and C3 have equal means: the smaller batch size ranks first, everywhere
    assert list(s.loc[s["model"] == "A", "rank"]) == [1, 2, 3, 4]
    best = s[s["rank"] == 1]
    assert [tuple(r) for r in best[list(stats.CONFIG_KEYS)].itertuples(index=False)] == [C1, CB]
    cmp = stats.compare_to_best(grid_folds(), T)
    assert [tuple(r) for r in cmp.loc[cmp["is_best"], list(stats.CONFIG_KEYS)].itertuples(index=False)] == [C1, CB]


def test_compare_to_best_by_hand():
    cmp = stats.compare_to_best(grid_folds(), T)
    by_cfg = {tuple(r[k] for k in stats.CONFIG_KEYS): r for _, r in cmp.iterrows()}
    best = by_cfg[C1]
    assert best["is_best"] and best["verdict"] == "best" and np.isnan(best["p"])
    assert best["mean_diff"] == 0.0 and not best["significantly_worse"]
    # identical configuration: difference exactly 0 on every fold, so the posterior is a
    # point mass inside the ROPE: practically equivalent (the only way to get there without folds)
    same = by_cfg[C3]
    assert not same["is_best"]
    assert same["mean_diff"] == 0.0 and same["p"] == 1.0 and same["prob_rope"] == 1.0
    assert same["verdict"] == "practically equivalent"
    assert (same["best_batch_size"], same["best_learning_rate"]) == (16, 0.001)
    # C2: the hand example with the sign flipped
    c2 = by_cfg[C2]
    assert c2["mean_diff"] == pytest.approx(-0.02)
    assert c2["sd_diff"] == pytest.approx(math.sqrt(HAND_VAR))
    assert c2["t"] == pytest.approx(-HAND_T)
    assert c2["p"] == pytest.approx(HAND_P)
    assert c2["ci_low"] == pytest.approx(-0.02 - sps.t.ppf(0.975, 4) * HAND_SE)
    # P(diff < -0.005) = t4.cdf((-0.005 + 0.02) / HAND_SE) = t4.cdf(1.414) = 0.885 < 0.95: undecided,
    # though 2 points worse on average
    assert c2["prob_worse"] == pytest.approx(sps.t.cdf(0.015 / HAND_SE, 4))
    assert 0.88 < c2["prob_worse"] < 0.89
    assert c2["verdict"] == "undecided"
    # more repeats at the same mean and SD: P(worse) = t_{k-1}.cdf(0.015 / (sd sqrt(1/k + 1/4)))
    # is 0.885, 0.929, 0.943, 0.9503 for k = 5, 10, 15, 20: four repeats decide it
    probs = [sps.t.cdf(0.015 / (math.sqrt(HAND_VAR) * math.sqrt(1 / k + 0.25)), k - 1) for k in (5, 10, 15, 20)]
    assert [p >= 0.95 for p in probs] == [False, False, False, True]
    assert c2["repeats_needed"] == 4
    # constant offset: worse, certainly
    c4 = by_cfg[C4]
    assert c4["mean_diff"] == pytest.approx(-0.05) and c4["p"] == 0.0
    assert c4["prob_worse"] == 1.0 and c4["verdict"] == "worse"
    # Holm over model A's family {1, HAND_P, 0} beside the verdict
    assert c4["p_holm"] == 0.0 and c4["significantly_worse"]
    assert c2["p_holm"] == pytest.approx(2 * HAND_P) and not c2["significantly_worse"]
    assert same["p_holm"] == 1.0
    # model B has one configuration: it is its own best
    assert by_cfg[CB]["is_best"] and by_cfg[CB]["verdict"] == "best"
    assert "tied_with_best" not in cmp.columns


def test_holm_column_uses_the_adjusted_p():
    def c2_significant(alpha):
        cmp = stats.compare_to_best(grid_folds(), dataclasses.replace(T, alpha=alpha))
        return bool(cmp[(cmp["model"] == "A") & (cmp["learning_rate"] == 0.01)].iloc[0]["significantly_worse"])

    # raw p = HAND_P = 0.132, Holm-adjusted 2 * HAND_P = 0.265
    assert not c2_significant(0.2)  # significant before Holm, not after
    assert c2_significant(0.3)


def test_compare_to_best_over_whole_grid():
    cmp = stats.compare_to_best(grid_folds(), T, by_model=False)
    assert int(cmp["is_best"].sum()) == 1
    b = cmp[cmp["model"] == "B"].iloc[0]
    assert b["best_model"] == "A"
    # B - C1 per fold: -0.10, -0.09, -0.09, -0.08, -0.14: mean -0.10
    assert b["mean_diff"] == pytest.approx(-0.10)
    assert b["verdict"] == "worse"


def test_compare_to_best_records_the_thresholds_of_its_verdicts():
    strict = stats.Thresholds(rope=0.001, probability=0.99, alpha=0.05, metric="accuracy")
    cmp = stats.compare_to_best(grid_folds(), strict)
    assert set(cmp["rope"]) == {0.001} and set(cmp["probability"]) == {0.99}
    # C3 equals C1 on every fold: a point mass at 0, inside any ROPE
    c3 = cmp[(cmp["batch_size"] == 32)].iloc[0]
    assert c3["verdict"] == "practically equivalent"


def test_one_posterior_gives_the_test_the_verdict_and_the_repeats():
    diffs = np.array(ACC1) - (np.array(ACC1) + np.array(DIFFS))  # C2 - C1, the hand example
    posterior = stats.CorrelatedPosterior.from_differences(diffs, N_TRAIN, N_TEST)
    assert posterior.scale == pytest.approx(HAND_SE) and posterior.df == 4
    # the corrected t-test's standard error is the posterior's scale
    assert stats.corrected_resampled_ttest(diffs, N_TRAIN, N_TEST)["se"] == posterior.scale
    worse, within, better = posterior.probs(0.005)
    assert posterior.prob_worse(0.005) == worse == pytest.approx(sps.t.cdf(0.015 / HAND_SE, 4))
    assert posterior.verdict(T.rope, T.probability) == "undecided"
    # repeats_needed asks the same posterior with more pairs: 4 repeats decide, 3 do not
    sd = float(np.std(diffs, ddof=1))
    assert stats.repeats_needed(float(diffs.mean()), sd, folds=5, size_ratio=N_TEST / N_TRAIN, thresholds=T) == 4
    for repeats, decided in ((3, False), (4, True)):
        p = stats.CorrelatedPosterior.for_design(float(diffs.mean()), sd, 5 * repeats, N_TEST / N_TRAIN)
        assert (p.verdict(T.rope, T.probability) != "undecided") == decided
    # a comparison that never separates from the ROPE edge is never decided
    assert math.isnan(stats.repeats_needed(-0.005, 0.05, folds=5, size_ratio=0.25, thresholds=T))


def test_thresholds_come_from_the_config_section():
    t = stats.Thresholds.from_config({"alpha": 0.01, "rope": 0.002, "probability": 0.9, "metric": "log_loss"})
    assert (t.rope, t.probability, t.alpha, t.metric) == (0.002, 0.9, 0.01, "log_loss")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.rope = 0.1


def test_compare_models_by_hand():
    out = stats.compare_models(grid_folds(), T)
    assert len(out) == 1
    r = out.iloc[0]
    assert (r["model_a"], r["model_b"]) == ("A", "B")
    # the configurations as axis columns (their wording is cvgrid.wording's)
    assert (r["batch_size_a"], r["learning_rate_a"], r["augmentation_a"]) == (16, 0.001, "none")
    assert (r["batch_size_b"], r["learning_rate_b"], r["augmentation_b"]) == (16, 0.001, "none")
    assert "config_a" not in out.columns and (r["rope"], r["probability"]) == (0.005, 0.95)
    # C1 - CB per fold: 0.10, 0.09, 0.09, 0.08, 0.14; mean 0.10;
    # deviations 0, -0.01, -0.01, -0.02, 0.04: SS = 0.0022, var = 0.00055
    d = np.array([0.10, 0.09, 0.09, 0.08, 0.14])
    var = 0.0022 / 4
    assert np.var(d, ddof=1) == pytest.approx(var)
    t = 0.10 / math.sqrt((1 / 5 + 20 / 80) * var)
    assert r["mean_diff"] == pytest.approx(0.10)
    assert r["t"] == pytest.approx(t)
    assert r["p"] == pytest.approx(2 * sps.t.sf(t, 4))
    assert r["p_holm"] == pytest.approx(r["p"]) and r["significant"]
    assert r["prob_better"] > 0.99 and r["verdict"] == "better"


# ---------------------------------------------------------------------------
# Verdicts on simulated grids, and what a design can resolve
# ---------------------------------------------------------------------------


def simulated_grid(rng, true_accuracy, sd, folds=5, fold_sd=0.012, n_train=1650, n_test=412):
    """A one-model grid: a fold effect shared by every configuration (what pairing removes)
    plus each configuration's own noise with SD `sd` per fold."""
    fold_effect = rng.normal(0, fold_sd, folds)
    acc = {("A", 16 * (i + 1), 0.001, "none"): list(mu + fold_effect + rng.normal(0, sd, folds))
           for i, mu in enumerate(true_accuracy)}
    return make_folds(acc, n_train=n_train, n_test=n_test)


@pytest.mark.parametrize("sd", [0.005, 0.01])
def test_equal_configurations_are_called_worse_at_most_at_the_nominal_rate(sd):
    # 18 equally good configurations, the best chosen by its mean as the workflow does: every
    # "worse" is a false alarm. Paired SDs 0.7 and 1.4 points, as on the real images.
    rng = np.random.default_rng(7)
    verdicts = pd.concat([stats.compare_to_best(simulated_grid(rng, [0.97] * 18, sd), T)["verdict"]
                          for _ in range(100)])
    others = verdicts[verdicts != "best"]
    assert len(others) == 100 * 17
    assert (others == "worse").mean() <= 0.05
    assert (others == "undecided").mean() > 0.9  # equal, but not shown to be: undecided


def test_a_configuration_5_sd_worse_is_worse_and_equal_ones_are_not():
    rng = np.random.default_rng(8)
    sd = 0.01 / math.sqrt(2)  # paired differences with SD 1 point
    for _ in range(20):
        cmp = stats.compare_to_best(simulated_grid(rng, [0.97, 0.97, 0.97 - 0.05], sd), T)
        assert cmp.iloc[-1]["verdict"] == "worse"
        assert cmp.iloc[-1]["mean_diff"] < -0.03


def test_equal_configurations_with_a_tiny_spread_are_practically_equivalent():
    rng = np.random.default_rng(9)
    cmp = stats.compare_to_best(simulated_grid(rng, [0.97] * 6, 0.0005), T)
    assert set(cmp.loc[~cmp["is_best"], "verdict"]) == {"practically equivalent"}


def test_equal_configurations_with_a_large_spread_stay_undecided():
    rng = np.random.default_rng(10)
    verdicts = pd.concat([stats.compare_to_best(simulated_grid(rng, [0.97] * 6, 0.02), T)["verdict"]
                          for _ in range(40)])
    others = verdicts[verdicts != "best"]
    assert (others == "practically equivalent").sum() == 0
    assert (others == "undecided").mean() >= 0.9  # the rest: false alarms, at most the nominal rate
    # and no number of repeats would show them equivalent within +-0.5 points at that spread
    assert design(0.02 * math.sqrt(2), math.inf, 0.25).largest_prob_rope(0.005) < 0.95


def test_resolution_of_model_a_design():
    # The figures for model A on the real images: median SD of the paired differences
    # 0.69 points, 5 folds, n_test / n_train = 0.25, ROPE 0.5 points, probability 0.95.
    sd, ratio = 0.0069, 0.25
    gap = design(sd, 5, ratio).smallest_worse_gap(0.005, 0.95)
    assert gap == pytest.approx(0.005 + sps.t.ppf(0.95, 4) * sd * math.sqrt(1 / 5 + ratio))
    assert gap == pytest.approx(0.0149, abs=0.0001)  # "about 1.5 points"
    assert design(sd, 15, ratio).smallest_worse_gap(0.005, 0.95) == pytest.approx(0.0118, abs=0.0001)
    limit = design(sd, math.inf, ratio).smallest_worse_gap(0.005, 0.95)
    assert limit == pytest.approx(0.005 + sps.norm.ppf(0.95) * sd * 0.5)  # ~1.07: never below
    assert design(sd, 5, ratio).largest_prob_rope(0.005) == pytest.approx(0.66, abs=0.01)
    assert design(sd, math.inf, ratio).largest_prob_rope(0.005) == pytest.approx(0.85, abs=0.01)
    # the narrowest ROPE in which equivalence could be shown: its P(within) is exactly 0.95
    narrow = design(sd, 5, ratio).smallest_equivalence_rope(0.95)
    assert design(sd, 5, ratio).largest_prob_rope(narrow) == pytest.approx(0.95)


def test_resolution_table_from_the_comparisons():
    folds = pd.concat([simulated_grid(np.random.default_rng(13), [0.97] * 6, 0.005, n_train=80, n_test=20),
                       make_folds({CB: [0.80, 0.79, 0.83, 0.78, 0.80]})])
    cmp = stats.compare_to_best(folds, T)
    res = stats.resolution(cmp, folds, T)
    assert list(res["model"]) == ["A"]  # B has a single configuration: nothing to resolve
    r = res.iloc[0]
    sds = cmp.loc[(cmp["model"] == "A") & ~cmp["is_best"], "sd_diff"]
    assert r["sd_diff_median"] == pytest.approx(sds.median())
    assert (r["folds"], r["repeats"], r["size_ratio"]) == (5, 1, 0.25)
    assert r["worse_gap_now"] > r["worse_gap_3_repeats"] > r["worse_gap_10_repeats"] > r["worse_gap_limit"]
    assert r["worse_gap_now"] == pytest.approx(design(r["sd_diff_median"], 5, 0.25).smallest_worse_gap(0.005, 0.95))


# ---------------------------------------------------------------------------
# The winner, corrected for its selection
# ---------------------------------------------------------------------------


def test_selection_correction_by_hand():
    acc = np.array([[0.90, 0.92, 0.94],   # mean 0.92: the winner
                    [0.95, 0.85, 0.93],   # mean 0.91
                    [0.89, 0.93, 0.90]])  # mean 0.906
    # best per fold 0.95, 0.93, 0.94; minus the winner's: 0.05, 0.01, 0.00; mean 0.02
    r = selection_corrected(acc)
    assert r["winner"] == 0
    assert r["raw_accuracy"] == pytest.approx(0.92)
    assert r["selection_bias"] == pytest.approx(0.02)
    assert r["corrected_accuracy"] == pytest.approx(0.90)
    assert selection_corrected(acc[:1])["selection_bias"] == 0.0  # nothing chosen among


@pytest.mark.parametrize("true_accuracy", [
    [0.97] * 18,                                          # all equal
    [0.975] * 6 + list(np.linspace(0.94, 0.97, 12)),      # a cluster at the top
])
def test_selection_correction_removes_the_winners_optimism(true_accuracy):
    rng = np.random.default_rng(11)
    true_accuracy = np.array(true_accuracy)
    raw, corrected = [], []
    for _ in range(2000):
        acc = true_accuracy[:, None] + rng.normal(0, 0.012, 5)[None, :] + rng.normal(0, 0.01, (18, 5))
        r = selection_corrected(acc)
        raw.append(r["raw_accuracy"] - true_accuracy[r["winner"]])
        corrected.append(r["corrected_accuracy"] - true_accuracy[r["winner"]])
    assert np.mean(raw) >= 0.005  # the raw winner's mean overstates its true accuracy
    assert abs(np.mean(corrected)) <= 0.003


def test_selected_points_from_the_cv_summary():
    summary = cv_summary(grid_folds().assign(epochs_run=10, seconds=1.0), metric="accuracy")
    sel = selected_points(summary, metric="accuracy")
    assert list(sel["scope"]) == ["A", "B", "all models"]
    a = sel.iloc[0]
    assert (a["batch_size"], a["learning_rate"], a["augmentation"], a["candidates"]) == (16, 0.001, "none", 4)
    # model A: on every fold the best of C1..C4 is C1 (C3 equals it, C2 = ACC1 - DIFFS and C4 are
    # never above it), so choosing C1 was no luck: bias 0
    assert a["raw_accuracy"] == pytest.approx(0.90) and a["selection_bias"] == pytest.approx(0.0)
    assert sel.iloc[1]["candidates"] == 1 and sel.iloc[1]["selection_bias"] == 0.0
    assert sel.iloc[2]["candidates"] == 5


def test_missing_or_duplicated_folds_are_refused():
    folds = grid_folds()
    with pytest.raises(ValueError, match="same folds"):
        stats.compare_to_best(folds.drop(index=3), T)
    with pytest.raises(ValueError, match="duplicated"):
        stats.compare_to_best(pd.concat([folds, folds.iloc[[0]]]), T)


# ---------------------------------------------------------------------------
# Noise floor
# ---------------------------------------------------------------------------


def test_repeat_noise_by_hand():
    folds = make_folds({
        C1: [0.90, 0.92, 0.88, 0.90],  # repeat means 0.91, 0.89
        C2: [0.80, 0.80, 0.83, 0.85],  # repeat means 0.80, 0.84
        CB: [0.70, 0.70, 0.70, 0.70],  # no noise
    }, repeats=2)
    noise = stats.repeat_noise(folds, metric="accuracy")
    by_cfg = {tuple(r[k] for k in stats.CONFIG_KEYS): r for _, r in noise.iterrows()}
    r1 = by_cfg[C1]
    assert r1["n_repeats"] == 2
    assert r1["repeat_mean_min"] == pytest.approx(0.89)
    assert r1["repeat_mean_max"] == pytest.approx(0.91)
    assert r1["repeat_range"] == pytest.approx(0.02)
    # std of (0.91, 0.89), ddof=1: sqrt((0.01^2 + 0.01^2) / 1)
    assert r1["repeat_std"] == pytest.approx(math.sqrt(0.0002))
    assert by_cfg[C2]["repeat_range"] == pytest.approx(0.04)
    assert by_cfg[CB]["repeat_range"] == pytest.approx(0.0)

    summary = stats.repeat_noise_by_model(noise)
    a = summary[summary["model"] == "A"].iloc[0]
    assert a["n_configs"] == 2
    assert a["repeat_range_max"] == pytest.approx(0.04)
    assert a["repeat_range_median"] == pytest.approx(0.03)
    # stds sqrt(0.0002) and sqrt(0.0008): root mean square = sqrt(0.0005)
    assert a["repeat_std_pooled"] == pytest.approx(math.sqrt(0.0005))
    assert a["config_range"] == pytest.approx(0.90 - 0.82)


def test_repeat_noise_single_repeat_is_empty():
    noise = stats.repeat_noise(grid_folds(), metric="accuracy")
    assert noise.empty
    assert {"repeat_range", "repeat_std", "model"} <= set(noise.columns)
    assert stats.repeat_noise_by_model(noise).empty


# ---------------------------------------------------------------------------
# Factor effects
# ---------------------------------------------------------------------------

BASE = [0.80, 0.82, 0.78, 0.81, 0.79, 0.83]  # 2 repeats x 3 folds
LR_EFFECT = [-0.03, -0.01, -0.02, -0.04, 0.00, -0.02]  # lr 0.01 vs 0.001, varies by fold
MODEL_EFFECT = [-0.05, -0.03, -0.04, -0.06, -0.05, -0.04]  # B vs A


def factor_grid() -> pd.DataFrame:
    """Full 2x2x2x2 grid: affine adds exactly +0.02, batch size does nothing."""
    acc = {}
    for model, bs, lr, aug in itertools.product(["A", "B"], [16, 32], [0.001, 0.01], ["none", "affine"]):
        acc[(model, bs, lr, aug)] = [
            BASE[i] + (0.02 if aug == "affine" else 0.0) + (LR_EFFECT[i] if lr == 0.01 else 0.0)
            + (MODEL_EFFECT[i] if model == "B" else 0.0)
            for i in range(6)]
    return make_folds(acc, repeats=2, n_train=90, n_test=10)


def test_factor_effects_on_constructed_grid():
    eff = stats.factor_effects(factor_grid(), alpha=0.05, metric="accuracy")
    assert list(eff["factor"]) == ["augmentation", "batch_size", "learning_rate", "model"]
    rows = {r["factor"]: r for _, r in eff.iterrows()}

    aug = rows["augmentation"]
    assert (aug["level"], aug["reference"]) == ("affine", "none")  # "none" is the reference
    assert aug["mean_diff"] == pytest.approx(0.02, abs=1e-12)
    assert aug["p"] == 0.0 and aug["significant"]
    assert aug["n_matched"] == 8 and aug["k"] == 6

    bs = rows["batch_size"]
    assert (bs["level"], bs["reference"]) == (32, 16)
    assert bs["mean_diff"] == 0.0 and bs["p"] == 1.0 and not bs["significant"]

    # learning rate by hand: diffs = LR_EFFECT, mean -0.02, deviations
    # (-0.01, 0.01, 0, -0.02, 0.02, 0): SS = 0.001, var = 0.001 / 5 = 0.0002;
    # corrected var = (1/6 + 10/90) * 0.0002; t = -0.02 / sqrt(that); df = 5
    lr = rows["learning_rate"]
    var = 0.001 / 5
    assert np.var(LR_EFFECT, ddof=1) == pytest.approx(var)
    se = math.sqrt((1 / 6 + 10 / 90) * var)
    t = -0.02 / se
    assert t == pytest.approx(-2.683281573)
    assert lr["mean_diff"] == pytest.approx(-0.02)
    assert lr["t"] == pytest.approx(t)
    assert lr["p"] == pytest.approx(2 * sps.t.sf(abs(t), 5))
    assert lr["ci_low"] == pytest.approx(-0.02 - sps.t.ppf(0.975, 5) * se)
    assert lr["ci_high"] == pytest.approx(-0.02 + sps.t.ppf(0.975, 5) * se)
    # marginal means: accuracy averaged over the other factors
    assert lr["mean_reference"] == pytest.approx(np.mean(BASE) + 0.01 + np.mean(MODEL_EFFECT) / 2)
    assert lr["mean_level"] - lr["mean_reference"] == pytest.approx(-0.02)

    model = rows["model"]
    assert (model["level"], model["reference"]) == ("B", "A")
    assert model["mean_diff"] == pytest.approx(np.mean(MODEL_EFFECT))


def test_factor_effects_skip_single_level_and_accept_reference():
    folds = factor_grid()
    folds = folds[folds["augmentation"] == "none"]
    eff = stats.factor_effects(folds, alpha=0.05, reference={"model": "B"}, metric="accuracy")
    assert "augmentation" not in set(eff["factor"])
    model = eff[eff["factor"] == "model"].iloc[0]
    assert (model["level"], model["reference"]) == ("A", "B")
    assert model["mean_diff"] == pytest.approx(-np.mean(MODEL_EFFECT))
    with pytest.raises(ValueError):
        stats.factor_effects(folds, alpha=0.05, reference={"model": "C"}, metric="accuracy")


def test_factor_effects_three_levels_holm_within_factor():
    acc = {}
    lr_effect = {0.001: 0.0, 0.01: -0.02, 0.1: -0.20}
    jitter = [0.01, -0.01, 0.0, 0.005, -0.005, 0.0]
    for lr, eff in lr_effect.items():
        acc[("A", 16, lr, "none")] = [BASE[i] + eff + (jitter[i] if lr != 0.001 else 0) for i in range(6)]
    eff = stats.factor_effects(make_folds(acc, repeats=2), alpha=0.05, metric="accuracy")
    lr = eff[eff["factor"] == "learning_rate"].reset_index(drop=True)
    assert list(lr["level"]) == [0.01, 0.1] and set(lr["reference"]) == {0.001}
    np.testing.assert_allclose(lr["mean_diff"], [-0.02, -0.20])
    np.testing.assert_allclose(lr["p_holm"], stats.holm(lr["p"].to_numpy()))
    assert set(eff["factor"]) == {"learning_rate"}


def test_factor_effects_pair_the_other_factors_on_an_incomplete_grid():
    # Model A has two learning rates; model B (10 points worse) only the small one.
    # A marginal mean over "all configs with lr 0.001" would mix in model B and
    # report a +6 point effect; matching the other factors gives the true +1 point.
    acc = {
        ("A", 16, 0.001, "none"): BASE,
        ("A", 16, 0.01, "none"): [b + 0.01 for b in BASE],
        ("B", 16, 0.001, "none"): [b - 0.10 for b in BASE],
    }
    eff = stats.factor_effects(make_folds(acc, repeats=2), alpha=0.05, metric="accuracy")
    rows = {r["factor"]: r for _, r in eff.iterrows()}
    assert rows["learning_rate"]["mean_diff"] == pytest.approx(0.01)
    assert rows["learning_rate"]["n_matched"] == 1
    assert rows["model"]["mean_diff"] == pytest.approx(-0.10)


# ---------------------------------------------------------------------------
# Written summary
# ---------------------------------------------------------------------------


def summary_of(folds):
    """The written summary of the whole analysis of `folds`, as the workflow writes it."""
    folds = folds.assign(epochs_run=10, seconds=1.0)  # as every job's metrics.json has them
    return wording.summary_text(analyse(folds, cv_summary(folds, metric="accuracy"), T, contender_probability=0.5, choose="best", cost="work", ranges=None))


def test_summary_text_reports_the_numbers():
    folds = grid_folds()
    text = summary_of(folds)
    # best of A: mean 0.90, 2 x std (ddof=0) = 2 * 0.02828 -> "90.0% ± 5.7%"
    assert f"{200 * np.std(ACC1):.1f}" == "5.7"
    assert "model A with batch size 16, learning rate 0.001, augmentation none: 90.0% ± 5.7%" in text
    assert "the best of 4 on these folds, so optimistic: **90.0%** corrected" in text
    assert "model B with batch size 16, learning rate 0.001, augmentation none: 80.0%" in text
    assert "over 5 folds" in text and "not a confidence interval" in text
    assert "Model A is **better** than model B (+10.0 points" in text
    assert ("model A, 3 other configurations: 1 worse, 1 practically equivalent, 1 undecided "
            "(worse — batch size 16, learning rate 0.001, augmentation affine (-5.0)") in text
    assert "undecided — batch size 16, learning rate 0.01, augmentation none (-2.0)" in text
    assert "model B has a single configuration" in text
    assert "1 significantly worse by the corrected t-test with Holm's correction" in text
    assert "tied" not in text.lower()
    # the resolution, in words
    assert "**What these folds can resolve**: model A (5 folds × 1 repeat(s)" in text
    assert "would be decided by 4 repeat(s) or fewer" in text
    # augmentation on this grid: C4 vs C1 only, -5 points on every fold
    assert "Augmentation matters: affine vs none -5.0 points" in text
    assert "Noise floor" not in text  # one repeat: no noise floor to report
    assert text == summary_of(folds)


def test_summary_text_words_the_thresholds_it_was_given():
    folds = grid_folds().assign(epochs_run=10, seconds=1.0)
    summary = cv_summary(folds, metric="accuracy")
    text = wording.summary_text(analyse(folds, summary, stats.Thresholds(rope=0.01, probability=0.9, alpha=0.1, metric="accuracy"),
                                         contender_probability=0.5, choose="best", cost="work", ranges=None))
    assert "posterior probability ≥ 0.9: *worse* by more than 1 points" in text
    assert "Holm's correction at α = 0.1" in text


def test_summary_text_says_when_equivalence_cannot_be_shown():
    rng = np.random.default_rng(12)
    folds = simulated_grid(rng, [0.97] * 6, 0.01)
    text = summary_of(folds)
    assert "Practical equivalence within ±0.5 points cannot be shown with these folds" in text
    assert "so no number of repeats can show it" in text
    assert re.search(r"model A, 5 other configurations: \d worse, 0 practically equivalent, \d undecided", text)


def test_summary_text_names_factors_without_effect_and_noise():
    folds = factor_grid()
    text = summary_of(folds)
    assert "Batch size: no significant effect, which does not show there is none: 32 vs 16 +0.0 points" in text
    assert "Augmentation matters: affine vs none +2.0 points" in text
    assert "averaged over this grid's levels of the other factors" in text
    assert "Noise floor" in text
    assert text.index("Augmentation matters") < text.index("Batch size: no significant effect")


def test_summary_text_names_the_diverged_folds_in_one_sentence():
    folds = grid_folds().assign(diverged=False)
    assert "Diverged" not in summary_of(folds)
    folds["diverged"] = (folds["learning_rate"] == 0.01) & folds["fold"].isin([1, 3])
    text = summary_of(folds)
    assert ("**Diverged**: 2 folds diverged (training loss NaN or inf; each is scored with its best weights "
            "before that epoch): model A with batch size 16, learning rate 0.01, augmentation none, repeat 0 "
            "fold 1; model A with batch size 16, learning rate 0.01, augmentation none, repeat 0 fold 3.") in text


def test_factor_effect_carried_by_one_fold_is_flagged():
    acc = {("A", 16, 0.001, "none"): BASE,
           ("A", 16, 0.01, "none"): [b + d for b, d in zip(BASE, [0.0, 0.0, 0.0, 0.0, 0.0, 0.12])],
           ("A", 32, 0.001, "none"): [b + d for b, d in zip(BASE, [0.01, 0.012, 0.009, 0.011, 0.01, 0.008])]}
    eff = stats.factor_effects(make_folds(acc, repeats=2), alpha=0.05, metric="accuracy")
    rows = {r["factor"]: r for _, r in eff.iterrows()}
    lr = rows["learning_rate"]
    assert lr["mean_diff"] == pytest.approx(0.02) and lr["median_diff"] == pytest.approx(0.0)
    assert lr["one_fold_dominates"]
    bs = rows["batch_size"]
    assert not bs["one_fold_dominates"] and bs["median_diff"] == pytest.approx(0.0101, abs=1e-4)


def test_summary_text_names_a_grid_point_whose_folds_ran_on_different_gpus_or_precisions():
    folds = grid_folds().assign(device="cuda:0", gpu="NVIDIA A100-SXM4-40GB", precision="bf16")
    assert "Mixed hardware" not in summary_of(folds)
    changed = (folds["learning_rate"] == 0.01) & (folds["fold"] == 2)
    folds.loc[changed, ["gpu", "precision"]] = ["Tesla V100-SXM2-16GB", "fp16"]
    text = summary_of(folds)
    assert ("**Mixed hardware**: the folds of model A with batch size 16, learning rate 0.01, augmentation none "
            "ran on NVIDIA A100-SXM4-40GB, Tesla V100-SXM2-16GB in bf16, fp16.") in text
    assert text.count("ran on") == 1
