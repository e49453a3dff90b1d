"""The statistics of one run: the tables of :mod:`cvgrid.stats` computed from cv_folds.tsv and
cv_summary.tsv at the config's :class:`~cvgrid.stats.Thresholds`, and written as
``stats/<name>.tsv``. One function, so that the workflow (scripts/cv_statistics.py) and the
published study (scripts/publish_study.py, tests/test_study.py) compute the same thing. The
words about these tables are :mod:`cvgrid.wording`'s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cvgrid.costs import join_costs, training_costs
from cvgrid.decision import check_rule, contender_table, gap_corrected
from cvgrid.decision import choose as choose_point
from cvgrid.grid import axes_of
from cvgrid.io import write_tsv
from cvgrid.stats import (
    Thresholds,
    compare_models,
    compare_to_best,
    factor_bins,
    factor_effects,
    factor_trends,
    repeat_noise,
    repeat_noise_by_model,
    resolution,
    sampled_level_effects,
    shared_pairs,
)
from cvgrid.summary import mixed_hardware, selected_points


@dataclass(frozen=True)
class Analysis:
    """Everything the statistics step computes for one run.

    ``tables``: name -> table, each written as ``stats/<name>.tsv`` (compare_to_best,
    compare_models, resolution, selected, factor_effects, repeat_noise, contenders; on a sampled
    grid also factor_trends and factor_bins, :func:`sampled_factor_tables`); ``noise_by_model``:
    :func:`~cvgrid.stats.repeat_noise_by_model` of repeat_noise (in the summary only);
    ``diverged``: the rows of cv_folds.tsv whose training diverged (none if the table lacks
    the column); ``mixed_hardware``: :func:`~cvgrid.summary.mixed_hardware` (grid points whose
    folds ran on different GPU models or precisions); ``cv_summary`` and ``thresholds`` as given."""

    thresholds: Thresholds
    cv_summary: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    noise_by_model: pd.DataFrame
    diverged: pd.DataFrame
    choose: str  # final.choose
    cost: str  # final.cost (of cheapest_contender)
    mixed_hardware: pd.DataFrame


#: contenders.tsv's ``among`` for the contenders over the whole grid (else: the model's name).
WHOLE_GRID = "all models"


def contenders(folds: pd.DataFrame, to_best: pd.DataFrame, thresholds: Thresholds,
               model_sizes: pd.DataFrame | None,
               contender_probability: float) -> pd.DataFrame:
    """contenders.tsv: the grid points the folds cannot separate from the best
    (cvgrid.decision.is_contender), within each model (``among`` = the model, from `to_best`,
    compare_to_best by model) and over the whole grid (``among`` = :data:`WHOLE_GRID`), each
    with its mean accuracy, gap to the best, verdict, P(worse by more than the ROPE) and costs
    (cvgrid.costs: ``work`` and ``seconds`` from the fold table; ``parameters``, ``macs`` and
    ``input_size`` from `model_sizes`, model_costs.tsv, when given, else absent)."""
    costs = training_costs(folds)
    if model_sizes is not None:
        costs = join_costs(costs, model_sizes)
    whole = compare_to_best(folds, thresholds, by_model=False)
    per_model = contender_table(to_best, costs, contender_probability)
    over_grid = contender_table(whole, costs, contender_probability)
    return pd.concat([per_model.assign(among=per_model["model"]), over_grid.assign(among=WHOLE_GRID)],
                     ignore_index=True).pipe(lambda t: t[["among", *[c for c in t.columns if c != "among"]]])


def decisions(folds: pd.DataFrame, contender_rows: pd.DataFrame, choose: str = "best",
              cost: str = "work", expectations=None) -> pd.DataFrame:
    """decision.tsv: what the rule `choose` (final.choose; `cost`, final.cost, for
    cheapest_contender) picks among each ``among`` group of :func:`contenders` (each model, and
    the whole grid): its keys, ``rule``, ``cost`` (the cost it was chosen by, or empty),
    ``contenders`` (how many), ``mean_accuracy`` (raw: optimistic, it was chosen on these folds),
    ``gap`` (to the best's mean) and ``bound`` (:func:`cvgrid.decision.gap_corrected`: raw minus
    the mean over the folds of the best accuracy on that fold minus the chosen point's; for the
    best Tibshirani & Tibshirani's correction, for any other choice a conservative, low bound).
    The procedure's estimate (BBC-CV) needs the out-of-fold predictions: `expectations`, one
    dict of cvgrid.decision.decide per model (scripts/expect_choice.py), adds ``bbc_estimate``,
    ``bbc_low``, ``bbc_high`` (its percentile interval) and ``bbc_bags`` to the model's row
    (NaN over the whole grid, and where none is given)."""
    keys = axes_of(folds)
    rows = []
    for among, group in contender_rows.groupby("among", sort=False):
        group = group.reset_index(drop=True)
        cost_values = group[cost].to_numpy(dtype=float) if choose == "cheapest_contender" else None
        check_rule(choose, cost_values)
        chosen = group.iloc[choose_point(choose, group["mean_accuracy"], [True] * len(group), cost_values)]
        scope = folds if among == WHOLE_GRID else folds[folds["model"] == among]
        # grid points x (repeat, fold) pairs, as cvgrid.decision.decide reads them
        wide = scope.pivot_table(index=keys, columns=["repeat", "fold"], values="accuracy").sort_index()
        corrected = gap_corrected(wide.to_numpy(), wide.index.get_loc(tuple(chosen[k] for k in keys)))
        rows.append({"among": among, **{k: chosen[k] for k in keys}, "rule": choose,
                     "cost": cost if choose == "cheapest_contender" else "", "contenders": len(group),
                     "candidates": len(wide), "mean_accuracy": chosen["mean_accuracy"], "gap": chosen["gap"],
                     "bound": corrected["bound"]})
    table = pd.DataFrame(rows)
    by_model = {e["model"]: e for e in (expectations or [])}
    for column in ("bbc_estimate", "bbc_low", "bbc_high", "bbc_bags"):
        table[column] = float("nan")
    for i, row in table.iterrows():
        e = by_model.get(row["among"])
        if e is None:
            continue
        if e["rule"] != choose or any(e["point"][k] != row[k] for k in keys):
            raise ValueError(f"the expectation of {row['among']!r} (rule {e['rule']}, point {e['point']}) is not "
                             f"of the point that {choose} chooses here: run expect_choice again")
        table.loc[i, ["bbc_estimate", "bbc_low", "bbc_high", "bbc_bags"]] = [e["estimate"], e["low"], e["high"], e["bags"]]
    return table


def sampled_factor_tables(folds: pd.DataFrame, ranges: dict, thresholds: Thresholds) -> dict[str, pd.DataFrame]:
    """The factors of a sampled grid (`ranges`: cvgrid.grid.sampled_ranges, each ranged axis's
    {distribution: [low, high]}): ``factor_effects``, the level effects of the axes drawn from
    lists, across points (cvgrid.stats.sampled_level_effects); ``factor_trends``, the rank
    correlation of each ranged axis with the points' mean scores (cvgrid.stats.factor_trends);
    ``factor_bins``, the ranged axes in quantile bins (cvgrid.stats.factor_bins)."""
    choices = [axis for axis in axes_of(folds) if axis not in ranges]
    return {
        "factor_effects": sampled_level_effects(folds, choices, alpha=thresholds.alpha, metric=thresholds.metric),
        "factor_trends": factor_trends(folds, ranges, alpha=thresholds.alpha, metric=thresholds.metric),
        "factor_bins": factor_bins(folds, ranges, metric=thresholds.metric),
    }


def analyse(folds: pd.DataFrame, cv_summary: pd.DataFrame, thresholds: Thresholds, *,
            contender_probability: float, choose: str, cost: str, ranges: dict | None,
            model_sizes: pd.DataFrame | None = None, expectations=None) -> Analysis:
    """Every table of the statistics step from cv_folds.tsv (`folds`) and cv_summary.tsv;
    `contender_probability` (statistics.contender_probability) and `model_sizes`
    (model_costs.tsv) for :func:`contenders`, `choose`, `cost` (final.choose, final.cost) and
    `expectations` for :func:`decisions`; `ranges`: cvgrid.grid.sampled_ranges of the config,
    None for a grid of lists (for a sampled grid the factors are :func:`sampled_factor_tables`').
    The run's settings are required, never defaulted: an analysis with another rule or grid
    than the run's would describe another decision."""
    to_best = compare_to_best(folds, thresholds, by_model=True)
    factors = ({"factor_effects": factor_effects(folds, alpha=thresholds.alpha, metric=thresholds.metric)}
               if ranges is None else sampled_factor_tables(folds, ranges, thresholds))
    tables = {
        "compare_to_best": to_best,
        "compare_models": compare_models(folds, thresholds),
        "resolution": resolution(to_best, folds, thresholds),
        "selected": selected_points(cv_summary, metric=thresholds.metric),
        **factors,
        "repeat_noise": repeat_noise(folds, metric=thresholds.metric),
    }
    # Contenders and the decision are built on accuracy so far (common.smk refuses a rule other
    # than best with another metric): under another metric their tables are empty, not wrong.
    if thresholds.metric == "accuracy":
        # The choice sees every point on the same pairs: those every point has (cv.decide adds
        # repeats to some; cvgrid.stats.shared_pairs), as BBC-CV and the selection correction do.
        shared = shared_pairs(folds)
        on_shared = to_best if len(shared) == len(folds) else compare_to_best(shared, thresholds, by_model=True)
        tables["contenders"] = contenders(shared, on_shared, thresholds, model_sizes, contender_probability)
        tables["decision"] = decisions(shared, tables["contenders"], choose, cost, expectations)
    else:
        tables["contenders"] = tables["decision"] = pd.DataFrame()
    diverged = folds[folds["diverged"]] if "diverged" in folds else folds.iloc[0:0]
    return Analysis(thresholds=thresholds, cv_summary=cv_summary, tables=tables,
                    noise_by_model=repeat_noise_by_model(tables["repeat_noise"]), diverged=diverged,
                    choose=choose, cost=cost, mixed_hardware=mixed_hardware(folds))


def write_tables(analysis: Analysis, out_dir: str | Path) -> None:
    """Each of the analysis' tables as out_dir/<name>.tsv."""
    for name, table in analysis.tables.items():
        write_tsv(table, Path(out_dir) / f"{name}.tsv")
