"""Paired statistics for a cross-validated hyperparameter grid: numbers and tables only.

Every configuration of the grid is scored on the *same* folds, so two
configurations can be compared fold by fold: the unit of analysis is the
difference of their accuracies on one (repeat, fold) pair.  This module turns
the long table of fold accuracies into numbers that claim no more than the
folds support; it writes no sentence (the words are :mod:`cvgrid.wording`'s,
the analysis of one run :mod:`cvgrid.analysis`'s, and neither is imported here):

* :class:`CorrelatedPosterior` -- the posterior of the Corani & Benavoli (2015) /
  Benavoli et al. (2017) Bayesian correlated t-test with a region of practical
  equivalence (ROPE); every probability, :func:`verdict` (*worse*, *practically
  equivalent* or *undecided* with these folds), resolution figure and
  :func:`repeats_needed` comes from it.
* :func:`corrected_resampled_ttest` -- Nadeau & Bengio (2003) corrected
  resampled t-test, with :func:`holm` (Holm 1979) over a family; reported
  beside the verdict.
* :func:`resolution` -- the smallest gap this design can call worse, now, with
  more repeats and in the limit, and the narrowest ROPE in which equivalence
  could be shown at all.
* :func:`compare_to_best`, :func:`compare_models`, :func:`repeat_noise`,
  :func:`repeat_noise_by_model`, :func:`factor_effects` -- tables built from
  the long ``folds`` frame, at the :class:`Thresholds` of the config.
* :func:`factor_trends`, :func:`factor_bins`, :func:`sampled_level_effects` -- the factors
  of a sampled grid (grid.sample), whose points are no product of levels.

The winner corrected for its selection (Tibshirani & Tibshirani 2009) is
:func:`cvgrid.summary.selected_points`, beside the summary it corrects.

Input formats
-------------
``folds``: one row per training job with columns ``model``, ``batch_size``,
``learning_rate``, ``augmentation`` (the configuration keys, see
:data:`CONFIG_KEYS`), ``repeat``, ``fold``, ``accuracy`` (in [0, 1]),
``n_train``, ``n_test`` and optionally ``n_validation`` (cv_folds.tsv).

Conventions
-----------
* Differences are always "first minus second" (``a - b``); accuracies and
  differences are fractions, not percent.
* ``k`` is the number of (repeat, fold) pairs, i.e. ``repeats * folds``.
* Which configuration is best, and in which order equal means come, is decided
  in one place: :func:`cvgrid.summary.point_summary`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from cvgrid.grid import GRID_KEYS, axes_of
from cvgrid.metrics import from_score, summary_columns, to_score
from cvgrid.summary import point_summary

__all__ = [
    "CONFIG_KEYS",
    "PAIR_KEYS",
    "shared_pairs",
    "ZERO_TOL",
    "Thresholds",
    "CorrelatedPosterior",
    "corrected_resampled_ttest",
    "bayesian_correlated_ttest",
    "design_sizes",
    "holm",
    "verdict",
    "repeats_needed",
    "resolution",
    "compare_to_best",
    "compare_models",
    "repeat_noise",
    "repeat_noise_by_model",
    "one_fold_dominates",
    "factor_effects",
    "factor_trends",
    "factor_bins",
    "sampled_level_effects",
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


@dataclass(frozen=True)
class Thresholds:
    """The levels every verdict and test of one analysis uses, built once from the config's
    ``statistics`` section (whose JSON schema holds their defaults): ``rope``, the half-width
    of the region of practical equivalence (accuracy); ``probability``, the posterior
    probability a verdict needs; ``alpha``, the level of the Holm-corrected t-tests;
    ``metric``, statistics.metric: what every comparison compares (cvgrid.metrics), as a score
    where higher is better (cvgrid.metrics.to_score), so that the ROPE and every difference are
    in the metric's own units and a negative difference is always worse."""

    rope: float
    probability: float
    alpha: float
    metric: str

    @classmethod
    def from_config(cls, statistics: Mapping) -> "Thresholds":
        """From the validated config's ``statistics`` mapping (keys rope, probability, alpha, metric)."""
        return cls(rope=float(statistics["rope"]), probability=float(statistics["probability"]),
                   alpha=float(statistics["alpha"]), metric=str(statistics["metric"]))


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
    variance (ddof=1) of the differences (the scale of
    :class:`CorrelatedPosterior`); ``t = mean / se`` follows Student's
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
    se = CorrelatedPosterior.from_differences(d, n_train, n_test).scale
    t = mean / se
    p = float(2.0 * sps.t.sf(abs(t), df))
    ci_low, ci_high = sps.t.interval(confidence, df, loc=mean, scale=se)
    out.update(ci_low=float(ci_low), ci_high=float(ci_high), t=float(t), p=min(p, 1.0), se=se)
    return out


WORSE, EQUIVALENT, UNDECIDED, BETTER, BEST = (
    "worse", "practically equivalent", "undecided", "better", "best")


def verdict(prob_worse: float, prob_rope: float, probability: float, prob_better: float = 0.0) -> str:
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


