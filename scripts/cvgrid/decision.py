"""From verdicts to a decision: the contenders, the choice by a rule, the accuracy to expect
from the procedure that chose, and which points one more repeat could decide.

* Contenders (:func:`contenders`, :func:`mark_contenders`): the grid points the folds cannot
  separate from the best: not *worse*, and P(worse than the best by more than the ROPE) <=
  ``contender_probability`` (default 1/2); the best is always one.
* Rules (:func:`choose`): ``best`` (the highest mean; equal means: the first in grid order) or
  ``cheapest_contender`` (the contender of lowest cost; equal costs: the higher mean, then grid
  order).
* The expectation of a rule (:func:`expectation`): the chosen point's raw mean (optimistic:
  it was chosen on these folds), a conservative bound (:func:`gap_corrected`: the mean over the
  folds of the best accuracy on that fold minus the chosen point's, subtracted; Tibshirani &
  Tibshirani 2009 for the best, and for any other choice it counts the whole gap to the best as
  optimism), and BBC-CV (:func:`bbc_cv`; Tsamardinos, Greasidou & Borboudakis 2018, "Bootstrapping
  the out-of-sample predictions for efficient and accurate cross-validation", Machine Learning
  107): bootstrap the pooled out-of-fold predictions, apply the rule in the bag, score the
  chosen point out of the bag.
* Repeats (:func:`points_to_repeat`): the best and the undecided points that ``repeats_needed``
  says ``max_repeats`` repeats could decide; the fold assignment of a new repeat is
  :func:`cvgrid.folds.repeat_folds`, shared by every point.

Arrays: ``scores`` is grid points x (repeat, fold) pairs of fold accuracies (higher is better,
the same pairs for every point), rows in grid order (sorted by the grid's keys, as
:func:`cvgrid.summary.point_summary` breaks ties). Accuracies are fractions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cvgrid import stats
from cvgrid.grid import axes_of

RULES = ("best", "cheapest_contender")
CONTENDER_PROBABILITY = 0.5  # the schema's default of statistics.contender_probability


class DecisionError(ValueError):
    pass


# ---------------------------------------------------------------------------
# The posterior (the one call into the correlated t-test)
# ---------------------------------------------------------------------------


def posterior_against_best(diffs, n_train: float, n_test: float, rope: float) -> tuple[np.ndarray, np.ndarray]:
    """(P(worse by more than the ROPE), P(within the ROPE)) of each row of `diffs` (points x
    pairs of ``point - best``) under the Bayesian correlated t-test. The one adapter to the
    test's posterior (cvgrid.stats.CorrelatedPosterior)."""
    probs = [stats.CorrelatedPosterior.from_differences(d, n_train, n_test).probs(rope) for d in np.atleast_2d(diffs)]
    return np.array([p[0] for p in probs]), np.array([p[1] for p in probs])


def design_sizes(folds: pd.DataFrame) -> tuple[float, float]:
    """(n_train, n_test) of the correlated t-test for a fold table (cv_folds.tsv): the mean
    training part (fitted plus early-stopping images) and the mean test fold, as the verdicts
    use them (cvgrid.stats.design_sizes)."""
    return stats.design_sizes(folds)


# ---------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------


def is_contender(is_best, verdict, prob_worse, contender_probability: float = CONTENDER_PROBABILITY) -> np.ndarray:
    """THE contender rule, element-wise: the best, or not *worse* and P(worse by more than the
    ROPE) <= `contender_probability`."""
    is_best = np.asarray(is_best, dtype=bool)
    not_worse = np.asarray(verdict, dtype=object) != stats.WORSE
    with np.errstate(invalid="ignore"):
        unlikely_worse = np.asarray(prob_worse, dtype=float) <= contender_probability
    return is_best | (not_worse & unlikely_worse)


