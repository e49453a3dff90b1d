"""Paired statistics for a cross-validated hyperparameter grid, and what they allow one to say.

Every configuration of the grid is scored on the *same* folds, so two
configurations can be compared fold by fold: the unit of analysis is the
difference of their accuracies on one (repeat, fold) pair.  This module turns
the long table of fold accuracies into answers that claim no more than the
folds support:

* :func:`bayesian_correlated_ttest` -- Corani & Benavoli (2015) / Benavoli et
  al. (2017) Bayesian correlated t-test with a region of practical
  equivalence (ROPE); its posterior gives each comparison's :func:`verdict`:
  *worse*, *practically equivalent* or *undecided* with these folds.
* :func:`corrected_resampled_ttest` -- Nadeau & Bengio (2003) corrected
  resampled t-test, with :func:`holm` (Holm 1979) over a family; reported
  beside the verdict.
* :func:`resolution` -- the smallest gap this design can call worse, now, with
  more repeats and in the limit, and the narrowest ROPE in which equivalence
  could be shown at all.
* :func:`selection_corrected` / :func:`selected_points` -- the winner's
  accuracy corrected for having been chosen as the best on the same folds
  (Tibshirani & Tibshirani 2009).
* :func:`compare_to_best`, :func:`compare_models`, :func:`repeat_noise`,
  :func:`repeat_noise_by_model`, :func:`factor_effects` -- tables built from
  the long ``folds`` frame; :func:`summary_text` -- the answer in words.

Input formats
-------------
``folds``: one row per training job with columns ``model``, ``batch_size``,
``learning_rate``, ``augmentation`` (the configuration keys, see
:data:`CONFIG_KEYS`), ``repeat``, ``fold``, ``accuracy`` (in [0, 1]),
``n_train``, ``n_test`` and optionally ``n_validation`` (cv_folds.tsv).

Conventions
-----------
* Differences are always "first minus second" (``a - b``); accuracies and
  differences are fractions, not percent, everywhere except in
  :func:`summary_text`.
* ``k`` is the number of (repeat, fold) pairs, i.e. ``repeats * folds``.
* Which configuration is best, and in which order equal means come, is decided
  in one place: :func:`cvgrid.summary.point_summary`.
"""

from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from cvgrid.grid import GRID_KEYS, axes_of
from cvgrid.summary import fold_columns, point_summary

__all__ = [
    "CONFIG_KEYS",
    "PAIR_KEYS",
    "ZERO_TOL",
    "corrected_resampled_ttest",
    "bayesian_correlated_ttest",
    "holm",
    "verdict",
    "smallest_worse_gap",
    "smallest_equivalence_rope",
    "largest_prob_rope",
    "repeats_needed",
    "resolution",
    "selection_corrected",
    "selected_points",
    "compare_to_best",
    "compare_models",
    "repeat_noise",
    "repeat_noise_by_model",
    "factor_effects",
    "summary_text",
    "summary_html",
    "analyse",
]

#: Columns that identify one configuration of the grid.
CONFIG_KEYS: tuple[str, ...] = tuple(GRID_KEYS)
#: Columns that identify one fold of (repeated) k-fold cross-validation.
PAIR_KEYS: tuple[str, ...] = ("repeat", "fold")
#: Per-fold differences whose spread (max - min) is at most this are treated as
#: exactly constant, and a mean difference at most this in size as exactly
#: zero.  Accuracies have a resolution of 1 / n_test (>= 1e-7 for any test fold
#: under ten million images), so 1e-12 only absorbs floating-point rounding.
ZERO_TOL: float = 1e-12


# ---------------------------------------------------------------------------
# Tests on one vector of per-fold differences
# ---------------------------------------------------------------------------


def _as_diffs(diffs) -> np.ndarray:
    d = np.asarray(diffs, dtype=float).ravel()
    if d.size < 2:
        raise ValueError(f"need at least 2 paired differences, got {d.size}")
    if not np.all(np.isfinite(d)):
        raise ValueError("differences must be finite (no NaN or inf)")
    return d


def _size_ratio(n_train, n_test) -> float:
    """n_test / n_train, from scalars or per-fold arrays (averaged)."""
    n_train = float(np.mean(n_train))
    n_test = float(np.mean(n_test))
    if not (n_train > 0 and n_test > 0):
        raise ValueError(f"n_train and n_test must be positive, got {n_train}, {n_test}")
    return n_test / n_train


def _corrected_variance(d: np.ndarray, n_train, n_test) -> float:
    """Nadeau-Bengio corrected variance of the mean: (1/k + n_test/n_train) * s^2."""
    k = d.size
    return (1.0 / k + _size_ratio(n_train, n_test)) * float(np.var(d, ddof=1))


def corrected_resampled_ttest(diffs, n_train, n_test, confidence: float = 0.95) -> dict:
    """Corrected resampled t-test (Nadeau & Bengio 2003) on paired differences.

    Parameters
    ----------
    diffs
        Per-(repeat, fold) differences ``acc_a - acc_b``; ``k = len(diffs)``
        pairs over all repeats (Bouckaert & Frank 2004 use the same statistic
        for repeated k-fold).
    n_train, n_test
        Training and test set sizes, scalars or one value per pair (then
        their means are used; in k-fold they differ by at most one image).
    confidence
        Level of the two-sided confidence interval.

    Returns
    -------
    dict with keys ``mean_diff``, ``ci_low``, ``ci_high``, ``t``, ``p``
    (two-sided), ``se`` (corrected standard error), ``df`` (= k - 1) and ``k``.

    Notes
    -----
    ``se = sqrt((1/k + n_test/n_train) * s^2)`` with ``s^2`` the sample
    variance (ddof=1) of the differences; ``t = mean / se`` follows Student's
    t with ``k - 1`` degrees of freedom; the interval is
    ``mean +- t_{(1+confidence)/2, k-1} * se``.

    Zero variance (all differences equal, up to :data:`ZERO_TOL`):

    * all zero -> ``mean_diff = 0``, ``t = 0``, ``p = 1``, CI ``(0, 0)``;
    * all equal to a nonzero constant ``c`` -> ``t = +-inf``, ``p = 0``, CI
      ``(c, c)``.  A configuration that is better on *every* fold by the same
      amount is treated as certainly different (the limit of the test as the
      variance goes to zero), so a constant offset is always detected.
    """
    d = _as_diffs(diffs)
    k = d.size
    df = k - 1
    mean = float(np.mean(d))
    out = {"mean_diff": mean, "df": df, "k": k}
    if np.ptp(d) <= ZERO_TOL:
        if abs(mean) <= ZERO_TOL:
            out.update(mean_diff=0.0, ci_low=0.0, ci_high=0.0, t=0.0, p=1.0, se=0.0)
        else:
            out.update(ci_low=mean, ci_high=mean, t=math.copysign(math.inf, mean), p=0.0, se=0.0)
        return out
    se = math.sqrt(_corrected_variance(d, n_train, n_test))
    t = mean / se
    p = float(2.0 * sps.t.sf(abs(t), df))
    ci_low, ci_high = sps.t.interval(confidence, df, loc=mean, scale=se)
    out.update(ci_low=float(ci_low), ci_high=float(ci_high), t=float(t), p=min(p, 1.0), se=se)
    return out