@dataclass(frozen=True)
class CorrelatedPosterior:
    """Posterior of the mean difference ``acc_a - acc_b`` in the Bayesian correlated t-test
    (Corani & Benavoli 2015; Benavoli et al. 2017): Student's t with ``df = k - 1`` degrees of
    freedom (normal for ``df = inf``, the limit of many repeats), location ``mean`` and
    ``scale = sqrt((1/k + rho/(1-rho)) * s^2)``, where ``rho = n_test / (n_train + n_test)``
    is the correlation between folds (so ``rho/(1-rho) = n_test/n_train``: the variance of the
    Nadeau-Bengio correction). As ``baycomp.CorrelatedTTest``'s posterior (which approximates
    ``rho`` by ``1/n_folds``), from the exact set sizes. A scale of 0 (constant differences) is
    a point mass at the mean, as in ``baycomp``.

    Every probability, verdict and resolution figure of this module comes from this object:
    :meth:`probs`, :meth:`verdict`, :meth:`smallest_worse_gap`,
    :meth:`smallest_equivalence_rope`, :meth:`largest_prob_rope`, and
    :func:`repeats_needed` through :meth:`for_design`."""

    mean: float
    scale: float  # (an array of scales and df: one posterior per element, see for_design)
    df: float

    @classmethod
    def from_differences(cls, diffs, n_train, n_test) -> "CorrelatedPosterior":
        """The posterior of observed per-(repeat, fold) differences (k = len(diffs) pairs)."""
        d = _as_diffs(diffs)
        mean = float(np.mean(d))
        if np.ptp(d) <= ZERO_TOL:
            return cls(0.0 if abs(mean) <= ZERO_TOL else mean, 0.0, d.size - 1)
        scale = math.sqrt((1.0 / d.size + _size_ratio(n_train, n_test)) * float(np.var(d, ddof=1)))
        return cls(mean, scale, d.size - 1)

    @classmethod
    def for_design(cls, mean: float, sd: float, k, size_ratio: float) -> "CorrelatedPosterior":
        """The posterior a comparison with this mean difference and SD of the differences
        would have with k pairs (k = inf: unlimited repeats; an array of k: one posterior per
        element); size_ratio = n_test / n_train."""
        return cls(mean, sd * np.sqrt(1.0 / k + size_ratio), k - 1)

    def _shape(self):
        """Student's t with df degrees of freedom, normal in the limit (standardised)."""
        return sps.norm if np.ndim(self.df) == 0 and math.isinf(self.df) else sps.t(self.df)

    def probs(self, rope: float) -> tuple:
        """(P(diff < -rope), P(-rope <= diff <= rope), P(diff > rope)), summing to 1; with a
        point mass, 0/1 by where the mean lies (on the ROPE boundary counts as inside)."""
        if rope < 0:
            raise ValueError("rope must be >= 0")
        if np.ndim(self.scale) == 0 and self.scale == 0:
            worse, better = float(self.mean < -rope), float(self.mean > rope)
        else:
            worse = sps.t.cdf(-rope, self.df, loc=self.mean, scale=self.scale)
            better = sps.t.sf(rope, self.df, loc=self.mean, scale=self.scale)
        within = np.maximum(0.0, 1.0 - worse - better)
        return tuple(float(p) if np.ndim(p) == 0 else p for p in (worse, within, better))

    def prob_worse(self, rope: float) -> float:
        """P(diff < -rope): a worse than b by more than the ROPE."""
        return self.probs(rope)[0]

    def verdict(self, rope: float, probability: float) -> str:
        """:func:`verdict` of this posterior."""
        worse, within, better = self.probs(rope)
        return verdict(worse, within, probability, better)

    def smallest_worse_gap(self, rope: float, probability: float) -> float:
        """The smallest true shortfall that, observed exactly, is called *worse*: the mean
        difference d with P(diff < -rope) = probability at this scale."""
        return rope + self._shape().ppf(probability) * self.scale

    def smallest_equivalence_rope(self, probability: float) -> float:
        """The narrowest ROPE within which two configurations could be shown practically
        equivalent at all (observed difference exactly 0) at this scale."""
        return self._shape().ppf((1 + probability) / 2) * self.scale

    def largest_prob_rope(self, rope: float) -> float:
        """P(|diff| <= rope) when the observed difference is exactly 0: the most equivalence
        evidence this scale can give."""
        return 1.0 if self.scale == 0 else float(2 * self._shape().cdf(rope / self.scale) - 1)


def bayesian_correlated_ttest(diffs, n_train, n_test, rope: float) -> dict:
    """Bayesian correlated t-test (Corani & Benavoli 2015; Benavoli et al. 2017) of paired
    differences (as in :func:`corrected_resampled_ttest`) with a region of practical
    equivalence of half-width `rope` (accuracy units): :class:`CorrelatedPosterior`'s
    probabilities as a dict: ``p_left`` = P(diff < -rope) (a worse), ``p_rope``, ``p_right``
    = P(diff > rope) (a better), plus ``mean_diff`` and ``scale``."""
    posterior = CorrelatedPosterior.from_differences(diffs, n_train, n_test)
    p_left, p_rope, p_right = posterior.probs(rope)
    return {"p_left": p_left, "p_rope": p_rope, "p_right": p_right,
            "mean_diff": posterior.mean, "scale": posterior.scale}


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