def contenders(scores, n_train: float, n_test: float, rope: float, probability: float,
               contender_probability: float = CONTENDER_PROBABILITY) -> pd.DataFrame:
    """Each grid point of `scores` (one model's, or the whole grid's) against the best: ``mean``,
    ``gap`` (mean - the best's mean, <= 0), ``is_best``, ``prob_worse``, ``prob_rope``, ``verdict``
    (cvgrid.stats.verdict) and ``contender`` (:func:`is_contender`). One row per row of `scores`,
    in its order."""
    scores = _scores(scores)
    mean = scores.mean(axis=1)
    best = int(np.argmax(mean))
    prob_worse, prob_rope = np.full(len(mean), np.nan), np.full(len(mean), np.nan)
    others = np.arange(len(mean)) != best
    if others.any():
        prob_worse[others], prob_rope[others] = posterior_against_best(
            scores[others] - scores[best], n_train, n_test, rope)
    verdicts = [stats.BEST if i == best else stats.verdict(prob_worse[i], prob_rope[i], probability)
                for i in range(len(mean))]
    table = pd.DataFrame({"mean": mean, "gap": mean - mean[best], "is_best": ~others,
                          "prob_worse": prob_worse, "prob_rope": prob_rope, "verdict": verdicts})
    table["contender"] = is_contender(table["is_best"], table["verdict"], table["prob_worse"], contender_probability)
    return table


def mark_contenders(comparisons: pd.DataFrame, contender_probability: float = CONTENDER_PROBABILITY) -> pd.DataFrame:
    """The comparisons table of cvgrid.stats.compare_to_best (per model, or over the whole grid)
    with a ``contender`` column and ``gap`` (mean_accuracy - best_mean_accuracy)."""
    missing = [c for c in ("is_best", "verdict", "prob_worse", "mean_accuracy", "best_mean_accuracy")
               if c not in comparisons.columns]
    if missing:
        raise DecisionError(f"the comparisons table lacks the column(s) {missing}")
    table = comparisons.copy()
    table["gap"] = table["mean_accuracy"] - table["best_mean_accuracy"]
    table["contender"] = is_contender(table["is_best"], table["verdict"], table["prob_worse"], contender_probability)
    return table


def contender_table(comparisons: pd.DataFrame, point_costs: pd.DataFrame,
                    contender_probability: float = CONTENDER_PROBABILITY) -> pd.DataFrame:
    """contenders.tsv: the contenders of a comparisons table (per model, or over the whole grid)
    with their keys, ``mean_accuracy``, ``gap``, ``verdict``, ``prob_worse`` and every cost of
    cvgrid.costs.point_costs; by model (when the table is per model), then best first."""
    keys = axes_of(comparisons)
    marked = mark_contenders(comparisons, contender_probability)
    table = marked.loc[marked["contender"], [*keys, "mean_accuracy", "gap", "verdict", "prob_worse"]]
    table = table.merge(point_costs, on=keys, how="left", validate="one_to_one")
    sort = (["model"] if "best_model" not in comparisons else []) + ["gap"]
    return table.sort_values(sort, ascending=[True] * (len(sort) - 1) + [False], kind="stable", ignore_index=True)


# ---------------------------------------------------------------------------
# Choosing
# ---------------------------------------------------------------------------


def check_rule(rule: str, cost) -> None:
    if rule not in RULES:
        raise DecisionError(f"final.choose is {rule!r}; the rules are {list(RULES)}")
    if rule == "cheapest_contender":
        if cost is None:
            raise DecisionError("final.choose cheapest_contender needs a cost per grid point")
        if not np.all(np.isfinite(np.asarray(cost, dtype=float))):
            raise DecisionError("final.choose cheapest_contender: a grid point has no cost (NaN), e.g. seconds "
                                "that its jobs did not record; choose another final.cost")


def cost_order(mean, cost) -> np.ndarray:
    """Grid-point positions by cost, cheapest first; equal costs: the higher mean first, then grid order."""
    mean, cost = np.asarray(mean, dtype=float), np.asarray(cost, dtype=float)
    return np.lexsort((np.arange(len(mean)), -mean, cost))


def choose(rule: str, mean, contender=None, cost=None) -> int:
    """The position of the grid point that `rule` chooses: ``best``, the highest `mean` (the
    first of equal ones); ``cheapest_contender``, the first `contender` in :func:`cost_order`."""
    check_rule(rule, cost)
    mean = np.asarray(mean, dtype=float)
    if rule == "best":
        return int(np.argmax(mean))
    order = cost_order(mean, cost)
    return int(order[np.asarray(contender, dtype=bool)[order]][0])


