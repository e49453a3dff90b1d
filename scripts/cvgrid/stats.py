"""Paired statistics for a cross-validated hyperparameter grid.

Every configuration of the grid is scored on the *same* folds, so two
configurations can be compared fold by fold: the unit of analysis is the
difference of their accuracies on one (repeat, fold) pair.  This module turns
the long table of fold accuracies into objective answers:

* :func:`corrected_resampled_ttest` -- Nadeau & Bengio (2003) corrected
  resampled t-test on per-fold differences.
* :func:`bayesian_correlated_ttest` -- Corani & Benavoli (2015) / Benavoli et
  al. (2017) Bayesian correlated t-test with a region of practical
  equivalence (ROPE).
* :func:`holm` -- Holm (1979) step-down adjusted p-values.
* :func:`mcnemar_exact` -- exact McNemar test on paired predictions.
* :func:`config_summary`, :func:`compare_to_best`, :func:`compare_models`,
  :func:`mcnemar_models`, :func:`repeat_noise`, :func:`repeat_noise_by_model`,
  :func:`factor_effects` -- tables built from the long ``folds`` frame.
* :func:`summary_text` -- a short plain-English paragraph from those tables.

Input formats
-------------
``folds``: one row per training job with columns ``model``, ``batch_size``,
``learning_rate``, ``augmentation`` (the configuration keys, see
:data:`CONFIG_KEYS`), ``repeat``, ``fold``, ``accuracy`` (in [0, 1]),
``n_train`` and ``n_test``.

``predictions``: the configuration keys plus ``repeat``, ``fold``,
``sample``, ``true`` and ``predicted``.

Conventions
-----------
* Differences are always "first minus second" (``a - b``); accuracies and
  differences are fractions, not percent, everywhere except in
  :func:`summary_text`.
* ``k`` is the number of (repeat, fold) pairs, i.e. ``repeats * folds``.
* Ties (equal mean accuracy) are broken deterministically by the sort order
  of the configuration keys.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

__all__ = [
    "CONFIG_KEYS",
    "PAIR_KEYS",
    "ZERO_TOL",
    "corrected_resampled_ttest",
    "bayesian_correlated_ttest",
    "holm",
    "mcnemar_exact",
    "paired_predictions",
    "config_summary",
    "best_configs",
    "compare_to_best",
    "compare_models",
    "mcnemar_models",
    "repeat_noise",
    "repeat_noise_by_model",
    "factor_effects",
    "summary_text",
]

#: Columns that identify one configuration of the grid.
CONFIG_KEYS: tuple[str, ...] = ("model", "batch_size", "learning_rate", "augmentation")
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


def mcnemar_exact(pred_a, pred_b, true) -> dict:
    """Exact McNemar test on paired predictions of two classifiers.

    ``pred_a``, ``pred_b`` and ``true`` must be aligned (same sample at the
    same position; see :func:`paired_predictions`).  Only discordant samples
    count: ``b`` = a right and b wrong, ``c`` = a wrong and b right; under
    the null hypothesis ``b ~ Binomial(b + c, 1/2)`` and the two-sided p-value
    is ``scipy.stats.binomtest(b, b + c, 0.5).pvalue`` (= ``min(1, 2 *
    P(X <= min(b, c)))``).  With no discordant sample, ``p = 1``.

    Returns a dict with ``n``, ``both_correct``, ``a_only_correct`` (b),
    ``b_only_correct`` (c), ``both_wrong``, ``accuracy_a``, ``accuracy_b``
    and ``p``.
    """
    a = np.asarray(pred_a)
    b = np.asarray(pred_b)
    y = np.asarray(true)
    if not (a.shape == b.shape == y.shape and a.ndim == 1):
        raise ValueError("pred_a, pred_b and true must be 1-d and of equal length")
    ra, rb = a == y, b == y
    n01 = int(np.sum(ra & ~rb))
    n10 = int(np.sum(~ra & rb))
    p = 1.0 if n01 + n10 == 0 else float(sps.binomtest(n01, n01 + n10, 0.5).pvalue)
    return {
        "n": int(y.size),
        "both_correct": int(np.sum(ra & rb)),
        "a_only_correct": n01,
        "b_only_correct": n10,
        "both_wrong": int(np.sum(~ra & ~rb)),
        "accuracy_a": float(ra.mean()) if y.size else math.nan,
        "accuracy_b": float(rb.mean()) if y.size else math.nan,
        "p": min(p, 1.0),
    }


# ---------------------------------------------------------------------------
# Helpers on the long `folds` frame
# ---------------------------------------------------------------------------


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}")


def _wide(folds: pd.DataFrame, keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
    """Accuracy as (repeat, fold) rows x configuration columns.

    Raises if a configuration has a (repeat, fold) twice or misses one that
    another configuration has: comparisons must be paired on the same folds.
    """
    keys = list(keys)
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
    """Mean n_train and n_test over all rows (the folds are shared by all configurations)."""
    _check_columns(folds, ["n_train", "n_test"], "folds")
    return float(folds["n_train"].mean()), float(folds["n_test"].mean())


def _config_frame(columns: pd.Index, keys: Sequence[str]) -> pd.DataFrame:
    """The configuration tuples of a wide frame's columns as a key frame."""
    return pd.DataFrame(list(columns), columns=list(keys))