def _wide(folds: pd.DataFrame, keys: Sequence[str] | None = None, *, metric: str) -> pd.DataFrame:
    """The score of `metric` (cvgrid.metrics.to_score: accuracy itself) as (repeat, fold) rows x
    configuration columns; NaN where a configuration lacks a pair.

    Raises if a configuration has a (repeat, fold) twice, or lacks pairs other than whole
    repeats at the end: every configuration has repeats 0 .. m - 1 with all their folds, for its
    own m. That is what cv.decide leaves (it adds repeats one at a time to some points, and
    always to the best, cvgrid.decision.points_to_repeat): any two configurations then share the
    pairs of the one with fewer repeats, and a comparison is paired on those
    (:func:`compare_to_best`, :func:`compare_models`; ``k`` says how many). What needs the
    same pairs for every configuration takes :func:`shared_pairs` first.
    """
    keys = _axes(folds, keys)
    _check_columns(folds, keys + list(PAIR_KEYS) + [metric], "folds")
    if folds.empty:
        raise ValueError("folds is empty")
    dup = folds.duplicated(keys + list(PAIR_KEYS))
    if dup.any():
        raise ValueError(f"folds has {int(dup.sum())} duplicated (configuration, repeat, fold) rows")
    wide = to_score(metric, folds.set_index(list(PAIR_KEYS) + keys)[metric]).unstack(keys).sort_index()
    wide = wide.sort_index(axis=1)
    repeats = wide.notna().groupby(level="repeat")
    whole, some = repeats.all(), repeats.any()
    # A repeat with only some of its folds, or a repeat missing before one that is there.
    if (whole != some).to_numpy().any() or (whole.cummin() != whole).to_numpy().any():
        raise ValueError("not every configuration has every (repeat, fold), and the missing ones are not whole"
                         " repeats at the end (cv.decide's added repeats): comparisons need the same folds")
    return wide.astype(float)