def choose_on_scores(scores, rule: str, cost, n_train: float, n_test: float, rope: float, probability: float,
                     contender_probability: float = CONTENDER_PROBABILITY) -> int:
    """:func:`choose` on a scores matrix, as ``choose(rule, mean, contenders(...)["contender"],
    cost)`` would, asking the posterior only for the points it walks past in cost order (the
    bootstrap applies the rule a thousand times)."""
    check_rule(rule, cost)
    scores = _scores(scores)
    mean = scores.mean(axis=1)
    best = int(np.argmax(mean))
    if rule == "best":
        return best
    for point in cost_order(mean, cost):
        if point == best:
            return int(point)
        prob_worse, prob_rope = posterior_against_best(scores[point] - scores[best], n_train, n_test, rope)
        verdict = stats.verdict(prob_worse[0], prob_rope[0], probability)
        if is_contender(False, verdict, prob_worse[0], contender_probability):
            return int(point)
    raise AssertionError("the best is always a contender")  # unreachable: the walk meets the best


# ---------------------------------------------------------------------------
# The accuracy to expect
# ---------------------------------------------------------------------------


def gap_corrected(scores, chosen: int) -> dict:
    """The chosen point's ``raw`` mean, ``gap_to_fold_best`` (mean over the pairs of the best
    accuracy on that pair minus the chosen point's) and ``bound`` = raw - that gap. For the best
    point this is Tibshirani & Tibshirani's (2009) correction (cvgrid.summary.selection_corrected);
    for a point chosen by another rule the whole gap to the best counts as optimism, so it is a
    conservative (low) bound, not an estimate."""
    scores = _scores(scores)
    raw = float(scores[chosen].mean())
    gap = float(np.mean(scores.max(axis=0) - scores[chosen]))
    return {"raw": raw, "gap_to_fold_best": gap, "bound": raw - gap}


def bbc_cv(correct, fold, rule: str, cost=None, *, n_train: float, n_test: float, rope: float, probability: float,
           contender_probability: float = CONTENDER_PROBABILITY, bags: int = 1000, seed: int = 0,
           level: float = 0.95) -> dict:
    """BBC-CV (Tsamardinos et al. 2018) of `rule`: the accuracy to expect from choosing by
    `rule` among these grid points, with a percentile interval.

    `correct`: repeats x samples x points, whether each point's out-of-fold prediction of each
    sample was right (pooled over the folds of each repeat); `fold`: repeats x samples, the
    test fold each sample was in. Each bag draws the samples with replacement (the same draw
    in every repeat); the rule sees the bag's per-(repeat, fold) accuracies, so it works on
    paired fold scores as on the real folds (the contenders' t-test with the design's
    `n_train`, `n_test`); the chosen point is scored on the samples not drawn, mean over the
    repeats. Returns ``estimate`` (mean over the bags), ``low``, ``high`` (the `level`
    percentile interval of the bags' out-of-bag accuracies), ``bags`` and ``choices`` (how
    many bags chose each point)."""
    check_rule(rule, cost)
    correct = np.asarray(correct, dtype=float)
    fold = np.asarray(fold)
    if correct.ndim != 3 or fold.shape != correct.shape[:2]:
        raise DecisionError("correct must be repeats x samples x points and fold repeats x samples")
    n_repeats, n_samples, n_points = correct.shape
    folds_of = [np.unique(fold[r]) for r in range(n_repeats)]
    rng = np.random.default_rng(seed)
    oob_scores = np.empty(bags)
    choices = np.zeros(n_points, dtype=int)
    chunk = 200  # bags whose in-bag scores are computed in one matrix product
    for start in range(0, bags, chunk):
        size = min(chunk, bags - start)
        draws = rng.integers(0, n_samples, size=(size, n_samples))
        weight = np.zeros((size, n_samples))
        np.add.at(weight, (np.arange(size)[:, None], draws), 1.0)
        in_bag = []  # per (repeat, fold): bags x points accuracies of the drawn samples
        for r in range(n_repeats):
            for f in folds_of[r]:
                w = weight * (fold[r] == f)
                drawn = w.sum(axis=1, keepdims=True)
                if (drawn == 0).any():
                    raise DecisionError(f"a bag drew no sample of repeat {r}, fold {f}: too few samples to bootstrap")
                in_bag.append(w @ correct[r] / drawn)
        in_bag = np.stack(in_bag, axis=2)  # bags x points x pairs
        out = weight == 0
        for b in range(size):
            chosen = choose_on_scores(in_bag[b], rule, cost, n_train, n_test, rope, probability, contender_probability)
            choices[chosen] += 1
            oob_scores[start + b] = correct[:, out[b], chosen].mean()
    tail = (1 - level) / 2
    low, high = np.quantile(oob_scores, [tail, 1 - tail])
    return {"estimate": float(oob_scores.mean()), "low": float(low), "high": float(high), "level": level,
            "bags": bags, "choices": choices}