def bayesian_correlated_ttest(diffs, n_train, n_test, rope: float = 0.005) -> dict:
    """Bayesian correlated t-test (Corani & Benavoli 2015; Benavoli et al. 2017).

    The posterior of the mean difference ``acc_a - acc_b`` is Student's t with
    ``k - 1`` degrees of freedom, location ``mean(diffs)`` and scale
    ``sqrt((1/k + rho/(1-rho)) * s^2)``, where ``rho = n_test / (n_train +
    n_test)`` is the correlation between folds (so ``rho/(1-rho) =
    n_test/n_train``: the same variance as the Nadeau-Bengio correction).
    This is the posterior of ``baycomp.CorrelatedTTest`` (which approximates
    ``rho`` by ``1/n_folds``), computed here from the exact set sizes.

    Parameters
    ----------
    diffs, n_train, n_test
        As in :func:`corrected_resampled_ttest`.
    rope
        Half-width of the region of practical equivalence, in accuracy units
        (0.005 = 0.5 percentage points).

    Returns
    -------
    dict with ``p_left`` = P(diff < -rope) (a worse), ``p_rope`` =
    P(-rope <= diff <= rope), ``p_right`` = P(diff > rope) (a better), plus
    ``mean_diff`` and ``scale``.  The three probabilities sum to 1.

    With zero variance the posterior is a point mass at the mean, so the
    probabilities are 0/1 by where the mean lies (as in ``baycomp``); a mean
    exactly on the ROPE boundary counts as inside.
    """
    d = _as_diffs(diffs)
    if rope < 0:
        raise ValueError("rope must be >= 0")
    k = d.size
    mean = float(np.mean(d))
    if np.ptp(d) <= ZERO_TOL:
        if abs(mean) <= ZERO_TOL:
            mean = 0.0
        p_left = float(mean < -rope)
        p_right = float(mean > rope)
        scale = 0.0
    else:
        scale = math.sqrt(_corrected_variance(d, n_train, n_test))
        p_left = float(sps.t.cdf(-rope, k - 1, loc=mean, scale=scale))
        p_right = float(sps.t.sf(rope, k - 1, loc=mean, scale=scale))
    p_rope = max(0.0, 1.0 - p_left - p_right)
    return {"p_left": p_left, "p_rope": p_rope, "p_right": p_right,
            "mean_diff": mean, "scale": scale}


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order.

    With the ``m`` p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the
    adjusted value of the i-th is ``max_{j <= i} min(1, (m - j + 1) p_(j))``.
    NaN entries are left out of the family (``m`` counts only finite values)
    and stay NaN.  Reject at level alpha where the adjusted p < alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


# ---------------------------------------------------------------------------
# Helpers on the long `folds` frame
# ---------------------------------------------------------------------------


def _axes(frame, keys: Sequence[str] | None) -> list[str]:
    """`keys`, or the grid axes among the frame's columns (cvgrid.grid.AXES): a grid may vary
    any training setting, and every table carries its axes as columns."""
    return list(keys) if keys is not None else axes_of(frame)


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}")


def _wide(folds: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Accuracy as (repeat, fold) rows x configuration columns.

    Raises if a configuration has a (repeat, fold) twice or misses one that
    another configuration has: comparisons must be paired on the same folds.
    """
    keys = _axes(folds, keys)
    _check_columns(folds, keys + list(PAIR_KEYS) + ["accuracy"], "folds")
    if folds.empty:
        raise ValueError("folds is empty")
    dup = folds.duplicated(keys + list(PAIR_KEYS))
    if dup.any():
        raise ValueError(f"folds has {int(dup.sum())} duplicated (configuration, repeat, fold) rows")
    wide = folds.set_index(list(PAIR_KEYS) + keys)["accuracy"].unstack(keys).sort_index()
    wide = wide.sort_index(axis=1)
    if wide.isna().to_numpy().any():
        raise ValueError("not every configuration has every (repeat, fold): comparisons need the same folds")
    return wide.astype(float)


def _sizes(folds: pd.DataFrame) -> tuple[float, float]:
    """Mean size of a fold's training part and of its test fold over all rows (the folds are
    shared by all configurations). The training part is what the network learnt from:
    ``n_train`` plus, where the table has it, the early-stopping ``n_validation``."""
    _check_columns(folds, ["n_train", "n_test"], "folds")
    training = folds["n_train"] + (folds["n_validation"] if "n_validation" in folds.columns else 0)
    return float(training.mean()), float(folds["n_test"].mean())


def _config_frame(columns: pd.Index, keys: Sequence[str]) -> pd.DataFrame:
    """The configuration tuples of a wide frame's columns as a key frame."""
    return pd.DataFrame(list(columns), columns=list(keys))


def _fold_design(folds: pd.DataFrame) -> tuple[int, int]:
    """(folds per repeat, repeats) of the long table."""
    return int(folds["fold"].nunique()), int(folds["repeat"].nunique())


# ---------------------------------------------------------------------------
# Verdicts and what the design can resolve
# ---------------------------------------------------------------------------

WORSE, EQUIVALENT, UNDECIDED, BETTER, BEST = (
    "worse", "practically equivalent", "undecided", "better", "best")