def config_summary(folds: pd.DataFrame, keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
    """Per configuration: ``mean_accuracy``, ``std_accuracy`` and ``k``.

    ``std_accuracy`` is the sample standard deviation (ddof=1) of the k fold
    accuracies (all repeats pooled); ``mean +- 2 * std`` is what
    :func:`summary_text` reports.  Rows sorted by model, then by mean
    accuracy descending, then by the keys.
    """
    wide = _wide(folds, keys)
    out = _config_frame(wide.columns, keys)
    out["mean_accuracy"] = wide.mean().to_numpy()
    out["std_accuracy"] = wide.std(ddof=1).to_numpy()
    out["k"] = len(wide)
    return _sort_configs(out, keys)


def _sort_configs(frame: pd.DataFrame, keys: Sequence[str], by_model: bool = True) -> pd.DataFrame:
    keys = list(keys)
    first = ["model"] if by_model and "model" in keys else []
    rest = [k for k in keys if k not in first]
    order = first + ["mean_accuracy"] + rest
    asc = [True] * len(first) + [False] + [True] * len(rest)
    return frame.sort_values(order, ascending=asc, kind="stable").reset_index(drop=True)


def best_configs(folds: pd.DataFrame, keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
    """The best configuration (highest mean accuracy) of each model, one row per model.

    Columns: the keys, ``mean_accuracy``, ``std_accuracy``, ``k``.  Ties are
    broken by the key order (smallest batch size, learning rate, ... first).
    """
    summary = config_summary(folds, keys)
    return summary.groupby("model", sort=True).head(1).reset_index(drop=True)


# ---------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------


def _pair_row(diffs, n_train, n_test, rope) -> dict:
    t = corrected_resampled_ttest(diffs, n_train, n_test)
    b = bayesian_correlated_ttest(diffs, n_train, n_test, rope=rope)
    return {
        "mean_diff": t["mean_diff"], "ci_low": t["ci_low"], "ci_high": t["ci_high"],
        "t": t["t"], "p": t["p"],
        "prob_worse": b["p_left"], "prob_rope": b["p_rope"], "prob_better": b["p_right"],
    }


def compare_to_best(folds: pd.DataFrame, by_model: bool = True, alpha: float = 0.05,
                    rope: float = 0.005, keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
    """Every configuration against the best one (of its model, or overall).

    For each group (each model if ``by_model``, else the whole grid) the best
    configuration is the one with the highest mean accuracy (ties: key
    order).  Each other configuration ``c`` is compared with it on the paired
    differences ``acc_c - acc_best`` (so ``mean_diff <= 0``) by
    :func:`corrected_resampled_ttest` and :func:`bayesian_correlated_ttest`.
    The p-values of a group form one Holm family (the best itself is not
    compared: its ``p``/``p_holm`` are NaN).

    Returns one row per configuration with columns: the keys,
    ``mean_accuracy``, ``best_<key>`` for each key except ``model`` (when
    ``by_model``; ``best_model`` too otherwise), ``best_mean_accuracy``,
    ``is_best``, ``mean_diff``, ``ci_low``, ``ci_high``, ``t``, ``p``,
    ``p_holm``, ``tied_with_best`` (True where ``p_holm >= alpha``, i.e. not
    significantly worse after Holm; True for the best itself),
    ``prob_worse``/``prob_rope``/``prob_better`` (Bayesian posterior
    probabilities that the configuration is worse than / practically
    equivalent to / better than the best, ROPE ``rope``), and ``k``.
    Rows sorted by model (if ``by_model``), mean accuracy descending, keys.
    """
    keys = list(keys)
    wide = _wide(folds, keys)
    n_train, n_test = _sizes(folds)
    summary = _config_frame(wide.columns, keys)
    summary["mean_accuracy"] = wide.mean().to_numpy()
    summary["col"] = list(wide.columns)
    summary = _sort_configs(summary, keys, by_model)
    groups = summary.groupby("model", sort=True) if by_model else [(None, summary)]
    best_keys = [k for k in keys if not (by_model and k == "model")]
    rows = []
    for _, group in groups:
        best = group.iloc[0]
        group_rows = []
        for _, cfg in group.iterrows():
            row = {k: cfg[k] for k in keys}
            row["mean_accuracy"] = cfg["mean_accuracy"]
            for k in best_keys:
                row[f"best_{k}"] = best[k]
            row["best_mean_accuracy"] = best["mean_accuracy"]
            row["is_best"] = cfg["col"] == best["col"]
            if row["is_best"]:
                row.update(mean_diff=0.0, ci_low=0.0, ci_high=0.0, t=np.nan, p=np.nan,
                           prob_worse=np.nan, prob_rope=np.nan, prob_better=np.nan)
            else:
                diffs = wide[cfg["col"]].to_numpy() - wide[best["col"]].to_numpy()
                row.update(_pair_row(diffs, n_train, n_test, rope))
            group_rows.append(row)
        adjusted = holm([r["p"] for r in group_rows])
        for r, ph in zip(group_rows, adjusted):
            r["p_holm"] = ph
            r["tied_with_best"] = bool(r["is_best"] or ph >= alpha)
            r["k"] = len(wide)
        rows.extend(group_rows)
    columns = (keys + ["mean_accuracy"] + [f"best_{k}" for k in best_keys]
               + ["best_mean_accuracy", "is_best", "mean_diff", "ci_low", "ci_high", "t", "p",
                  "p_holm", "tied_with_best", "prob_worse", "prob_rope", "prob_better", "k"])
    return pd.DataFrame(rows, columns=columns)


def _best_pairs(folds: pd.DataFrame, keys: Sequence[str]) -> list[tuple[pd.Series, pd.Series]]:
    """Every pair of the models' best configurations, the better model first."""
    best = best_configs(folds, keys)
    best = best.sort_values(["mean_accuracy", "model"], ascending=[False, True], kind="stable")
    rows = [row for _, row in best.iterrows()]
    return list(itertools.combinations(rows, 2))


def compare_models(folds: pd.DataFrame, alpha: float = 0.05, rope: float = 0.005,
                   keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
    """The best configuration of each model against the best of every other model.

    Models are ranked by the mean accuracy of their best configuration; for
    each pair with ``model_a`` ranked above ``model_b`` the differences are
    ``acc_a - acc_b`` (so ``mean_diff >= 0``).  All pairs form one Holm
    family.

    Returns one row per unordered pair with columns ``model_a``, ``model_b``,
    ``config_a``, ``config_b`` (readable configuration strings),
    ``mean_accuracy_a``, ``mean_accuracy_b``, ``mean_diff``, ``ci_low``,
    ``ci_high``, ``t``, ``p``, ``p_holm``, ``significant`` (``p_holm <
    alpha``), ``prob_worse``/``prob_rope``/``prob_better`` (posterior
    probabilities for a relative to b) and ``k``.  Empty (same columns) with
    fewer than two models.
    """
    keys = list(keys)
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
        rows.append(row)
    columns = ["model_a", "model_b", "config_a", "config_b", "mean_accuracy_a", "mean_accuracy_b",
               "mean_diff", "ci_low", "ci_high", "t", "p", "p_holm", "significant",
               "prob_worse", "prob_rope", "prob_better", "k"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    out["significant"] = (out["p_holm"] < alpha).astype(bool)
    out["k"] = len(wide)
    return out


def paired_predictions(predictions: pd.DataFrame, config_a: dict, config_b: dict,
                       repeat: int | None = 0) -> pd.DataFrame:
    """Align two configurations' out-of-fold predictions by (repeat, fold, sample).

    ``config_a``/``config_b`` map key columns to values (e.g. a row of
    :func:`best_configs`; keys absent from ``predictions`` are ignored).
    ``repeat`` selects one repeat (default 0: in one repeat of k-fold every
    image is predicted exactly once, which McNemar's independence assumption
    needs); ``None`` pools all repeats (each image then counts once per
    repeat).  Returns columns ``repeat``, ``fold``, ``sample``, ``true``,
    ``pred_a``, ``pred_b``; raises if the two do not cover the same samples
    or disagree on ``true``.
    """
    on = list(PAIR_KEYS) + ["sample"]
    _check_columns(predictions, on + ["true", "predicted"], "predictions")

    def select(config):
        mask = np.ones(len(predictions), dtype=bool)
        for k, v in config.items():
            if k in predictions.columns and k in CONFIG_KEYS:
                mask &= (predictions[k] == v).to_numpy()
        part = predictions.loc[mask]
        if repeat is not None:
            part = part.loc[part["repeat"] == repeat]
        if part.empty:
            raise ValueError(f"no predictions for configuration {config} (repeat={repeat})")
        if part.duplicated(on).any():
            raise ValueError(f"duplicated (repeat, fold, sample) predictions for {config}")
        return part[on + ["true", "predicted"]]

    a, b = select(config_a), select(config_b)
    merged = a.merge(b, on=on, how="outer", suffixes=("_a", "_b"), indicator=True)
    if (merged["_merge"] != "both").any():
        raise ValueError("the two configurations were not predicted on the same samples")
    if (merged["true_a"] != merged["true_b"]).any():
        raise ValueError("the two configurations disagree on the true labels")
    merged = merged.rename(columns={"true_a": "true", "predicted_a": "pred_a", "predicted_b": "pred_b"})
    merged = merged.sort_values(on, kind="stable").reset_index(drop=True)
    return merged[on + ["true", "pred_a", "pred_b"]]


def mcnemar_models(predictions: pd.DataFrame, folds: pd.DataFrame, repeat: int | None = 0,
                   keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
    """Exact McNemar test between the best configurations of every pair of models.

    Best configurations and pair orientation as in :func:`compare_models`
    (``model_a`` has the higher mean fold accuracy); predictions aligned by
    :func:`paired_predictions` (``repeat`` as there).  Columns: ``model_a``,
    ``model_b``, ``config_a``, ``config_b``, then the fields of
    :func:`mcnemar_exact` (``n``, ``both_correct``, ``a_only_correct``,
    ``b_only_correct``, ``both_wrong``, ``accuracy_a``, ``accuracy_b``,
    ``p``) and ``p_holm`` over the pairs.
    """
    keys = list(keys)
    rows = []
    for a, b in _best_pairs(folds, keys):
        paired = paired_predictions(predictions, {k: a[k] for k in keys},
                                    {k: b[k] for k in keys}, repeat=repeat)
        row = {"model_a": a["model"], "model_b": b["model"],
               "config_a": _describe(a, keys), "config_b": _describe(b, keys)}
        row.update(mcnemar_exact(paired["pred_a"], paired["pred_b"], paired["true"]))
        rows.append(row)
    columns = ["model_a", "model_b", "config_a", "config_b", "n", "both_correct",
               "a_only_correct", "b_only_correct", "both_wrong", "accuracy_a", "accuracy_b",
               "p", "p_holm"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    return out


# ---------------------------------------------------------------------------
# Noise floor and factor effects
# ---------------------------------------------------------------------------

_NOISE_COLUMNS = ["n_repeats", "mean_accuracy", "repeat_mean_min", "repeat_mean_max",
                  "repeat_range", "repeat_std"]


def repeat_noise(folds: pd.DataFrame, keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
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
    keys = list(keys)
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
    return _sort_configs(out, keys)[columns]


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


def _default_reference(levels: list) -> object:
    return "none" if "none" in levels else levels[0]


def factor_effects(folds: pd.DataFrame, factors: Sequence[str] = ("augmentation", "batch_size",
                                                                   "learning_rate", "model"),
                   reference: dict | None = None, alpha: float = 0.05,
                   keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
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
    level ``"none"`` if present (augmentation), else the smallest level.
    Factors with a single level are skipped.  ``p_holm`` adjusts the p-values
    within each factor (its levels vs the reference); ``significant`` is
    ``p_holm < alpha``.

    Returns one row per (factor, non-reference level) with columns
    ``factor``, ``level``, ``reference``, ``n_matched`` (combinations of the
    other keys averaged over), ``mean_level``, ``mean_reference`` (mean
    accuracy of the matched configurations at each level), ``mean_diff``,
    ``ci_low``, ``ci_high``, ``t``, ``p``, ``p_holm``, ``significant``, ``k``.
    ``level`` and ``reference`` keep their original types (object column).
    """
    keys = list(keys)
    reference = dict(reference or {})
    wide = _wide(folds, keys)
    n_train, n_test = _sizes(folds)
    configs = _config_frame(wide.columns, keys)
    columns = ["factor", "level", "reference", "n_matched", "mean_level", "mean_reference",
               "mean_diff", "ci_low", "ci_high", "t", "p", "p_holm", "significant", "k"]
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
                "mean_diff": t["mean_diff"], "ci_low": t["ci_low"], "ci_high": t["ci_high"],
                "t": t["t"], "p": t["p"], "k": t["k"],
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
                 "learning_rate": "learning rate", "model": "model"}


def _fmt_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _describe(config, keys: Sequence[str] = CONFIG_KEYS) -> str:
    """'batch size 32, learning rate 0.001, augmentation affine' (model left out)."""
    return ", ".join(f"{_FACTOR_NAMES.get(k, k)} {_fmt_value(config[k])}" for k in keys if k != "model")


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


def summary_text(cv_summary: pd.DataFrame, comparisons: pd.DataFrame, effects: pd.DataFrame,
                 model_comparisons: pd.DataFrame | None = None,
                 noise_by_model: pd.DataFrame | None = None, alpha: float = 0.05,
                 max_listed: int = 5, keys: Sequence[str] = CONFIG_KEYS) -> str:
    """A short plain-English summary generated from the tables; deterministic.

    Parameters
    ----------
    cv_summary
        :func:`config_summary` output (keys, ``mean_accuracy``,
        ``std_accuracy``, ``k``).
    comparisons
        :func:`compare_to_best` output with ``by_model=True``.
    effects
        :func:`factor_effects` output.
    model_comparisons, noise_by_model
        Optional :func:`compare_models` and :func:`repeat_noise_by_model`
        output; a sentence each when given and not empty.
    alpha
        Significance level used in the wording (should match the tables').
    max_listed
        At most this many tied configurations are named per model.

    Returns paragraphs separated by blank lines, using only ``**bold**``
    markup (valid in both Markdown and reStructuredText).  Accuracies are
    in percent, differences in percentage points, with one decimal.
    """
    keys = list(keys)
    paragraphs = []

    # Best configuration of each model.
    best = cv_summary.sort_values(["model", "mean_accuracy"] + [k for k in keys if k != "model"],
                                  ascending=[True, False] + [True] * (len(keys) - 1), kind="stable")
    best = best.groupby("model", sort=True).head(1)
    ranked = best.sort_values(["mean_accuracy", "model"], ascending=[False, True], kind="stable")
    parts = []
    for _, b in ranked.iterrows():
        parts.append(f"model {b['model']} with {_describe(b, keys)}: "
                     f"{100 * b['mean_accuracy']:.1f}% ± {200 * b['std_accuracy']:.1f}%")
    k = int(best["k"].iloc[0]) if "k" in best.columns and len(best) else None
    over = f" over {k} folds" if k else ""
    paragraphs.append("**Best configurations** (mean ± 2 × std of the fold accuracies"
                      f"{over}): " + "; ".join(parts) + ".")

    # Best model vs the others.
    if model_comparisons is not None and len(model_comparisons):
        sentences = []
        for _, r in model_comparisons.iterrows():
            ci = (f"95% CI {_pts(r['ci_low'])} to {_pts(r['ci_high'])}, "
                  f"Holm-adjusted {_fmt_p(r['p_holm'])}")
            if r["p_holm"] < alpha:
                sentences.append(f"model {r['model_a']} is more accurate than model {r['model_b']} "
                                 f"by {100 * abs(r['mean_diff']):.1f} percentage points ({ci})")
            else:
                sentences.append(f"model {r['model_a']} and model {r['model_b']} are not "
                                 f"significantly different ({_pts(r['mean_diff'])} points, {ci})")
        text = "; ".join(sentences)
        paragraphs.append("**Models** (best configuration against best configuration, corrected "
                          "resampled t-test): " + text[0].upper() + text[1:] + ".")

    # Ties with the best.
    parts = []
    for model, g in comparisons.groupby("model", sort=True):
        tied = g.loc[g["tied_with_best"] & ~g["is_best"]]
        s = f"model {model}: {int(g['tied_with_best'].sum())} of {len(g)} configurations"
        if len(tied):
            names = [_describe(r, keys) for _, r in tied.head(max_listed).iterrows()]
            more = len(tied) - len(names)
            s += (f" (the best and {len(tied)} more: " + "; ".join(names)
                  + (f"; and {more} others" if more > 0 else "") + ")")
        else:
            s += " (only the best)"
        parts.append(s)
    if parts:
        paragraphs.append("**Tied with the best** (not significantly worse, corrected resampled "
                          f"t-test with Holm's correction, α = {alpha:g}): " + "; ".join(parts) + ".")

    # Factors: one sentence per factor, significant ones first (in table order).
    matter, not_matter = [], []
    for factor in (dict.fromkeys(effects["factor"]) if len(effects) else []):
        g = effects.loc[effects["factor"] == factor]
        name = _FACTOR_NAMES.get(factor, factor)
        ref = _fmt_value(g["reference"].iloc[0])
        levels = ", ".join(
            f"{_fmt_value(r['level'])} vs {ref} {_pts(r['mean_diff'])} points "
            f"(95% CI {_pts(r['ci_low'])} to {_pts(r['ci_high'])}, {_fmt_p(r['p_holm'])})"
            for _, r in g.iterrows())
        if g["significant"].any():
            matter.append(f"{name[0].upper() + name[1:]} matters: {levels}.")
        else:
            not_matter.append(f"{name[0].upper() + name[1:]} has no significant effect: {levels}.")
    if matter or not_matter:
        paragraphs.append("**Factors** (accuracy difference averaged over the other factors, paired "
                          "by fold; p Holm-adjusted within each factor): "
                          + " ".join(matter + not_matter))

    # Noise floor.
    if noise_by_model is not None and len(noise_by_model):
        parts = [f"up to {100 * r['repeat_range_max']:.1f} points for model {r['model']} "
                 f"(median {100 * r['repeat_range_median']:.1f}; its configurations span "
                 f"{100 * r['config_range']:.1f} points)"
                 for _, r in noise_by_model.iterrows()]
        paragraphs.append("**Noise floor**: rerunning the same configuration changed its mean "
                          "accuracy by " + "; ".join(parts) + ".")

    return "\n\n".join(paragraphs) + "\n"