def expectation(scores, correct, fold, rule: str, cost=None, *, n_train: float, n_test: float, rope: float,
                probability: float, contender_probability: float = CONTENDER_PROBABILITY, bags: int = 1000,
                seed: int = 0) -> dict:
    """What `rule` chooses on these folds (``chosen``, a row of `scores`) and the accuracy to
    expect from it: ``raw`` (its mean over the folds: optimistic), ``bound`` (:func:`gap_corrected`:
    conservative), ``estimate`` with ``low``, ``high`` (:func:`bbc_cv`: the procedure's)."""
    scores = _scores(scores)
    table = contenders(scores, n_train, n_test, rope, probability, contender_probability)
    chosen = choose(rule, table["mean"], table["contender"], cost)
    bbc = bbc_cv(correct, fold, rule, cost, n_train=n_train, n_test=n_test, rope=rope, probability=probability,
                 contender_probability=contender_probability, bags=bags, seed=seed)
    return {"rule": rule, "chosen": chosen, "gap_to_best": float(table["gap"].iloc[chosen]),
            **gap_corrected(scores, chosen), **bbc}


def decide(folds: pd.DataFrame, predictions: pd.DataFrame, point_costs: pd.DataFrame | None, rule: str,
           cost: str = "work", *, rope: float, probability: float,
           contender_probability: float = CONTENDER_PROBABILITY, model: str | None = None, bags: int = 1000,
           seed: int = 0) -> dict:
    """:func:`expectation` of `rule` among the grid points of `model` (None: the whole grid), from
    the fold table (cv_folds.tsv), the out-of-fold predictions (:func:`prediction_table`) and the
    costs (cvgrid.costs.point_costs; its column `cost`). Adds ``point``: the chosen point's keys,
    and ``candidates``: how many points it was chosen among."""
    keys = axes_of(folds)
    if model is not None:
        folds = folds[folds["model"] == model]
        predictions = predictions[predictions["model"] == model]
        if folds.empty:
            raise DecisionError(f"the fold table has no grid point of the model {model!r}")
    # The bootstrap pairs every point sample by sample: on the repeats every point has (cv.decide
    # adds repeats to some), as the contenders and the selection correction (cvgrid.analysis).
    folds = stats.shared_pairs(folds, keys)
    predictions = predictions[predictions["repeat"].isin(folds["repeat"].unique())]
    wide = folds.pivot_table(index=keys, columns=["repeat", "fold"], values="accuracy").sort_index()
    points, correct, fold = correctness(predictions, keys)
    if not wide.index.to_frame(index=False).equals(points.astype(wide.index.to_frame(index=False).dtypes)):
        raise DecisionError("the fold table and the predictions do not hold the same grid points")
    cost_values = None
    if rule == "cheapest_contender":
        if point_costs is None or cost not in point_costs.columns:
            raise DecisionError(f"final.cost is {cost!r}, which the cost table does not have")
        cost_values = point_costs.set_index(keys).reindex(wide.index)[cost].to_numpy(dtype=float)
    n_train, n_test = design_sizes(folds)
    result = expectation(wide.to_numpy(), correct, fold, rule, cost_values, n_train=n_train, n_test=n_test,
                         rope=rope, probability=probability, contender_probability=contender_probability,
                         bags=bags, seed=seed)
    return {**result, "point": points.iloc[result["chosen"]].to_dict(), "candidates": len(points),
            "cost": cost if rule == "cheapest_contender" else None}


def expectation_record(model: str, result: dict) -> dict:
    """:func:`decide`'s result for `model` as plain JSON values (expectation/<model>.json)."""
    def plain(value):
        return value.item() if isinstance(value, np.generic) else value

    record = {key: plain(value) for key, value in result.items() if key not in ("choices", "point")}
    return {"model": model, **record, "choices": [int(c) for c in result["choices"]],
            "point": {key: plain(value) for key, value in result["point"].items()}}