def verdict(prob_worse: float, prob_rope: float, probability: float = 0.95,
            prob_better: float = 0.0) -> str:
    """Three-way verdict of one paired comparison from the Bayesian correlated t-test's
    posterior: *worse* (or *better*) when P(worse (better) by more than the ROPE) >=
    `probability`, *practically equivalent* when P(|difference| <= ROPE) >= `probability`,
    otherwise *undecided* with these folds. Not being significantly worse is *undecided*,
    never "equal": equivalence needs its own posterior mass inside the ROPE."""
    if prob_worse >= probability:
        return WORSE
    if prob_better >= probability:
        return BETTER
    if prob_rope >= probability:
        return EQUIVALENT
    return UNDECIDED


def _posterior_scale(sd: float, k: int, size_ratio: float) -> float:
    """Scale of the correlated t-test's posterior for k pairs; k = inf is the limit of many repeats."""
    return sd * math.sqrt((0.0 if math.isinf(k) else 1.0 / k) + size_ratio)


def _t(k: float):
    """The posterior's distribution shape: Student's t with k - 1 df, normal in the limit."""
    return sps.norm if math.isinf(k) else sps.t(k - 1)


def smallest_worse_gap(sd: float, k: float, size_ratio: float, rope: float, probability: float) -> float:
    """The smallest true shortfall that, observed exactly, is called *worse*: the mean
    difference d with P(diff < -rope) = probability, for k pairs (inf: many repeats)."""
    return rope + _t(k).ppf(probability) * _posterior_scale(sd, k, size_ratio)


def smallest_equivalence_rope(sd: float, k: float, size_ratio: float, probability: float) -> float:
    """The narrowest ROPE within which two configurations could be shown practically
    equivalent at all (observed difference exactly 0) with k pairs."""
    return _t(k).ppf((1 + probability) / 2) * _posterior_scale(sd, k, size_ratio)


def largest_prob_rope(sd: float, k: float, size_ratio: float, rope: float) -> float:
    """P(|diff| <= rope) when the observed difference is exactly 0: the most equivalence
    evidence this design can give."""
    scale = _posterior_scale(sd, k, size_ratio)
    return 1.0 if scale == 0 else float(2 * _t(k).cdf(rope / scale) - 1)


def repeats_needed(mean_diff: float, sd: float, folds: int, size_ratio: float, rope: float,
                   probability: float, most: int = 100) -> float:
    """The fewest repeats of `folds`-fold CV that would decide (worse or practically
    equivalent) a comparison whose mean difference and SD stayed as observed; NaN when not
    even `most` repeats would (often none would: see :func:`smallest_worse_gap`)."""
    if sd == 0:
        return 1.0
    k = folds * np.arange(1, most + 1)
    scale = sd * np.sqrt(1.0 / k + size_ratio)
    p_worse = sps.t.cdf((-rope - mean_diff) / scale, k - 1)
    p_rope = sps.t.cdf((rope - mean_diff) / scale, k - 1) - p_worse
    decided = np.flatnonzero((p_worse >= probability) | (p_rope >= probability))
    return float(decided[0] + 1) if decided.size else math.nan