def shared_pairs(folds: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of `folds` on the (repeat, fold) pairs that every configuration has: all of them
    unless cv.decide gave some points more repeats (:func:`_wide`), else the repeats every point
    has. What must see every configuration on the same pairs (the contenders and the choice
    among them, BBC-CV, the selection correction, the factor effects) runs on these."""
    keys = _axes(folds, keys)
    pairs = folds.groupby(list(PAIR_KEYS))[keys].apply(lambda part: len(part.drop_duplicates()))
    every = pairs[pairs == folds[keys].drop_duplicates().shape[0]].index
    return folds[folds.set_index(list(PAIR_KEYS)).index.isin(every)].reset_index(drop=True)


def design_sizes(folds: pd.DataFrame) -> tuple[float, float]:
    """(n_train, n_test) of the correlated t-test for a fold table: the mean size of a fold's
    training part and of its test fold over all rows (the folds are shared by all
    configurations). The training part is what the network learnt from:
    ``n_train`` plus, where the table has it, the early-stopping ``n_validation``."""
    _check_columns(folds, ["n_train", "n_test"], "folds")
    training = folds["n_train"] + (folds["n_validation"] if "n_validation" in folds.columns else 0)
    return float(training.mean()), float(folds["n_test"].mean())


_sizes = design_sizes  # the name this module's tables call it by


def _config_frame(columns: pd.Index, keys: Sequence[str]) -> pd.DataFrame:
    """The configuration tuples of a wide frame's columns as a key frame."""
    return pd.DataFrame(list(columns), columns=list(keys))


def _fold_design(folds: pd.DataFrame) -> tuple[int, int]:
    """(folds per repeat, repeats) of the long table."""
    return int(folds["fold"].nunique()), int(folds["repeat"].nunique())


# ---------------------------------------------------------------------------
# What the design can resolve
# ---------------------------------------------------------------------------


def repeats_needed(mean_diff: float, sd: float, *, folds: int, size_ratio: float, thresholds: Thresholds,
                   most: int = 100) -> float:
    """The fewest repeats of `folds`-fold CV whose posterior (:meth:`CorrelatedPosterior.for_design`)
    would give a :func:`verdict` other than *undecided* if the comparison's mean difference and
    SD stayed as observed; NaN when not even `most` repeats would (often none would: see
    :meth:`CorrelatedPosterior.smallest_worse_gap`)."""
    if sd == 0:  # a point mass: decided by the folds there are
        return 1.0
    repeats = np.arange(1, most + 1)
    posterior = CorrelatedPosterior.for_design(mean_diff, sd, folds * repeats, size_ratio)
    probs = zip(*posterior.probs(thresholds.rope))
    decided = [verdict(w, r, thresholds.probability, b) != UNDECIDED for w, r, b in probs]
    return float(repeats[decided.index(True)]) if any(decided) else math.nan


def resolution(comparisons: pd.DataFrame, folds: pd.DataFrame, thresholds: Thresholds) -> pd.DataFrame:
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
    rope, probability = thresholds.rope, thresholds.probability
    rows = []
    for model, group in comparisons.groupby("model", sort=True):
        sd = group.loc[~group["is_best"], "sd_diff"].dropna()
        if sd.empty:
            continue
        s = float(sd.median())

        def posterior(k):  # at a zero observed difference, with k pairs (inf: unlimited repeats)
            return CorrelatedPosterior.for_design(0.0, s, k, ratio)

        now, limit = posterior(k_now), posterior(math.inf)
        rows.append({
            "model": model, "folds": n_folds, "repeats": n_repeats, "size_ratio": ratio,
            "sd_diff_median": s, "sd_diff_min": float(sd.min()), "sd_diff_max": float(sd.max()),
            "worse_gap_now": now.smallest_worse_gap(rope, probability),
            "worse_gap_3_repeats": posterior(3 * n_folds).smallest_worse_gap(rope, probability),
            "worse_gap_10_repeats": posterior(10 * n_folds).smallest_worse_gap(rope, probability),
            "worse_gap_limit": limit.smallest_worse_gap(rope, probability),
            "equivalence_rope_now": now.smallest_equivalence_rope(probability),
            "equivalence_rope_limit": limit.smallest_equivalence_rope(probability),
            "prob_rope_max_now": now.largest_prob_rope(rope),
            "prob_rope_max_limit": limit.largest_prob_rope(rope),
            "rope": rope, "probability": probability,
        })
    columns = ["model", "folds", "repeats", "size_ratio", "sd_diff_median", "sd_diff_min", "sd_diff_max",
               "worse_gap_now", "worse_gap_3_repeats", "worse_gap_10_repeats", "worse_gap_limit",
               "equivalence_rope_now", "equivalence_rope_limit", "prob_rope_max_now",
               "prob_rope_max_limit", "rope", "probability"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------


def _pair_row(diffs, n_train, n_test, thresholds: Thresholds) -> dict:
    """Both tests of one paired comparison, and the verdict of its posterior."""
    t = corrected_resampled_ttest(diffs, n_train, n_test)
    posterior = CorrelatedPosterior.from_differences(diffs, n_train, n_test)
    prob_worse, prob_rope, prob_better = posterior.probs(thresholds.rope)
    return {
        "mean_diff": t["mean_diff"], "sd_diff": float(np.std(diffs, ddof=1)),
        "ci_low": t["ci_low"], "ci_high": t["ci_high"], "t": t["t"], "p": t["p"],
        "prob_worse": prob_worse, "prob_rope": prob_rope, "prob_better": prob_better,
        "verdict": posterior.verdict(thresholds.rope, thresholds.probability),
    }


def compare_to_best(folds: pd.DataFrame, thresholds: Thresholds, *, by_model: bool = True,
                    keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Every configuration against the best one (of its model, or overall), with a verdict.

    The best is rank 1 of :func:`cvgrid.summary.point_summary` (the point cv_summary.tsv and
    refit_best call best). Each other configuration ``c`` is compared with it on the paired
    differences ``acc_c - acc_best`` (so ``mean_diff <= 0``) by the Bayesian correlated
    t-test, whose posterior (:class:`CorrelatedPosterior`) gives the ``verdict``
    (:func:`verdict`: *worse*, *practically equivalent* or *undecided*; *best* for the best
    itself) at ``thresholds.rope`` and ``thresholds.probability``, and by the corrected
    resampled t-test, Holm-adjusted over the group, beside it (``significantly_worse``:
    ``p_holm < thresholds.alpha``). ``repeats_needed`` says how many repeats of the k-fold CV would decide an
    undecided comparison if its mean difference and SD stayed as observed (NaN: none would).
    Where cv.decide gave points different numbers of repeats, the best is the best of the points
    with the most (:func:`cvgrid.summary.point_summary` says why), it has every pair, and each
    comparison is paired on the pairs both points have: ``k`` per row says how many.

    The comparison is of ``thresholds.metric``'s score (higher is better, cvgrid.metrics), so
    ``mean_diff`` and the ROPE are in the metric's units and negative is worse, also for
    log-loss. Returns one row per configuration with columns: the keys, ``mean_accuracy``
    (``mean_<metric>`` for another metric: its mean values),
    ``best_<key>`` for each key except ``model`` (when ``by_model``; ``best_model`` too
    otherwise), ``best_mean_accuracy``, ``is_best``, ``verdict``, ``mean_diff``, ``sd_diff``
    (ddof=1 SD of the paired differences), ``ci_low``, ``ci_high``, ``t``, ``p``,
    ``p_holm``, ``significantly_worse``, ``prob_worse``, ``prob_rope``, ``prob_better``,
    ``repeats_needed``, ``k``, and the ``rope`` and ``probability`` the verdicts used. Rows
    sorted by model (if ``by_model``), best first.
    """
    keys = _axes(folds, keys)
    metric = thresholds.metric
    mean = summary_columns(metric)[0]
    wide = _wide(folds, keys, metric=metric)
    n_train, n_test = _sizes(folds)
    n_folds, _ = _fold_design(folds)
    summary = point_summary(folds, keys, metric=metric)
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
            row[mean] = cfg[mean]
            for k in best_keys:
                row[f"best_{k}"] = best[k]
            row[f"best_{mean}"] = best[mean]
            row["is_best"] = col == best_col
            if row["is_best"]:
                row.update(verdict=BEST, mean_diff=0.0, sd_diff=np.nan, ci_low=0.0, ci_high=0.0, t=np.nan,
                           p=np.nan, prob_worse=np.nan, prob_rope=np.nan, prob_better=np.nan,
                           repeats_needed=np.nan)
            else:
                diffs = wide[col].to_numpy() - wide[best_col].to_numpy()
                diffs = diffs[~np.isnan(diffs)]  # the pairs both have (_wide)
                row.update(_pair_row(diffs, n_train, n_test, thresholds))
                row["repeats_needed"] = repeats_needed(row["mean_diff"], row["sd_diff"], folds=n_folds,
                                                       size_ratio=n_test / n_train, thresholds=thresholds)
            row["k"] = int(np.isfinite(wide[col].to_numpy() + wide[best_col].to_numpy()).sum())
            group_rows.append(row)
        adjusted = holm([r["p"] for r in group_rows])
        for r, ph in zip(group_rows, adjusted):
            r["p_holm"] = ph
            r["significantly_worse"] = bool(not r["is_best"] and ph < thresholds.alpha)
            r["rope"], r["probability"] = thresholds.rope, thresholds.probability
        rows.extend(group_rows)
    columns = (keys + [mean] + [f"best_{k}" for k in best_keys]
               + [f"best_{mean}", "is_best", "verdict", "mean_diff", "sd_diff", "ci_low", "ci_high",
                  "t", "p", "p_holm", "significantly_worse", "prob_worse", "prob_rope", "prob_better",
                  "repeats_needed", "k", "rope", "probability"])
    return pd.DataFrame(rows, columns=columns)


def _best_pairs(folds: pd.DataFrame, keys: Sequence[str], metric: str) -> list[tuple[pd.Series, pd.Series]]:
    """Every pair of the models' best configurations, the better model first."""
    best = point_summary(folds, keys, metric=metric)
    best = best[best["rank"] == 1]  # already best first: the better model first
    rows = [row for _, row in best.iterrows()]
    return list(itertools.combinations(rows, 2))


def compare_models(folds: pd.DataFrame, thresholds: Thresholds, *,
                   keys: Sequence[str] | None = None) -> pd.DataFrame:
    """The best configuration of each model against the best of every other model.

    Models are ranked by the mean of ``thresholds.metric`` (its score: lower log-loss is
    better) of their best configuration, and compared on that score, as in :func:`compare_to_best`; for each pair with
    ``model_a`` ranked above ``model_b`` the differences are ``acc_a - acc_b`` (so
    ``mean_diff >= 0``). ``verdict`` is a's: *better*, *practically equivalent* or
    *undecided* (:func:`verdict`); the corrected resampled t-test's p-values form one Holm
    family beside it. Both bests were chosen on these folds, so the difference of their
    means is itself a little optimistic for whichever model had more grid points to choose from.

    Returns one row per unordered pair with columns ``model_a``, ``model_b``, then each other
    key's value in a's and b's best configuration (``<key>_a``, ``<key>_b``), ``mean_accuracy_a``,
    ``mean_accuracy_b``, ``verdict``, ``mean_diff``, ``sd_diff``, ``ci_low``, ``ci_high``,
    ``t``, ``p``, ``p_holm``, ``significant`` (``p_holm < alpha``),
    ``prob_worse``/``prob_rope``/``prob_better`` (posterior probabilities for a relative to
    b), ``k``, ``rope`` and ``probability``. Empty (same columns) with fewer than two models.
    """
    keys = _axes(folds, keys)
    metric = thresholds.metric
    mean = summary_columns(metric)[0]
    wide = _wide(folds, keys, metric=metric)
    n_train, n_test = _sizes(folds)
    settings = [f"{k}_{side}" for k in keys if k != "model" for side in ("a", "b")]
    rows = []
    for a, b in _best_pairs(folds, keys, metric):
        col_a = tuple(a[k] for k in keys)
        col_b = tuple(b[k] for k in keys)
        diffs = wide[col_a].to_numpy() - wide[col_b].to_numpy()
        diffs = diffs[~np.isnan(diffs)]  # the pairs both have (_wide)
        row = {"model_a": a["model"], "model_b": b["model"],
               **{f"{k}_{side}": point[k] for k in keys if k != "model" for side, point in (("a", a), ("b", b))},
               f"{mean}_a": a[mean], f"{mean}_b": b[mean]}
        row.update(_pair_row(diffs, n_train, n_test, thresholds))
        row["k"] = len(diffs)
        rows.append(row)
    columns = ["model_a", "model_b", *settings, f"{mean}_a", f"{mean}_b",
               "verdict", "mean_diff", "sd_diff", "ci_low", "ci_high", "t", "p", "p_holm", "significant",
               "prob_worse", "prob_rope", "prob_better", "k", "rope", "probability"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    out["significant"] = (out["p_holm"] < thresholds.alpha).astype(bool)
    out["rope"], out["probability"] = thresholds.rope, thresholds.probability
    return out


# ---------------------------------------------------------------------------
# Noise floor and factor effects
# ---------------------------------------------------------------------------

_NOISE_COLUMNS = ["n_repeats", "mean_accuracy", "repeat_mean_min", "repeat_mean_max",
                  "repeat_range", "repeat_std"]


def repeat_noise(folds: pd.DataFrame, keys: Sequence[str] | None = None, *, metric: str) -> pd.DataFrame:
    """Spread of each configuration's mean accuracy across repeats (the noise floor).

    For each configuration the mean accuracy over the folds of each repeat
    is computed; reported are ``n_repeats``, ``mean_accuracy`` (over all
    folds), ``repeat_mean_min``, ``repeat_mean_max``, ``repeat_range`` (max -
    min) and ``repeat_std`` (ddof=1) of those per-repeat means.  This is how
    much rerunning the *same* configuration (new fold split, new seed) moves
    its estimate.

    With a single repeat there is nothing to measure: an empty frame with
    the same columns (the keys plus the above) is returned. Of `metric` (statistics.metric):
    ``mean_<metric>`` instead of ``mean_accuracy`` for another one, in its own values.
    """
    keys = _axes(folds, keys)
    mean = summary_columns(metric)[0]
    wide = from_score(metric, _wide(folds, keys, metric=metric))
    columns = keys + [mean if c == "mean_accuracy" else c for c in _NOISE_COLUMNS]
    n_repeats = wide.index.get_level_values("repeat").nunique()
    if n_repeats < 2:
        return pd.DataFrame(columns=columns)
    per_repeat = wide.groupby(level="repeat").mean()  # NaN for a repeat a point lacks (cv.decide)
    out = _config_frame(wide.columns, keys)
    out["n_repeats"] = per_repeat.notna().sum().to_numpy()
    out[mean] = wide.mean().to_numpy()
    out["repeat_mean_min"] = per_repeat.min().to_numpy()
    out["repeat_mean_max"] = per_repeat.max().to_numpy()
    out["repeat_range"] = out["repeat_mean_max"] - out["repeat_mean_min"]
    out["repeat_std"] = per_repeat.std(ddof=1).to_numpy()
    order = point_summary(folds, keys, metric=metric)[keys]  # best first, as everywhere
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
    mean = next(c for c in noise.columns if str(c).startswith("mean_"))  # of statistics.metric
    rows = []
    for model, g in noise.groupby("model", sort=True):
        rows.append({
            "model": model,
            "n_configs": len(g),
            "n_repeats": int(g["n_repeats"].max()),
            "repeat_range_median": float(g["repeat_range"].median()),
            "repeat_range_max": float(g["repeat_range"].max()),
            "repeat_std_pooled": float(np.sqrt(np.mean(np.square(g["repeat_std"])))),
            "config_range": float(g[mean].max() - g[mean].min()),
            "config_std": float(g[mean].std(ddof=1)) if len(g) > 1 else math.nan,
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


def factor_effects(folds: pd.DataFrame, *, alpha: float, metric: str, factors: Sequence[str] | None = None,
                   reference: dict | None = None, keys: Sequence[str] | None = None) -> pd.DataFrame:
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

    Of `metric` (statistics.metric): ``mean_level`` and ``mean_reference`` in its values, the
    differences of its score (cvgrid.metrics.to_score: positive = the level is better, also
    for log-loss), in its units.
    """
    keys = _axes(folds, keys)
    factors = sorted(keys) if factors is None else factors
    reference = dict(reference or {})
    wide = _wide(shared_pairs(folds, keys), keys, metric=metric)  # averages over points: the same pairs
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
                "mean_level": float(from_score(metric, acc_l.mean())),
                "mean_reference": float(from_score(metric, acc_r.mean())),
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
# Sampled grids (grid.sample): trends over ranged axes, level effects of drawn choices
# ---------------------------------------------------------------------------
#
# A sampled grid is no product of levels: no two points share the other axes' values, so the
# paired, matched level comparison of :func:`factor_effects` has nothing to match. An axis drawn
# from a range (log_uniform, uniform, int) is shown as a trend over its values; an axis drawn
# from a list (choices) keeps level effects, computed across points.

#: Quantile bins of a ranged axis in :func:`factor_bins` (quarters: 8 points each of 32).
TREND_BINS = 4
#: Bootstrap resamples of the points behind a trend's interval (seeded: the same table every run).
TREND_RESAMPLES = 2000
TREND_SEED = 0
#: The fewest points a trend is computed from (a rank correlation of 3 points says nothing).
TREND_MIN_POINTS = 5

_TREND_COLUMNS = ["factor", "distribution", "scale", "points", "value_low", "value_high", "rho", "ci_low",
                  "ci_high", "p", "p_holm", "significant", "fold_rho_min", "fold_rho_max", "folds_same_sign", "k"]
_BIN_COLUMNS = ["factor", "bin", "points", "value_low", "value_high", "mean", "ci_low", "ci_high", "k"]
_SAMPLED_LEVEL_COLUMNS = ["factor", "level", "reference", "n_level", "n_reference", "mean_level", "mean_reference",
                          "mean_diff", "median_diff", "ci_low", "ci_high", "t", "df", "p", "p_holm", "significant",
                          "one_fold_dominates", "k"]


def _distribution(spec) -> str:
    """The distribution of a ranged axis: its config form {distribution: [low, high]}, or the name."""
    return next(iter(spec)) if isinstance(spec, Mapping) else str(spec)


def _point_scores(folds: pd.DataFrame, keys: Sequence[str], metric: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, wide): one row per grid point with its axes and ``score``, the mean over its
    folds of the metric's score (cvgrid.metrics.to_score); and the (repeat, fold) x point
    scores behind it, columns in the points' order."""
    wide = _wide(folds, keys, metric=metric)
    points = _config_frame(wide.columns, keys)
    points["score"] = wide.mean().to_numpy()
    return points, wide


def _spearman(x, y) -> float:
    return float(sps.spearmanr(x, y).statistic)


def factor_trends(folds: pd.DataFrame, ranges: Mapping[str, Mapping], *, alpha: float, metric: str,
                  keys: Sequence[str] | None = None, confidence: float = 0.95,
                  resamples: int = TREND_RESAMPLES, seed: int = TREND_SEED) -> pd.DataFrame:
    """The trend of the score over each ranged axis of a sampled grid (`ranges`: axis ->
    {distribution: [low, high]}, cvgrid.grid.sampled_ranges): Spearman's rank correlation
    ``rho`` (scipy.stats.spearmanr) between the axis's value and the grid point's mean score over
    its folds, across the grid's points (all models together). A rank correlation is the same on a
    log scale, so log_uniform axes need no transform; ``scale`` says how the figures draw it.

    The interval is a bootstrap over the points (scipy.stats.bootstrap, BCa, `resamples` paired
    resamples of (value, mean score), seeded): the points are the unit the design draws, and a
    point keeps all its folds, so the folds are never resampled as if they were independent
    observations (they share the point's settings and, between points, the same test images).
    The alternative, a t interval over per-fold correlations, would treat the 32 points as fixed
    and measure only fold noise, which the shared folds make small; but which points were drawn
    is the larger uncertainty of a trend over a space. The folds are shown beside it: the
    correlation on each (repeat, fold) alone (``fold_rho_min``, ``fold_rho_max``) and on how many
    of the ``k`` it has the sign of ``rho`` (``folds_same_sign``).

    ``p`` is spearmanr's (t approximation, points taken as independent), Holm-adjusted over
    the ranged axes (``p_holm``); ``significant`` is ``p_holm < alpha``. A trend is an
    association across the points drawn, not a causal effect: the other axes were drawn as well,
    and a curved relation (best in the middle) can have a small rho (:func:`factor_bins` shows
    it). rho is of the score (higher is better, also for log-loss): positive means higher
    values of the axis go with better scores. Fewer than :data:`TREND_MIN_POINTS` points, or a
    constant axis or score: rho and its interval are NaN.

    One row per ranged axis: ``factor``, ``distribution``, ``scale`` (log for log_uniform,
    else linear), ``points``, ``value_low``, ``value_high`` (the drawn values' range), ``rho``,
    ``ci_low``, ``ci_high``, ``p``, ``p_holm``, ``significant``, ``fold_rho_min``,
    ``fold_rho_max``, ``folds_same_sign``, ``k``."""
    keys = _axes(folds, keys)
    unknown = [axis for axis in ranges if axis not in keys]
    if unknown:
        raise ValueError(f"ranged axis {unknown[0]!r} is not a column of the fold table (axes: {keys})")
    points, wide = _point_scores(folds, keys, metric)
    rows = []
    for axis, spec in ranges.items():
        values = points[axis].to_numpy(dtype=float)
        scores = points["score"].to_numpy()
        distribution = _distribution(spec)
        row = {"factor": axis, "distribution": distribution, "scale": "log" if distribution == "log_uniform" else "linear",
               "points": len(points), "value_low": float(values.min()), "value_high": float(values.max()),
               "k": len(wide)}
        usable = len(points) >= TREND_MIN_POINTS and np.ptp(values) > 0 and np.ptp(scores) > ZERO_TOL
        if usable:
            result = sps.spearmanr(values, scores)
            boot = sps.bootstrap((values, scores), _spearman, paired=True, vectorized=False,
                                 n_resamples=resamples, confidence_level=confidence, method="BCa",
                                 rng=np.random.default_rng(seed))
            per_fold = np.array([_spearman(values, wide.iloc[i].to_numpy()) for i in range(len(wide))])
            rho = float(result.statistic)
            row.update(rho=rho, ci_low=float(boot.confidence_interval.low), ci_high=float(boot.confidence_interval.high),
                       p=float(result.pvalue), fold_rho_min=float(np.nanmin(per_fold)),
                       fold_rho_max=float(np.nanmax(per_fold)),
                       folds_same_sign=int(np.sum(np.sign(per_fold) == np.sign(rho))) if rho != 0 else 0)
        else:
            row.update(rho=math.nan, ci_low=math.nan, ci_high=math.nan, p=math.nan, fold_rho_min=math.nan,
                       fold_rho_max=math.nan, folds_same_sign=0)
        rows.append(row)
    out = pd.DataFrame(rows, columns=_TREND_COLUMNS)
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    out["significant"] = (out["p_holm"] < alpha).astype(bool)
    return out


def factor_bins(folds: pd.DataFrame, ranges: Mapping[str, Mapping], *, metric: str,
                keys: Sequence[str] | None = None, bins: int = TREND_BINS, confidence: float = 0.95) -> pd.DataFrame:
    """The ranged axes of a sampled grid in quantile bins (pandas.qcut of the drawn values into
    `bins` bins of about equal numbers of points; fewer where values repeat, as on an int axis):
    each bin's ``mean`` of its points' mean values of `metric` over their folds, with a t interval over
    those points (scipy.stats.ttest_1samp's confidence interval: the points of a bin differ in
    the other axes too, and that spread is in the interval), ``value_low`` and ``value_high``
    (the bin's drawn values), ``points`` and ``k`` (folds per point). ``mean``, ``ci_low`` and
    ``ci_high`` are in the metric's own values (for log-loss lower is better); a bin of one point
    has no interval (NaN). Shows what a rank correlation cannot: a best value in the middle."""
    keys = _axes(folds, keys)
    points, wide = _point_scores(folds, keys, metric)
    rows = []
    for axis in ranges:
        values = points[axis].astype(float)
        codes = pd.qcut(values, q=min(bins, values.nunique()), labels=False, duplicates="drop")
        for number, part in points.groupby(codes.to_numpy(), sort=True):
            scores = part["score"].to_numpy()
            low = high = math.nan
            if len(scores) > 1 and np.ptp(scores) > ZERO_TOL:
                interval = sps.ttest_1samp(scores, 0.0).confidence_interval(confidence)
                low, high = sorted(float(from_score(metric, v)) for v in (interval.low, interval.high))
            elif len(scores) > 1:  # every point of the bin scored the same
                low = high = float(from_score(metric, scores[0]))
            rows.append({"factor": axis, "bin": int(number) + 1, "points": len(part),
                         "value_low": float(part[axis].min()), "value_high": float(part[axis].max()),
                         "mean": float(from_score(metric, scores.mean())), "ci_low": low, "ci_high": high,
                         "k": len(wide)})
    return pd.DataFrame(rows, columns=_BIN_COLUMNS)


def sampled_level_effects(folds: pd.DataFrame, choices: Sequence[str], *, alpha: float, metric: str,
                          reference: dict | None = None, keys: Sequence[str] | None = None,
                          confidence: float = 0.95) -> pd.DataFrame:
    """Level effects of the axes of a sampled grid drawn from lists (`choices`: those axes):
    for a level L and the reference R (as in :func:`factor_effects`), the mean score of the
    points drawn at L minus that of the points drawn at R, each point's score its mean over its
    folds. The points at L and at R are different points, unpaired: Welch's t-test
    (scipy.stats.ttest_ind, unequal variances) gives the interval, ``t``, ``df`` and ``p``,
    Holm-adjusted within each factor. The other axes differ between the two groups of points;
    the draws balance them (a scrambled Sobol sequence nearly evenly), so they confound the
    effect only by chance, and their spread is part of the interval.

    Per (repeat, fold), the mean at L minus the mean at R gives ``median_diff`` (the median over
    the folds) and ``one_fold_dominates`` (:func:`one_fold_dominates`). Columns: ``factor``,
    ``level``, ``reference``, ``n_level``, ``n_reference`` (points), ``mean_level``,
    ``mean_reference`` (in the metric's values), ``mean_diff``, ``median_diff``, ``ci_low``,
    ``ci_high`` (of the score: positive = L is better), ``t``, ``df``, ``p``, ``p_holm``,
    ``significant``, ``one_fold_dominates``, ``k``. A level drawn for one point only has no
    test (NaN). Factors with a single level are skipped."""
    keys = _axes(folds, keys)
    reference = dict(reference or {})
    points, wide = _point_scores(folds, keys, metric)
    rows = []
    for factor in choices:
        if factor not in keys:
            raise ValueError(f"unknown factor {factor!r}; configuration keys are {keys}")
        levels = sorted(points[factor].unique().tolist())
        if len(levels) < 2:
            continue
        ref = reference.get(factor, _default_reference(levels))
        if ref not in levels:
            raise ValueError(f"reference {ref!r} is not a level of {factor}: {levels}")
        at_ref = (points[factor] == ref).to_numpy()
        factor_rows = []
        for level in levels:
            if level == ref:
                continue
            at_level = (points[factor] == level).to_numpy()
            x, y = points.loc[at_level, "score"].to_numpy(), points.loc[at_ref, "score"].to_numpy()
            diffs = wide.loc[:, at_level].mean(axis=1).to_numpy() - wide.loc[:, at_ref].mean(axis=1).to_numpy()
            row = {"factor": factor, "level": level, "reference": ref, "n_level": len(x), "n_reference": len(y),
                   "mean_level": float(from_score(metric, x.mean())), "mean_reference": float(from_score(metric, y.mean())),
                   "mean_diff": float(x.mean() - y.mean()), "median_diff": float(np.median(diffs)),
                   "one_fold_dominates": one_fold_dominates(diffs), "k": len(wide),
                   "ci_low": math.nan, "ci_high": math.nan, "t": math.nan, "df": math.nan, "p": math.nan}
            if min(len(x), len(y)) > 1 and np.ptp(np.concatenate([x, y])) > ZERO_TOL:
                test = sps.ttest_ind(x, y, equal_var=False)
                interval = test.confidence_interval(confidence)
                row.update(ci_low=float(interval.low), ci_high=float(interval.high), t=float(test.statistic),
                           df=float(test.df), p=float(test.pvalue))
            factor_rows.append(row)
        adjusted = holm([r["p"] for r in factor_rows])
        for r, ph in zip(factor_rows, adjusted):
            r["p_holm"] = float(ph)
            r["significant"] = bool(ph < alpha)
        rows.extend(factor_rows)
    out = pd.DataFrame(rows, columns=_SAMPLED_LEVEL_COLUMNS)
    out["level"] = out["level"].astype(object)
    out["reference"] = out["reference"].astype(object)
    return out