# ---------------------------------------------------------------------------
# The out-of-fold predictions
# ---------------------------------------------------------------------------


def prediction_table(metrics_paths, axes) -> pd.DataFrame:
    """One row per (job, test sample): the grid's `axes`, ``repeat``, ``fold``, ``sample`` and
    ``correct``, from each job's predictions.tsv beside its metrics.json (whose config names the
    point)."""
    parts = []
    for path in metrics_paths:
        path = Path(path)
        config = json.loads(path.read_text())["config"]
        predictions_path = path.with_name("predictions.tsv")
        try:
            predictions = pd.read_csv(predictions_path, sep="\t", usecols=["sample", "true", "predicted"])
        except (OSError, ValueError) as error:
            raise DecisionError(f"cannot read the predictions {predictions_path}: {error}") from error
        parts.append(pd.DataFrame({
            **{key: config[key] for key in axes}, "repeat": config["repeat"], "fold": config["fold"],
            "sample": predictions["sample"].to_numpy(),
            "correct": (predictions["true"] == predictions["predicted"]).to_numpy(),
        }))
    return pd.concat(parts, ignore_index=True)


def correctness(predictions: pd.DataFrame, keys=None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(points, correct, fold) from :func:`prediction_table`: the grid points in grid order (their
    keys), correct (repeats x samples x points) and the test fold of each sample (repeats x
    samples). Every point must have predicted every sample once in every repeat, on the same
    folds: the bootstrap pairs them sample by sample."""
    keys = axes_of(predictions) if keys is None else list(keys)
    points = predictions[keys].drop_duplicates().sort_values(keys, ignore_index=True)
    repeats = sorted(predictions["repeat"].unique())
    samples = np.sort(predictions["sample"].unique())
    correct = np.zeros((len(repeats), len(samples), len(points)), dtype=bool)
    fold = np.zeros((len(repeats), len(samples)), dtype=int)
    for r, repeat in enumerate(repeats):
        part = predictions[predictions["repeat"] == repeat]
        folds_of = part.drop_duplicates(["sample", "fold"])
        if folds_of["sample"].duplicated().any() or len(folds_of) != len(samples):
            raise DecisionError(f"repeat {repeat}: the grid points do not share one fold assignment covering "
                                f"every sample ({len(samples)} samples)")
        fold[r] = folds_of.set_index("sample").loc[samples, "fold"].to_numpy()
        for p, point in enumerate(points.itertuples(index=False)):
            rows = part.loc[(part[keys] == pd.Series(point, index=keys)).all(axis=1)]
            if len(rows) != len(samples) or rows["sample"].duplicated().any():
                raise DecisionError(f"the grid point {dict(zip(keys, point))} has {len(rows)} predictions in repeat "
                                    f"{repeat}, not one for each of the {len(samples)} samples")
            correct[r, :, p] = rows.set_index("sample").loc[samples, "correct"].to_numpy()
    return points, correct, fold


# ---------------------------------------------------------------------------
# Repeats only where they decide
# ---------------------------------------------------------------------------


def points_to_repeat(comparisons: pd.DataFrame, repeats_done: int, max_repeats: int) -> pd.Series:
    """Which grid points of a comparisons table (cvgrid.stats.compare_to_best: ``model``,
    ``is_best``, ``verdict``, ``repeats_needed``) get the next repeat: in each model, the
    *undecided* points that `max_repeats` repeats could decide if their difference and spread
    held (``repeats_needed`` <= max_repeats; NaN: none could), and the model's best with them
    (the comparisons stay paired); in a table over the whole grid (``best_model``), its one best.
    Nothing once `repeats_done` reaches `max_repeats`. A boolean
    Series on the table's index."""
    missing = [c for c in ("model", "is_best", "verdict", "repeats_needed") if c not in comparisons.columns]
    if missing:
        raise DecisionError(f"the comparisons table lacks the column(s) {missing}")
    if max_repeats < 1:
        raise DecisionError(f"cv.decide.max_repeats must be at least 1, got {max_repeats}")
    if repeats_done >= max_repeats:
        return pd.Series(False, index=comparisons.index)
    decidable = (comparisons["verdict"] == stats.UNDECIDED) & (comparisons["repeats_needed"] <= max_repeats)
    # A table over the whole grid (compare_to_best(by_model=False) names a best_model) has one best.
    scope = pd.Series("all", index=comparisons.index) if "best_model" in comparisons else comparisons["model"]
    model_repeats = decidable.groupby(scope).transform("any")
    return decidable | (comparisons["is_best"].astype(bool) & model_repeats)


def repeat_round(jobs: dict, axes, thresholds: stats.Thresholds, repeats_done: int, max_repeats: int) -> pd.DataFrame:
    """One round of cv.decide (rules/decide.smk): which of the points in play get repeat
    `repeats_done`. `jobs` maps each metrics.json of the points in play (every one of them has
    repeats 0 .. repeats_done - 1, so the comparisons are paired on all of them) to its grid
    point's folder pattern (model~.../batch_size~...). Returns :func:`cvgrid.stats.compare_to_best`
    (per model, as the verdicts) with ``point`` (the folder pattern), ``repeats_done`` and
    ``gets_repeat`` (:func:`points_to_repeat`) added."""
    from cvgrid.summary import fold_table, read_metrics  # the gather's reading, checked the same way

    folds = fold_table(list(jobs), axes)
    repeats = folds.groupby(list(axes))["repeat"].nunique()
    if (repeats != repeats_done).any() or folds["repeat"].max() != repeats_done - 1:
        raise DecisionError(f"cv.decide's round for repeat {repeats_done} needs repeats 0 .. {repeats_done - 1}"
                            f" of every point in play; the jobs have {sorted(folds['repeat'].unique())}")
    point_of = {}
    for path, point in jobs.items():
        config = read_metrics(path)["config"]
        point_of[tuple(config[axis] for axis in axes)] = point
    comparisons = stats.compare_to_best(folds, thresholds, keys=list(axes))
    comparisons.insert(len(axes), "point", [point_of[tuple(row)] for row in comparisons[list(axes)].itertuples(index=False)])
    comparisons["repeats_done"] = repeats_done
    comparisons["gets_repeat"] = points_to_repeat(comparisons, repeats_done, max_repeats)
    return comparisons


def write_round(jobs: dict, axes, statistics: dict, repeats_done: int, max_repeats: int, table_path, log_path) -> None:
    """Checkpoint decide_repeat (rules/decide.smk): :func:`repeat_round` at the config's
    ``statistics`` thresholds into `table_path`, and the points that get the repeat into `log_path`."""
    from cvgrid.io import write_tsv

    table = repeat_round(jobs, axes, stats.Thresholds.from_config(statistics), repeats_done, max_repeats)
    write_tsv(table, table_path)
    chosen = table.loc[table["gets_repeat"], "point"]
    Path(log_path).write_text(f"repeat {repeats_done}: {len(chosen)} of {len(table)} points in play get it"
                              + "".join(f"\n  {point}" for point in chosen) + "\n")


def repeated_points(table_path) -> list[str]:
    """The point folders (``point``) that a round's table (:func:`write_round`) gave its repeat."""
    rounds = pd.read_csv(table_path, sep="\t", dtype={"point": str})
    return list(rounds.loc[rounds["gets_repeat"].astype(bool), "point"])


def decided_rounds(repeats, round_table):
    """cv.decide's rounds in order, as (repeat, table path, :func:`repeated_points`), for the
    added `repeats` (cv.repeats .. max_repeats - 1): up to and including the first round that
    repeats no point (no later round runs), or up to the first whose `round_table(repeat)` is
    None (not written yet). The one walk over the rounds: the workflow's (rules/decide_plan.smk,
    where `round_table` waits for the checkpoint) and the interim summary's (cvgrid.interim)."""
    for repeat in repeats:
        table = round_table(repeat)
        if table is None:
            return
        points = repeated_points(table)
        yield repeat, table, points
        if not points:
            return


def _scores(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.size == 0:
        raise DecisionError("scores must be a non-empty grid points x (repeat, fold) pairs matrix")
    if np.isnan(scores).any():
        raise DecisionError("scores has a missing (repeat, fold) accuracy: "
                            "the decision needs the same folds for every point")
    return scores