def resolution(comparisons: pd.DataFrame, folds: pd.DataFrame, rope: float = 0.005,
               probability: float = 0.95) -> pd.DataFrame:
    """What this design can resolve, per model, at the observed spread of the paired fold
    differences against the model's best (``sd_diff`` of :func:`compare_to_best`, median over
    the model's other grid points).

    Columns: ``model``, ``folds``, ``repeats``, ``size_ratio`` (n_test / n_train),
    ``sd_diff_median``, ``sd_diff_min``, ``sd_diff_max``; ``worse_gap_now``,
    ``worse_gap_3_repeats``, ``worse_gap_10_repeats``, ``worse_gap_limit`` (the smallest
    shortfall called *worse*: now, with 3 and 10 repeats, with any number of repeats);
    ``equivalence_rope_now``, ``equivalence_rope_limit`` (the narrowest ROPE within which
    equivalence could be shown at all); ``prob_rope_max_now``, ``prob_rope_max_limit`` (the
    largest P(within the ROPE) at a zero difference), ``rope``, ``probability``. Models
    with a single grid point have nothing to compare and no row.

    The n_test / n_train term of the corrected variance does not shrink with more repeats
    (the training sets overlap), so the limits are finite and more repeats cannot beat them.
    """
    n_train, n_test = _sizes(folds)
    ratio = n_test / n_train
    n_folds, n_repeats = _fold_design(folds)
    k_now = n_folds * n_repeats
    rows = []
    for model, group in comparisons.groupby("model", sort=True):
        sd = group.loc[~group["is_best"], "sd_diff"].dropna()
        if sd.empty:
            continue
        s = float(sd.median())
        rows.append({
            "model": model, "folds": n_folds, "repeats": n_repeats, "size_ratio": ratio,
            "sd_diff_median": s, "sd_diff_min": float(sd.min()), "sd_diff_max": float(sd.max()),
            "worse_gap_now": smallest_worse_gap(s, k_now, ratio, rope, probability),
            "worse_gap_3_repeats": smallest_worse_gap(s, 3 * n_folds, ratio, rope, probability),
            "worse_gap_10_repeats": smallest_worse_gap(s, 10 * n_folds, ratio, rope, probability),
            "worse_gap_limit": smallest_worse_gap(s, math.inf, ratio, rope, probability),
            "equivalence_rope_now": smallest_equivalence_rope(s, k_now, ratio, probability),
            "equivalence_rope_limit": smallest_equivalence_rope(s, math.inf, ratio, probability),
            "prob_rope_max_now": largest_prob_rope(s, k_now, ratio, rope),
            "prob_rope_max_limit": largest_prob_rope(s, math.inf, ratio, rope),
            "rope": rope, "probability": probability,
        })
    columns = ["model", "folds", "repeats", "size_ratio", "sd_diff_median", "sd_diff_min", "sd_diff_max",
               "worse_gap_now", "worse_gap_3_repeats", "worse_gap_10_repeats", "worse_gap_limit",
               "equivalence_rope_now", "equivalence_rope_limit", "prob_rope_max_now",
               "prob_rope_max_limit", "rope", "probability"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------
# The winner, corrected for being chosen
# ---------------------------------------------------------------------------


def selection_corrected(accuracy: np.ndarray) -> dict:
    """Tibshirani & Tibshirani (2009) estimate of the winner's accuracy, corrected for
    choosing it as the best of several on the same folds.

    `accuracy` is configurations x (repeat, fold) pairs. The winner is the configuration with
    the highest mean (first of equal ones). On each pair, the best accuracy of any
    configuration exceeds the winner's by some amount; the mean of those amounts estimates
    the optimism of choosing by the maximum, and is subtracted from the winner's mean.
    Returns ``winner`` (row index), ``raw_accuracy``, ``selection_bias`` and
    ``corrected_accuracy``. With one configuration there is no selection: bias 0.
    """
    acc = np.asarray(accuracy, dtype=float)
    if acc.ndim != 2 or acc.size == 0:
        raise ValueError("accuracy must be a non-empty configurations x folds matrix")
    winner = int(np.argmax(acc.mean(axis=1)))
    raw = float(acc[winner].mean())
    bias = float(np.mean(acc.max(axis=0) - acc[winner]))
    return {"winner": winner, "raw_accuracy": raw, "selection_bias": bias, "corrected_accuracy": raw - bias}


def selected_points(summary: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Each model's best grid point, and the best of the whole grid, with its raw mean CV
    accuracy and that accuracy corrected for the selection (:func:`selection_corrected`),
    from cv_summary.tsv (:func:`cvgrid.summary.cv_summary`: best first, per-fold columns).

    Columns: ``scope`` (a model's name, or ``all models``), ``candidates`` (grid points
    chosen among), the keys, ``raw_accuracy``, ``selection_bias``, ``corrected_accuracy``,
    ``fold_spread_x2`` (2 x std of the winner's fold accuracies) and ``folds``.
    """
    keys = _axes(summary, keys)
    acc_columns = fold_columns(summary)
    if summary[acc_columns].isna().to_numpy().any():
        raise ValueError("not every grid point has every (repeat, fold): the selection needs the same folds")
    scopes = [(model, summary[summary["model"] == model]) for model in sorted(summary["model"].unique())]
    if len(scopes) > 1:
        scopes.append(("all models", summary))
    rows = []
    for scope, part in scopes:
        part = part.reset_index(drop=True)
        est = selection_corrected(part[acc_columns].to_numpy())
        winner = part.iloc[est["winner"]]
        rows.append({"scope": scope, "candidates": len(part), **{k: winner[k] for k in keys},
                     "raw_accuracy": est["raw_accuracy"], "selection_bias": est["selection_bias"],
                     "corrected_accuracy": est["corrected_accuracy"],
                     "fold_spread_x2": float(winner["acc_std_x2"]), "folds": len(acc_columns)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------


def _pair_row(diffs, n_train, n_test, rope) -> dict:
    t = corrected_resampled_ttest(diffs, n_train, n_test)
    b = bayesian_correlated_ttest(diffs, n_train, n_test, rope=rope)
    return {
        "mean_diff": t["mean_diff"], "sd_diff": float(np.std(diffs, ddof=1)),
        "ci_low": t["ci_low"], "ci_high": t["ci_high"], "t": t["t"], "p": t["p"],
        "prob_worse": b["p_left"], "prob_rope": b["p_rope"], "prob_better": b["p_right"],
    }


def compare_to_best(folds: pd.DataFrame, by_model: bool = True, alpha: float = 0.05,
                    rope: float = 0.005, probability: float = 0.95,
                    keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Every configuration against the best one (of its model, or overall), with a verdict.

    The best is rank 1 of :func:`cvgrid.summary.point_summary` (the point cv_summary.tsv and
    refit_best call best). Each other configuration ``c`` is compared with it on the paired
    differences ``acc_c - acc_best`` (so ``mean_diff <= 0``) by the Bayesian correlated
    t-test, whose posterior gives the ``verdict`` (:func:`verdict`: *worse*, *practically
    equivalent* or *undecided*; *best* for the best itself), and by the corrected resampled
    t-test, Holm-adjusted over the group, beside it (``significantly_worse``: ``p_holm <
    alpha``). ``repeats_needed`` says how many repeats of the k-fold CV would decide an
    undecided comparison if its mean difference and SD stayed as observed (NaN: none would).

    Returns one row per configuration with columns: the keys, ``mean_accuracy``,
    ``best_<key>`` for each key except ``model`` (when ``by_model``; ``best_model`` too
    otherwise), ``best_mean_accuracy``, ``is_best``, ``verdict``, ``mean_diff``, ``sd_diff``
    (ddof=1 SD of the paired differences), ``ci_low``, ``ci_high``, ``t``, ``p``,
    ``p_holm``, ``significantly_worse``, ``prob_worse``, ``prob_rope``, ``prob_better``,
    ``repeats_needed`` and ``k``. Rows sorted by model (if ``by_model``), best first.
    """
    keys = _axes(folds, keys)
    wide = _wide(folds, keys)
    n_train, n_test = _sizes(folds)
    n_folds, _ = _fold_design(folds)
    summary = point_summary(folds, keys)
    if not by_model:
        summary["rank"] = np.arange(1, len(summary) + 1)
        summary["model_group"] = "all"
    else:
        summary["model_group"] = summary["model"]
    summary = summary.sort_values(["model_group", "rank"], kind="stable", ignore_index=True)
    best_keys = [k for k in keys if not (by_model and k == "model")]
    rows = []
    for _, group in summary.groupby("model_group", sort=True):
        best = group.iloc[0]
        best_col = tuple(best[k] for k in keys)
        group_rows = []
        for _, cfg in group.iterrows():
            col = tuple(cfg[k] for k in keys)
            row = {k: cfg[k] for k in keys}
            row["mean_accuracy"] = cfg["mean_accuracy"]
            for k in best_keys:
                row[f"best_{k}"] = best[k]
            row["best_mean_accuracy"] = best["mean_accuracy"]
            row["is_best"] = col == best_col
            if row["is_best"]:
                row.update(verdict=BEST, mean_diff=0.0, sd_diff=np.nan, ci_low=0.0, ci_high=0.0, t=np.nan,
                           p=np.nan, prob_worse=np.nan, prob_rope=np.nan, prob_better=np.nan,
                           repeats_needed=np.nan)
            else:
                diffs = wide[col].to_numpy() - wide[best_col].to_numpy()
                row.update(_pair_row(diffs, n_train, n_test, rope))
                row["verdict"] = verdict(row["prob_worse"], row["prob_rope"], probability)
                row["repeats_needed"] = repeats_needed(row["mean_diff"], row["sd_diff"], n_folds,
                                                       n_test / n_train, rope, probability)
            group_rows.append(row)
        adjusted = holm([r["p"] for r in group_rows])
        for r, ph in zip(group_rows, adjusted):
            r["p_holm"] = ph
            r["significantly_worse"] = bool(not r["is_best"] and ph < alpha)
            r["k"] = len(wide)
        rows.extend(group_rows)
    columns = (keys + ["mean_accuracy"] + [f"best_{k}" for k in best_keys]
               + ["best_mean_accuracy", "is_best", "verdict", "mean_diff", "sd_diff", "ci_low", "ci_high",
                  "t", "p", "p_holm", "significantly_worse", "prob_worse", "prob_rope", "prob_better",
                  "repeats_needed", "k"])
    return pd.DataFrame(rows, columns=columns)


def _best_pairs(folds: pd.DataFrame, keys: Sequence[str]) -> list[tuple[pd.Series, pd.Series]]:
    """Every pair of the models' best configurations, the better model first."""
    best = point_summary(folds, keys)
    best = best[best["rank"] == 1]  # already best first: the better model first
    rows = [row for _, row in best.iterrows()]
    return list(itertools.combinations(rows, 2))


def compare_models(folds: pd.DataFrame, alpha: float = 0.05, rope: float = 0.005,
                   probability: float = 0.95, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The best configuration of each model against the best of every other model.

    Models are ranked by the mean accuracy of their best configuration; for each pair with
    ``model_a`` ranked above ``model_b`` the differences are ``acc_a - acc_b`` (so
    ``mean_diff >= 0``). ``verdict`` is a's: *better*, *practically equivalent* or
    *undecided* (:func:`verdict`); the corrected resampled t-test's p-values form one Holm
    family beside it. Both bests were chosen on these folds, so the difference of their
    means is itself a little optimistic for whichever model had more grid points to choose from.

    Returns one row per unordered pair with columns ``model_a``, ``model_b``, ``config_a``,
    ``config_b`` (readable configuration strings), ``mean_accuracy_a``,
    ``mean_accuracy_b``, ``verdict``, ``mean_diff``, ``sd_diff``, ``ci_low``, ``ci_high``,
    ``t``, ``p``, ``p_holm``, ``significant`` (``p_holm < alpha``),
    ``prob_worse``/``prob_rope``/``prob_better`` (posterior probabilities for a relative to
    b) and ``k``. Empty (same columns) with fewer than two models.
    """
    keys = _axes(folds, keys)
    wide = _wide(folds, keys)
    n_train, n_test = _sizes(folds)
    rows = []
    for a, b in _best_pairs(folds, keys):
        col_a = tuple(a[k] for k in keys)
        col_b = tuple(b[k] for k in keys)
        diffs = wide[col_a].to_numpy() - wide[col_b].to_numpy()
        row = {"model_a": a["model"], "model_b": b["model"],
               "config_a": _describe(a, keys), "config_b": _describe(b, keys),
               "mean_accuracy_a": a["mean_accuracy"], "mean_accuracy_b": b["mean_accuracy"]}
        row.update(_pair_row(diffs, n_train, n_test, rope))
        row["verdict"] = verdict(row["prob_worse"], row["prob_rope"], probability, row["prob_better"])
        rows.append(row)
    columns = ["model_a", "model_b", "config_a", "config_b", "mean_accuracy_a", "mean_accuracy_b",
               "verdict", "mean_diff", "sd_diff", "ci_low", "ci_high", "t", "p", "p_holm", "significant",
               "prob_worse", "prob_rope", "prob_better", "k"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    out["significant"] = (out["p_holm"] < alpha).astype(bool)
    out["k"] = len(wide)
    return out


# ---------------------------------------------------------------------------
# Noise floor and factor effects
# ---------------------------------------------------------------------------

_NOISE_COLUMNS = ["n_repeats", "mean_accuracy", "repeat_mean_min", "repeat_mean_max",
                  "repeat_range", "repeat_std"]


def repeat_noise(folds: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Spread of each configuration's mean accuracy across repeats (the noise floor).

    For each configuration the mean accuracy over the folds of each repeat
    is computed; reported are ``n_repeats``, ``mean_accuracy`` (over all
    folds), ``repeat_mean_min``, ``repeat_mean_max``, ``repeat_range`` (max -
    min) and ``repeat_std`` (ddof=1) of those per-repeat means.  This is how
    much rerunning the *same* configuration (new fold split, new seed) moves
    its estimate.

    With a single repeat there is nothing to measure: an empty frame with
    the same columns (the keys plus the above) is returned.
    """
    keys = _axes(folds, keys)
    wide = _wide(folds, keys)
    columns = keys + _NOISE_COLUMNS
    n_repeats = wide.index.get_level_values("repeat").nunique()
    if n_repeats < 2:
        return pd.DataFrame(columns=columns)
    per_repeat = wide.groupby(level="repeat").mean()
    out = _config_frame(wide.columns, keys)
    out["n_repeats"] = n_repeats
    out["mean_accuracy"] = wide.mean().to_numpy()
    out["repeat_mean_min"] = per_repeat.min().to_numpy()
    out["repeat_mean_max"] = per_repeat.max().to_numpy()
    out["repeat_range"] = out["repeat_mean_max"] - out["repeat_mean_min"]
    out["repeat_std"] = per_repeat.std(ddof=1).to_numpy()
    order = point_summary(folds, keys)[keys]  # best first, as everywhere
    return order.merge(out, on=keys, how="left")[columns]


def repeat_noise_by_model(noise: pd.DataFrame) -> pd.DataFrame:
    """Per-model summary of :func:`repeat_noise`, next to the between-configuration spread.

    Columns: ``model``, ``n_configs``, ``n_repeats``, ``repeat_range_median``,
    ``repeat_range_max`` (the largest spread of one configuration across
    repeats), ``repeat_std_pooled`` (root mean square of the per-config
    ``repeat_std``), and for comparison ``config_range`` (best minus worst
    mean accuracy among the model's configurations) and ``config_std``
    (ddof=1 std of those means; NaN with a single configuration).  Empty
    (same columns) when ``noise`` is empty.
    """
    columns = ["model", "n_configs", "n_repeats", "repeat_range_median", "repeat_range_max",
               "repeat_std_pooled", "config_range", "config_std"]
    if noise.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for model, g in noise.groupby("model", sort=True):
        rows.append({
            "model": model,
            "n_configs": len(g),
            "n_repeats": int(g["n_repeats"].max()),
            "repeat_range_median": float(g["repeat_range"].median()),
            "repeat_range_max": float(g["repeat_range"].max()),
            "repeat_std_pooled": float(np.sqrt(np.mean(np.square(g["repeat_std"])))),
            "config_range": float(g["mean_accuracy"].max() - g["mean_accuracy"].min()),
            "config_std": float(g["mean_accuracy"].std(ddof=1)) if len(g) > 1 else math.nan,
        })
    return pd.DataFrame(rows, columns=columns)


def one_fold_dominates(diffs) -> bool:
    """True when leaving out a single (repeat, fold) pair would take away more than half of
    the mean effect or flip its sign: the effect rests on one fold, not on the grid."""
    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean())
    if d.size < 3 or abs(mean) <= ZERO_TOL:
        return False
    left_out = (d.sum() - d) / (d.size - 1)
    return bool(np.any(left_out * np.sign(mean) < abs(mean) / 2))


def _default_reference(levels: list) -> object:
    """The level others are compared with: "none" (augmentation, tta) or "reference" (a recipe
    of that name) if the factor has it, else the smallest."""
    return next((name for name in ("none", "reference") if name in levels), levels[0])


def factor_effects(folds: pd.DataFrame, factors: Sequence[str] | None = None,
                   reference: dict | None = None, alpha: float = 0.05,
                   keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Effect of each factor level on accuracy, averaged over the other factors, paired by fold.

    For a factor F, a level L and the reference level R: for every
    (repeat, fold), the accuracy difference ``acc(F=L, rest) - acc(F=R,
    rest)`` is averaged over all combinations ``rest`` of the other keys
    that the grid has at *both* levels; the k averaged differences go
    through :func:`corrected_resampled_ttest`.  On a full factorial grid this
    equals the difference of the two levels' marginal means (accuracy
    averaged over the other factors); matching the other factors keeps an
    incomplete grid from confounding the effect with them.

    The reference of a factor is ``reference[factor]`` if given, else the
    level ``"none"`` if present (augmentation), else ``"reference"`` (a recipe
    of that name), else the smallest level.
    Factors with a single level are skipped.  ``p_holm`` adjusts the p-values
    within each factor (its levels vs the reference); ``significant`` is
    ``p_holm < alpha``.

    The effect is an average over *this grid's* levels of the other factors:
    another grid (other learning rates, say) can give another effect.  Beside
    the mean over the folds stands the median (``median_diff``), and
    ``one_fold_dominates`` flags an effect that one fold carries
    (:func:`one_fold_dominates`).

    Returns one row per (factor, non-reference level) with columns
    ``factor``, ``level``, ``reference``, ``n_matched`` (combinations of the
    other keys averaged over), ``mean_level``, ``mean_reference`` (mean
    accuracy of the matched configurations at each level), ``mean_diff``,
    ``median_diff``, ``ci_low``, ``ci_high``, ``t``, ``p``, ``p_holm``,
    ``significant``, ``one_fold_dominates``, ``k``.
    ``level`` and ``reference`` keep their original types (object column).
    """
    keys = _axes(folds, keys)
    factors = sorted(keys) if factors is None else factors
    reference = dict(reference or {})
    wide = _wide(folds, keys)
    n_train, n_test = _sizes(folds)
    configs = _config_frame(wide.columns, keys)
    columns = ["factor", "level", "reference", "n_matched", "mean_level", "mean_reference",
               "mean_diff", "median_diff", "ci_low", "ci_high", "t", "p", "p_holm", "significant",
               "one_fold_dominates", "k"]
    rows = []
    for factor in factors:
        if factor not in keys:
            raise ValueError(f"unknown factor {factor!r}; configuration keys are {keys}")
        levels = sorted(configs[factor].unique().tolist())
        if len(levels) < 2:
            continue
        ref = reference.get(factor, _default_reference(levels))
        if ref not in levels:
            raise ValueError(f"reference {ref!r} is not a level of {factor}: {levels}")
        rest = [k for k in keys if k != factor]
        pos = keys.index(factor)

        def column(level, other):
            return tuple(list(other[:pos]) + [level] + list(other[pos:]))

        ref_rest = {tuple(r) for r in configs.loc[configs[factor] == ref, rest].itertuples(index=False)}
        factor_rows = []
        for level in levels:
            if level == ref:
                continue
            lvl_rest = {tuple(r) for r in configs.loc[configs[factor] == level, rest].itertuples(index=False)}
            matched = sorted(ref_rest & lvl_rest)
            if not matched:
                continue
            acc_l = wide[[column(level, o) for o in matched]].to_numpy()
            acc_r = wide[[column(ref, o) for o in matched]].to_numpy()
            diffs = (acc_l - acc_r).mean(axis=1)
            t = corrected_resampled_ttest(diffs, n_train, n_test)
            factor_rows.append({
                "factor": factor, "level": level, "reference": ref, "n_matched": len(matched),
                "mean_level": float(acc_l.mean()), "mean_reference": float(acc_r.mean()),
                "mean_diff": t["mean_diff"], "median_diff": float(np.median(diffs)),
                "ci_low": t["ci_low"], "ci_high": t["ci_high"], "t": t["t"], "p": t["p"], "k": t["k"],
                "one_fold_dominates": one_fold_dominates(diffs),
            })
        adjusted = holm([r["p"] for r in factor_rows])
        for r, ph in zip(factor_rows, adjusted):
            r["p_holm"] = float(ph)
            r["significant"] = bool(ph < alpha)
        rows.extend(factor_rows)
    out = pd.DataFrame(rows, columns=columns)
    out["level"] = out["level"].astype(object)
    out["reference"] = out["reference"].astype(object)
    return out


# ---------------------------------------------------------------------------
# Written summary
# ---------------------------------------------------------------------------

_FACTOR_NAMES = {"augmentation": "augmentation", "batch_size": "batch size",
                 "learning_rate": "learning rate", "model": "model", "weight_decay": "weight decay",
                 "label_smoothing": "label smoothing", "warmup_epochs": "warm-up epochs",
                 "max_epochs": "max epochs", "seed": "training seed", "tta": "test-time augmentation"}


def _fmt_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _describe(config, keys: Sequence[str] | None = None) -> str:
    """'batch size 32, learning rate 0.001, augmentation affine' (model left out)."""
    return ", ".join(f"{_FACTOR_NAMES.get(k, k)} {_fmt_value(config[k])}" for k in _axes(config, keys) if k != "model")


def _model(name) -> str:
    """'model_a' as it is, 'A' as 'model A'."""
    return str(name) if str(name).lower().startswith("model") else f"model {name}"


def _fmt_p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


def _pts(x: float) -> str:
    """A difference in accuracy (fraction) as signed percentage points."""
    v = 100.0 * x
    if abs(v) < 0.05:
        v = 0.0
    return f"{v:+.1f}"


def _names(rows: pd.DataFrame, keys: Sequence[str], max_listed: int, with_diff: bool = True) -> str:
    names = [_describe(r, keys) + (f" ({_pts(r['mean_diff'])})" if with_diff else "")
             for _, r in rows.head(max_listed).iterrows()]
    more = len(rows) - len(names)
    return "; ".join(names) + (f"; and {more} more" if more > 0 else "")


def summary_text(cv_summary: pd.DataFrame, comparisons: pd.DataFrame, effects: pd.DataFrame,
                 selected: pd.DataFrame | None = None, resolution_table: pd.DataFrame | None = None,
                 model_comparisons: pd.DataFrame | None = None,
                 noise_by_model: pd.DataFrame | None = None, alpha: float = 0.05, rope: float = 0.005,
                 probability: float = 0.95, max_listed: int = 5,
                 keys: Sequence[str] | None = None, diverged: pd.DataFrame | None = None) -> str:
    """The answer in words, generated from the tables; deterministic.

    Parameters
    ----------
    cv_summary
        cv_summary.tsv (:func:`cvgrid.summary.cv_summary`: keys, ``mean_accuracy``,
        ``acc_std_x2``, ``folds``, ``rank``).
    comparisons
        :func:`compare_to_best` output with ``by_model=True``.
    effects
        :func:`factor_effects` output.
    selected, resolution_table, model_comparisons, noise_by_model
        Optional :func:`selected_points`, :func:`resolution`, :func:`compare_models` and
        :func:`repeat_noise_by_model` output; a paragraph or sentence each when given.
    diverged
        The rows of cv_folds.tsv whose training diverged; a sentence names them.
    alpha, rope, probability
        The levels the tables were made with (for the wording).
    max_listed
        At most this many configurations are named per verdict and model.

    Returns paragraphs separated by blank lines, using only ``**bold**`` markup.
    Accuracies are in percent, differences in percentage points, with one decimal.
    """
    keys = _axes(cv_summary, keys)
    paragraphs = []
    rope_pts = f"{100 * rope:g} points"

    # Best configuration of each model, with the estimate corrected for choosing it.
    best = cv_summary[cv_summary["rank"] == 1]
    corrected = {} if selected is None else {r["scope"]: r for _, r in selected.iterrows()}
    parts = []
    for _, b in best.iterrows():
        s = (f"{_model(b['model'])} with {_describe(b, keys)}: {100 * b['mean_accuracy']:.1f}% "
             f"± {100 * b['acc_std_x2']:.1f}%")
        sel = corrected.get(b["model"])
        if sel is not None and sel["candidates"] > 1:
            s += (f", the best of {int(sel['candidates'])} on these folds, so optimistic: "
                  f"**{100 * sel['corrected_accuracy']:.1f}%** corrected for that choice")
        parts.append(s)
    k = int(best["folds"].iloc[0]) if len(best) else 0
    paragraphs.append(f"**Best configurations** (mean test accuracy over {k} folds ± the fold spread, "
                      "2 × std, which is not a confidence interval; the corrected figure, after "
                      "Tibshirani & Tibshirani 2009, is the accuracy to expect): "
                      + "; ".join(parts) + ".")

    # Best model against the others.
    if model_comparisons is not None and len(model_comparisons):
        sentences = []
        for _, r in model_comparisons.iterrows():
            facts = (f"{_pts(r['mean_diff'])} points, 95% CI {_pts(r['ci_low'])} to {_pts(r['ci_high'])}, "
                     f"P(better by more than {rope_pts}) = {r['prob_better']:.2f}, "
                     f"P(within ±{rope_pts}) = {r['prob_rope']:.2f}")
            if r["verdict"] == BETTER:
                sentences.append(f"{_model(r['model_a'])} is **better** than {_model(r['model_b'])} ({facts})")
            elif r["verdict"] == EQUIVALENT:
                sentences.append(f"{_model(r['model_a'])} and {_model(r['model_b'])} are **practically "
                                 f"equivalent** ({facts})")
            else:
                sentences.append(f"{_model(r['model_a'])} ahead of {_model(r['model_b'])} is **undecided** "
                                 f"with these folds ({facts})")
        text = "; ".join(sentences)
        paragraphs.append("**Models** (best configuration against best configuration, paired by fold): "
                          + text[0].upper() + text[1:] + ".")

    # Verdicts against each model's best.
    parts = []
    for model, g in comparisons.groupby("model", sort=True):
        others = g[~g["is_best"]]
        if others.empty:
            parts.append(f"{_model(model)} has a single configuration")
            continue
        counts = {v: others[others["verdict"] == v] for v in (WORSE, EQUIVALENT, UNDECIDED)}
        s = (f"{_model(model)}, {len(others)} other configuration{'s' if len(others) > 1 else ''}: "
             f"{len(counts[WORSE])} worse, "
             f"{len(counts[EQUIVALENT])} practically equivalent, {len(counts[UNDECIDED])} undecided")
        named = [f"{verdict_name} — {_names(rows, keys, max_listed)}"
                 for verdict_name, rows in counts.items() if len(rows)]
        holm_worse = int(others["significantly_worse"].sum())
        parts.append(s + " (" + "; ".join(named) + f"); {holm_worse} significantly worse by the "
                     f"corrected t-test with Holm's correction at α = {alpha:g}")
    paragraphs.append(f"**Against each model's best** (Bayesian correlated t-test, paired by fold; a verdict "
                      f"needs posterior probability ≥ {probability:g}: *worse* by more than {rope_pts}, or "
                      f"*practically equivalent* within ±{rope_pts}; anything else is *undecided* with "
                      "these folds, which is not evidence that it is as good as the best): "
                      + "; ".join(parts) + ".")

    # What the design can resolve.
    if resolution_table is not None and len(resolution_table):
        parts = []
        for _, r in resolution_table.iterrows():
            g = comparisons[(comparisons["model"] == r["model"]) & ~comparisons["is_best"]]
            undecided = g[g["verdict"] == UNDECIDED]
            never = int(undecided["repeats_needed"].isna().sum())
            more = undecided["repeats_needed"].dropna()
            s = (f"{_model(r['model'])} ({int(r['folds'])} folds × {int(r['repeats'])} repeat(s); median SD of "
                 f"the paired differences {100 * r['sd_diff_median']:.2f} points): a configuration must be "
                 f"about **{100 * r['worse_gap_now']:.1f} points** below the best to be called worse "
                 f"(with 3 repeats {100 * r['worse_gap_3_repeats']:.1f}, with 10 "
                 f"{100 * r['worse_gap_10_repeats']:.1f}, with any number never less than "
                 f"{100 * r['worse_gap_limit']:.1f}). ")
            if r["prob_rope_max_now"] < probability:
                s += (f"Practical equivalence within ±{rope_pts} cannot be shown with these folds (at a zero "
                      f"difference P(within) would be {r['prob_rope_max_now']:.2f}")
                if r["prob_rope_max_limit"] < probability:
                    s += (f"; {r['prob_rope_max_limit']:.2f} with unlimited repeats, so no number of "
                          "repeats can show it")
                s += (f"); the narrowest ROPE in which it could be shown is ±"
                      f"{100 * r['equivalence_rope_now']:.1f} points now and ±"
                      f"{100 * r['equivalence_rope_limit']:.1f} with unlimited repeats. ")
            if len(undecided):
                s += f"Of the {len(undecided)} undecided, "
                if len(more):
                    s += (f"{len(more)} would be decided by {int(more.max())} repeat(s) or fewer if their "
                          "mean difference and spread held")
                if len(more) and never:
                    s += ", and "
                if never:
                    s += f"{never} would stay undecided even with 100 repeats (more runs will not help)"
                s += "."
            parts.append(s.strip())
        paragraphs.append("**What these folds can resolve**: " + " ".join(parts))

    # Factors: significant ones first (in table order).
    matter, not_matter = [], []
    for factor in (dict.fromkeys(effects["factor"]) if len(effects) else []):
        g = effects.loc[effects["factor"] == factor]
        name = _FACTOR_NAMES.get(factor, factor)
        name = name[0].upper() + name[1:]
        ref = _fmt_value(g["reference"].iloc[0])
        levels = ", ".join(
            f"{_fmt_value(r['level'])} vs {ref} {_pts(r['mean_diff'])} points "
            f"(95% CI {_pts(r['ci_low'])} to {_pts(r['ci_high'])}, {_fmt_p(r['p_holm'])}"
            + (f"; one fold carries it, median {_pts(r['median_diff'])}"
               if r["one_fold_dominates"] and r["significant"] else "")
            + ")"
            for _, r in g.iterrows())
        if g["significant"].any():
            matter.append(f"{name} matters: {levels}.")
        else:
            not_matter.append(f"{name}: no significant effect, which does not show there is none: {levels}.")
    if matter or not_matter:
        paragraphs.append("**Factors** (accuracy difference averaged over this grid's levels of the other "
                          "factors, paired by fold; p Holm-adjusted within each factor): "
                          + " ".join(matter + not_matter))

    # Noise floor.
    if noise_by_model is not None and len(noise_by_model):
        parts = [f"up to {100 * r['repeat_range_max']:.1f} points for {_model(r['model'])} "
                 f"(median {100 * r['repeat_range_median']:.1f}; its configurations span "
                 f"{100 * r['config_range']:.1f} points)"
                 for _, r in noise_by_model.iterrows()]
        paragraphs.append("**Noise floor**: rerunning the same configuration changed its mean "
                          "accuracy by " + "; ".join(parts) + ".")

    if diverged is not None and len(diverged):
        paragraphs.append(f"**Diverged**: {len(diverged)} fold{'s' if len(diverged) > 1 else ''} diverged (training "
                          "loss NaN or inf; each is scored with its best weights before that epoch): "
                          + "; ".join(f"{_model(r['model'])} with {_describe(r, keys)}, repeat {int(r['repeat'])} "
                                      f"fold {int(r['fold'])}" for _, r in diverged.iterrows()) + ".")

    return "\n\n".join(paragraphs) + "\n"



def summary_html(text: str, title: str = "Which configuration to choose") -> str:
    """:func:`summary_text` (paragraphs, **bold**, *italics*) as a small self-contained HTML page."""
    def inline(paragraph):
        escaped = html.escape(paragraph)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
        return re.sub(r"\*(.+?)\*", r"<i>\1</i>", escaped)

    body = "\n".join(f"<p>{inline(paragraph)}</p>" for paragraph in text.split("\n\n") if paragraph.strip())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;line-height:1.5}</style></head>"
            f"<body><h2>{html.escape(title)}</h2>\n{body}\n</body></html>\n")

def analyse(folds: pd.DataFrame, cv_summary: pd.DataFrame, alpha: float = 0.05, rope: float = 0.005,
            probability: float = 0.95) -> dict:
    """Every table of the statistics step (``tables``: name -> frame, written as
    results/stats/<name>.tsv) and the written summary (``text``), from cv_folds.tsv and
    cv_summary.tsv. One function, so that the workflow and a check of published results
    compute the same thing."""
    to_best = compare_to_best(folds, by_model=True, alpha=alpha, rope=rope, probability=probability)
    tables = {
        "compare_to_best": to_best,
        "compare_models": compare_models(folds, alpha=alpha, rope=rope, probability=probability),
        "resolution": resolution(to_best, folds, rope=rope, probability=probability),
        "selected": selected_points(cv_summary),
        "factor_effects": factor_effects(folds, alpha=alpha),
        "repeat_noise": repeat_noise(folds),
    }
    text = summary_text(cv_summary, to_best, tables["factor_effects"], selected=tables["selected"],
                        resolution_table=tables["resolution"], model_comparisons=tables["compare_models"],
                        noise_by_model=repeat_noise_by_model(tables["repeat_noise"]),
                        alpha=alpha, rope=rope, probability=probability,
                        diverged=folds[folds["diverged"]] if "diverged" in folds else None)
    return {"tables": tables, "text": text}
