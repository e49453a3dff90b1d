"""The written summary of one run's statistics (summary.md, summary.html): one function per
paragraph, each reading only the tables of :class:`cvgrid.analysis.Analysis`; deterministic.
The figures are of statistics.metric (the analysis' thresholds name it): accuracies (and the
other metrics in 0..1) in percent, their differences in percentage points, with one decimal;
log-loss in nats with three; the only markup
is ``**bold**`` and ``*italics*``. The numbers are :mod:`cvgrid.stats`'s, which never imports
this module."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cvgrid.analysis import WHOLE_GRID, Analysis
from cvgrid.grid import axes_of
from cvgrid.io import atomic_path
from cvgrid.metrics import RECALL_PREFIX, better_word, format_value, get_metric, summary_columns
from cvgrid.race import race_savings
from cvgrid.stats import BETTER, EQUIVALENT, UNDECIDED, WORSE

# At most this many configurations are named per verdict and model.
MAX_LISTED = 5

_FACTOR_NAMES = {"augmentation": "augmentation", "batch_size": "batch size",
                 "learning_rate": "learning rate", "model": "model", "weight_decay": "weight decay",
                 "label_smoothing": "label smoothing", "warmup_epochs": "warm-up epochs",
                 "max_epochs": "max epochs", "seed": "training seed", "tta": "test-time augmentation",
                 "class_weights": "class weights"}


def _fmt_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _describe(config, keys: Sequence[str] | None = None) -> str:
    """'batch size 32, learning rate 0.001, augmentation affine' (model left out)."""
    return ", ".join(f"{_FACTOR_NAMES.get(k, k)} {_fmt_value(config[k])}" for k in (axes_of(config) if keys is None else keys) if k != "model")


def describe_point(config, keys: Sequence[str] | None = None) -> str:
    """A grid point in the summary's words (publish_study's tables name points the same way)."""
    return _describe(config, keys)


def _model(name) -> str:
    """'model_a' as it is, 'A' as 'model A'."""
    return str(name) if str(name).lower().startswith("model") else f"model {name}"


def _fmt_p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


def _scale(metric: str) -> tuple[float, int, str]:
    """How a difference of `metric` is written: (factor, decimals, unit): percentage points
    for a metric in 0..1, nats for log-loss."""
    return (100.0, 1, "points") if get_metric(metric).percent else (1.0, 3, "nats")


def _pts(x: float, metric: str) -> str:
    """A difference of the metric (a fraction: signed percentage points; log-loss: nats)."""
    factor, digits, _ = _scale(metric)
    v = factor * x
    if abs(v) < 0.5 * 10 ** -digits:
        v = 0.0
    return f"{v:+.{digits}f}"


def _num(x: float, metric: str, digits: int | None = None) -> str:
    """A size (a gap, an SD, a range) of the metric in its units, without the unit."""
    factor, default, _ = _scale(metric)
    return f"{factor * x:.{default if digits is None else digits}f}"


def _unit(metric: str) -> str:
    return _scale(metric)[2]


def _names(rows: pd.DataFrame, keys: Sequence[str], max_listed: int, metric: str, with_diff: bool = True) -> str:
    names = [_describe(r, keys) + (f" ({_pts(r['mean_diff'], metric)})" if with_diff else "")
             for _, r in rows.head(max_listed).iterrows()]
    more = len(rows) - len(names)
    return "; ".join(names) + (f"; and {more} more" if more > 0 else "")


def _rope_pts(analysis: Analysis) -> str:
    metric = analysis.thresholds.metric
    factor, _, unit = _scale(metric)
    return f"{factor * analysis.thresholds.rope:g} {unit}"


def best_paragraph(analysis: Analysis) -> str:
    """Best configuration of each model, with the estimate corrected for choosing it."""
    cv_summary = analysis.cv_summary
    metric = analysis.thresholds.metric
    label = get_metric(metric).label
    mean, spread = summary_columns(metric)
    keys = axes_of(cv_summary)
    best = cv_summary[cv_summary["rank"] == 1]
    corrected = {r["scope"]: r for _, r in analysis.tables["selected"].iterrows()}
    parts = []
    for _, b in best.iterrows():
        s = (f"{_model(b['model'])} with {_describe(b, keys)}: {format_value(metric, b[mean])} "
             f"± {format_value(metric, b[spread])}")
        sel = corrected.get(b["model"])
        if sel is not None and sel["candidates"] > 1:
            s += (f", the best of {int(sel['candidates'])} on these folds, so optimistic: "
                  f"**{format_value(metric, sel[f'corrected_{metric}'])}** corrected for that choice")
        parts.append(s)
    k = int(best["folds"].iloc[0]) if len(best) else 0
    return (f"**Best configurations** (mean test {label} over {k} folds ± the fold spread, "
            "2 × std, which is not a confidence interval; the corrected figure, after "
            f"Tibshirani & Tibshirani 2009, is the {label} to expect): " + "; ".join(parts) + ".")


def models_paragraph(analysis: Analysis) -> str | None:
    """The best model against the others (compare_models.tsv); None with one model."""
    model_comparisons = analysis.tables["compare_models"]
    if not len(model_comparisons):
        return None
    rope_pts = _rope_pts(analysis)
    metric = analysis.thresholds.metric
    sentences = []
    for _, r in model_comparisons.iterrows():
        facts = (f"{_pts(r['mean_diff'], metric)} {_unit(metric)}, 95% CI {_pts(r['ci_low'], metric)} to "
                 f"{_pts(r['ci_high'], metric)}, "
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
    return ("**Models** (best configuration against best configuration, paired by fold): "
            + text[0].upper() + text[1:] + ".")


def verdicts_paragraph(analysis: Analysis, max_listed: int = MAX_LISTED) -> str:
    """Verdicts against each model's best (compare_to_best.tsv)."""
    comparisons = analysis.tables["compare_to_best"]
    keys = axes_of(analysis.cv_summary)
    thresholds = analysis.thresholds
    rope_pts = _rope_pts(analysis)
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
        named = [f"{verdict_name} — {_names(rows, keys, max_listed, thresholds.metric)}"
                 for verdict_name, rows in counts.items() if len(rows)]
        holm_worse = int(others["significantly_worse"].sum())
        parts.append(s + " (" + "; ".join(named) + f"); {holm_worse} significantly worse by the "
                     f"corrected t-test with Holm's correction at α = {thresholds.alpha:g}")
    return (f"**Against each model's best** (Bayesian correlated t-test, paired by fold; a verdict "
            f"needs posterior probability ≥ {thresholds.probability:g}: *worse* by more than {rope_pts}, or "
            f"*practically equivalent* within ±{rope_pts}; anything else is *undecided* with "
            "these folds, which is not evidence that it is as good as the best): "
            + "; ".join(parts) + ".")


def resolution_paragraph(analysis: Analysis) -> str | None:
    """What the design can resolve (resolution.tsv, and compare_to_best.tsv's repeats_needed)."""
    resolution_table = analysis.tables["resolution"]
    if not len(resolution_table):
        return None
    comparisons = analysis.tables["compare_to_best"]
    probability = analysis.thresholds.probability
    rope_pts = _rope_pts(analysis)
    metric = analysis.thresholds.metric
    unit = _unit(metric)
    parts = []
    for _, r in resolution_table.iterrows():
        g = comparisons[(comparisons["model"] == r["model"]) & ~comparisons["is_best"]]
        undecided = g[g["verdict"] == UNDECIDED]
        never = int(undecided["repeats_needed"].isna().sum())
        more = undecided["repeats_needed"].dropna()
        s = (f"{_model(r['model'])} ({int(r['folds'])} folds × {int(r['repeats'])} repeat(s); median SD of "
             f"the paired differences {_num(r['sd_diff_median'], metric, _scale(metric)[1] + 1)} {unit}): a "
             f"configuration must be about **{_num(r['worse_gap_now'], metric)} {unit}** "
             f"{'below' if get_metric(metric).higher_is_better else 'above'} the best to be called worse "
             f"(with 3 repeats {_num(r['worse_gap_3_repeats'], metric)}, with 10 "
             f"{_num(r['worse_gap_10_repeats'], metric)}, with any number never less than "
             f"{_num(r['worse_gap_limit'], metric)}). ")
        if r["prob_rope_max_now"] < probability:
            s += (f"Practical equivalence within ±{rope_pts} cannot be shown with these folds (at a zero "
                  f"difference P(within) would be {r['prob_rope_max_now']:.2f}")
            if r["prob_rope_max_limit"] < probability:
                s += (f"; {r['prob_rope_max_limit']:.2f} with unlimited repeats, so no number of "
                      "repeats can show it")
            s += (f"); the narrowest ROPE in which it could be shown is ±"
                  f"{_num(r['equivalence_rope_now'], metric)} {unit} now and ±"
                  f"{_num(r['equivalence_rope_limit'], metric)} with unlimited repeats. ")
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
    return "**What these folds can resolve**: " + " ".join(parts)


def factors_paragraph(analysis: Analysis) -> str | None:
    """Factor effects (factor_effects.tsv), significant ones first (in table order); on a
    sampled grid :func:`sampled_factors_paragraph`."""
    if "factor_trends" in analysis.tables:
        return sampled_factors_paragraph(analysis)
    effects = analysis.tables["factor_effects"]
    metric = analysis.thresholds.metric
    unit = _unit(metric)
    matter, not_matter = [], []
    for factor in (dict.fromkeys(effects["factor"]) if len(effects) else []):
        g = effects.loc[effects["factor"] == factor]
        name = _FACTOR_NAMES.get(factor, factor)
        name = name[0].upper() + name[1:]
        ref = _fmt_value(g["reference"].iloc[0])
        levels = ", ".join(
            f"{_fmt_value(r['level'])} vs {ref} {_pts(r['mean_diff'], metric)} {unit} "
            f"(95% CI {_pts(r['ci_low'], metric)} to {_pts(r['ci_high'], metric)}, {_fmt_p(r['p_holm'])}"
            + (f"; one fold carries it, median {_pts(r['median_diff'], metric)}"
               if r["one_fold_dominates"] and r["significant"] else "")
            + ")"
            for _, r in g.iterrows())
        if g["significant"].any():
            matter.append(f"{name} matters: {levels}.")
        else:
            not_matter.append(f"{name}: no significant effect, which does not show there is none: {levels}.")
    if not (matter or not_matter):
        return None
    label = get_metric(metric).label
    what = f"{label} difference" if get_metric(metric).higher_is_better else f"negated {label} difference (positive is better)"
    return (f"**Factors** ({what} averaged over this grid's levels of the other "
            "factors, paired by fold; p Holm-adjusted within each factor): " + " ".join(matter + not_matter))


def _rho(r) -> str:
    interval = (f"95% CI {r['ci_low']:+.2f} to {r['ci_high']:+.2f}" if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"])
                else "no bootstrap interval: too few distinct points")
    return f"ρ = {r['rho']:+.2f} ({interval}, {_fmt_p(r['p_holm'])})"


def _direction(rho: float, metric: str) -> str:
    """'higher accuracy' or 'lower accuracy' (rho is of the score: positive is better)."""
    word = better_word(metric) if rho > 0 else {"higher": "lower", "lower": "higher"}[better_word(metric)]
    return f"{word} {get_metric(metric).label}"


def trends_paragraph(analysis: Analysis) -> str | None:
    """The ranged axes of a sampled grid (factor_trends.tsv, factor_bins.tsv): each axis's rank
    correlation with the points' mean score and the mean in each quantile bin; None without
    ranged axes."""
    trends, bins = analysis.tables["factor_trends"], analysis.tables["factor_bins"]
    if not len(trends):
        return None
    metric = analysis.thresholds.metric
    label = get_metric(metric).label
    parts = []
    for _, r in trends.iterrows():
        name = _FACTOR_NAMES.get(r["factor"], r["factor"])
        head = (f"{name[0].upper() + name[1:]} (drawn {r['distribution'].replace('_', '-')}, "
                f"{_fmt_value(r['value_low'])} to {_fmt_value(r['value_high'])})")
        if not np.isfinite(r["rho"]):
            parts.append(f"{head}: no trend computed ({int(r['points'])} points, or every value or score the same).")
            continue
        s = f"{head}: {_rho(r)}, the same sign on {int(r['folds_same_sign'])} of {int(r['k'])} folds alone"
        if r["significant"]:
            s += f"; higher values go with {_direction(r['rho'], metric)} across these points"
        else:
            s += "; no significant trend, which does not show there is none"
        quarters = bins[bins["factor"] == r["factor"]]
        if len(quarters) > 1:
            s += "; by bin of drawn values: " + ", ".join(
                f"{_fmt_value(b['value_low'])}–{_fmt_value(b['value_high'])} {format_value(metric, b['mean'])}"
                + (f" ({format_value(metric, b['ci_low'])} to {format_value(metric, b['ci_high'])}, {int(b['points'])} points)"
                   if np.isfinite(b["ci_low"]) else f" ({int(b['points'])} point{'s' if b['points'] > 1 else ''})")
                for _, b in quarters.iterrows())
        parts.append(s + ".")
    n = int(trends["points"].iloc[0])
    return (f"**Ranged axes** (Spearman rank correlation ρ between an axis's value and a grid point's mean {label} "
            f"over its folds, across the {n} points drawn; 95% bootstrap interval over the points; p Holm-adjusted "
            f"over the ranged axes; then the mean {label} of the points in each bin of about equal numbers of "
            "points, 95% t interval over them): " + " ".join(parts)
            + " A rank correlation across the points drawn is an association, not a causal effect: the other "
            "axes were drawn too, and a best value inside the range shows in the bins, not in ρ.")


def choices_paragraph(analysis: Analysis) -> str | None:
    """The axes of a sampled grid drawn from lists (factor_effects.tsv of a sampled grid,
    cvgrid.stats.sampled_level_effects); None when none has two levels."""
    effects = analysis.tables["factor_effects"]
    if not len(effects):
        return None
    metric = analysis.thresholds.metric
    unit = _unit(metric)
    parts = []
    for factor in dict.fromkeys(effects["factor"]):
        g = effects.loc[effects["factor"] == factor]
        name = _FACTOR_NAMES.get(factor, factor)
        levels = ", ".join(
            f"{_fmt_value(r['level'])} vs {_fmt_value(r['reference'])} {_pts(r['mean_diff'], metric)} {unit} ("
            + (f"95% CI {_pts(r['ci_low'], metric)} to {_pts(r['ci_high'], metric)}, {_fmt_p(r['p_holm'])}; "
               if np.isfinite(r["p"]) else "no test: ")
            + f"{int(r['n_level'])} vs {int(r['n_reference'])} points)"
            for _, r in g.iterrows())
        verdict_words = "matters" if g["significant"].any() else "no significant effect, which does not show there is none"
        parts.append(f"{name[0].upper() + name[1:]}: {verdict_words}: {levels}.")
    label = get_metric(metric).label
    what = f"mean {label}" if get_metric(metric).higher_is_better else f"negated mean {label} (positive is better)"
    return (f"**Choices** (axes drawn from lists: the {what} of the points drawn at a level minus that of the "
            "points drawn at the reference level; different points, unpaired, so Welch's t interval over the points, "
            "p Holm-adjusted within each factor; the other axes' draws differ between the two groups only by chance): "
            + " ".join(parts))


def sampled_factors_paragraph(analysis: Analysis) -> str | None:
    """The factors of a sampled grid: :func:`choices_paragraph` and :func:`trends_paragraph`,
    under one heading that says why they are not level-by-level effects."""
    parts = [p for p in (trends_paragraph(analysis), choices_paragraph(analysis)) if p is not None]
    if not parts:
        return None
    n = len(analysis.cv_summary)
    return (f"**Factors of a sampled grid** ({n} points drawn by grid.sample, not a product of levels: no two points "
            "share the other axes' values, so no effect here is paired by fold over matched points). " + " ".join(parts))


def sampled_factor_lines(analysis: Analysis) -> list[str]:
    """The decision block's lines on the factors of a sampled grid: the choices that matter
    and the ranged axes with a significant trend, the others named as not shown."""
    effects, trends = analysis.tables["factor_effects"], analysis.tables["factor_trends"]
    metric = analysis.thresholds.metric
    matter = [f"{_FACTOR_NAMES.get(f, f)} ("
              + ", ".join(f"{_fmt_value(r['level'])} vs {_fmt_value(r['reference'])} {_pts(r['mean_diff'], metric)}"
                          for _, r in g.iterrows()) + f" {_unit(metric)}, unpaired across points)"
              for f, g in effects.groupby("factor", sort=False) if g["significant"].any()]
    matter += [f"{_FACTOR_NAMES.get(r['factor'], r['factor'])} (ρ = {r['rho']:+.2f}: higher values with "
               f"{_direction(r['rho'], metric)}, an association across the points drawn)"
               for _, r in trends.iterrows() if r["significant"]]
    rest = [_FACTOR_NAMES.get(f, f) for f, g in effects.groupby("factor", sort=False) if not g["significant"].any()]
    rest += [_FACTOR_NAMES.get(r["factor"], r["factor"]) for _, r in trends.iterrows() if not r["significant"]]
    if not (matter or rest):
        return []
    return ["- **Factors** (sampled grid): " + ("; ".join(matter) + " matter" if matter else "none matters significantly")
            + (f"; no significant effect or trend of {', '.join(rest)} (not evidence of none)" if rest else "") + "."]


def noise_paragraph(analysis: Analysis) -> str | None:
    """The noise floor across repeats (repeat_noise.tsv by model); None with one repeat."""
    noise_by_model = analysis.noise_by_model
    if not len(noise_by_model):
        return None
    metric = analysis.thresholds.metric
    unit = _unit(metric)
    parts = [f"up to {_num(r['repeat_range_max'], metric)} {unit} for {_model(r['model'])} "
             f"(median {_num(r['repeat_range_median'], metric)}; its configurations span "
             f"{_num(r['config_range'], metric)} {unit})"
             for _, r in noise_by_model.iterrows()]
    return ("**Noise floor**: rerunning the same configuration changed its mean "
            f"{get_metric(metric).label} by " + "; ".join(parts) + ".")


def diverged_paragraph(analysis: Analysis) -> str | None:
    """The folds whose training diverged, named; None when none did."""
    diverged = analysis.diverged
    if not len(diverged):
        return None
    keys = axes_of(analysis.cv_summary)
    return (f"**Diverged**: {len(diverged)} fold{'s' if len(diverged) > 1 else ''} diverged (training "
            "loss NaN or inf; each is scored with its best weights before that epoch): "
            + "; ".join(f"{_model(r['model'])} with {_describe(r, keys)}, repeat {int(r['repeat'])} "
                        f"fold {int(r['fold'])}" for _, r in diverged.iterrows()) + ".")


def metric_paragraph(analysis: Analysis) -> str | None:
    """Which metric ranks and compares (statistics.metric), its direction and the ROPE in its
    units, and for each model whose best by it differs from its best by accuracy, why: the
    class whose recall differs most between the two. None for accuracy (the default)."""
    metric = analysis.thresholds.metric
    if metric == "accuracy":
        return None
    spec = get_metric(metric)
    cv_summary = analysis.cv_summary
    keys = axes_of(cv_summary)
    mean = summary_columns(metric)[0]
    recalls = [c for c in cv_summary.columns if str(c).startswith(f"mean_{RECALL_PREFIX}")]
    text = (f"**Metric**: the grid points are ranked and compared by **{spec.label}** "
            f"(statistics.metric; {better_word(metric)} is better; {spec.units}); every ROPE and "
            f"difference below is in its units (ROPE ±{_rope_pts(analysis)})"
            + ("" if spec.higher_is_better else f", a difference of the negated {spec.label}: positive is better")
            + ".")
    for model, part in cv_summary.groupby("model", sort=True):
        by_metric = part.sort_values("rank").iloc[0]
        # The best by accuracy: first of the highest mean accuracy (ties by the grid keys).
        by_accuracy = part.sort_values(["mean_accuracy", *keys], ascending=[False] + [True] * len(keys)).iloc[0]
        if all(by_metric[k] == by_accuracy[k] for k in keys):
            continue
        text += (f" For {_model(model)} the best by {spec.label}, {_describe(by_metric, keys)} "
                 f"({format_value(metric, by_metric[mean])}; accuracy {format_value('accuracy', by_metric['mean_accuracy'])}), "
                 f"is not the best by accuracy, {_describe(by_accuracy, keys)} "
                 f"({format_value('accuracy', by_accuracy['mean_accuracy'])}; {spec.label} "
                 f"{format_value(metric, by_accuracy[mean])})")
        if recalls:
            gaps = (by_metric[recalls] - by_accuracy[recalls]).astype(float)
            c = gaps.idxmax()
            name = c[len(f"mean_{RECALL_PREFIX}"):]
            text += (f": the higher accuracy comes from the larger classes, while the recall of class "
                     f"{name} (the share of its test images found) is {format_value('accuracy', by_accuracy[c])} "
                     f"against {format_value('accuracy', by_metric[c])}")
        text += "."
    return text


_COST_WORDS = {"work": "training work", "parameters": "parameters", "macs": "multiply-accumulates per image",
               "seconds": "measured training seconds"}


def _count(x: float) -> str:
    """A cost as a short count: 1234 -> '1.2 k', 5.6e6 -> '5.6 M' (NaN: 'n/a')."""
    if not np.isfinite(x):
        return "n/a"
    for factor, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= factor:
            return f"{x / factor:.1f}{suffix}"
    return f"{x:.0f}"


def _costs(row, sizes: bool = True) -> str:
    """A grid point's costs; `sizes`: with its model's parameters and MACs."""
    parts = [f"work {_count(row['work'])} image-epochs"]
    if sizes and "parameters" in row.index:
        parts += [f"{_count(row['parameters'])} parameters", f"{_count(row['macs'])} MACs/image"]
    if np.isfinite(row["seconds"]):
        parts.append(f"{row['seconds']:.0f} s")
    return ", ".join(parts)


def decision_block(analysis: Analysis, max_listed: int = MAX_LISTED) -> str | None:
    """The decision first (decision.tsv, contenders.tsv, compare_to_best.tsv, factor_effects.tsv,
    resolution.tsv), as a few lines: what to choose and by which rule; the accuracy to expect;
    the contenders with their costs; what to drop; which factors matter; the smallest gap these
    folds can resolve. One group per model (and over the whole grid when there are several)."""
    decision = analysis.tables.get("decision")
    # The decision's tables (contenders, decision.tsv, BBC-CV) are computed on accuracy: with
    # another statistics.metric there is no block rather than one about another metric.
    if decision is None or not len(decision) or analysis.thresholds.metric != "accuracy":
        return None
    contenders = analysis.tables["contenders"]
    comparisons = analysis.tables["compare_to_best"]
    resolution = analysis.tables["resolution"].set_index("model")
    keys = axes_of(analysis.cv_summary)
    several = decision["among"].ne(WHOLE_GRID).sum() > 1
    probability = analysis.thresholds.probability
    lines = [f"**Decision** (rule *{analysis.choose.replace('_', ' ')}*"
             + (f" by {_COST_WORDS[analysis.cost]}" if analysis.choose == "cheapest_contender" else "")
             + ", set by final.choose and final.cost):"]
    for _, d in decision.iterrows():
        if d["among"] == WHOLE_GRID and not several:
            continue
        scope = "over all models" if d["among"] == WHOLE_GRID else _model(d["among"])
        name = (f"{_model(d['model'])}, " if d["among"] == WHOLE_GRID else "") + _describe(d, keys)
        bbc = np.isfinite(d.get("bbc_estimate", np.nan))
        if d["rule"] == "best":
            why = "the highest mean CV accuracy"
            expect = (f"{'' if bbc else '**'}{100 * d['bound']:.1f}%{'' if bbc else '**'} (the best of {int(d['candidates'])} corrected for that choice, "
                      f"Tibshirani & Tibshirani 2009; raw mean {100 * d['mean_accuracy']:.1f}%, optimistic)"
                      if d["candidates"] > 1 else
                      # One grid point: nothing was chosen, so its mean is not optimistic.
                      f"{'' if bbc else '**'}{100 * d['mean_accuracy']:.1f}%{'' if bbc else '**'} (its mean CV "
                      "accuracy: the only grid point, so nothing was chosen and nothing is corrected)")
        else:
            why = (f"the contender of least {_COST_WORDS[d['cost']]}, {_pts(d['gap'], 'accuracy')} points from the best's "
                   "mean")
            expect = (f"at least {100 * d['bound']:.1f}% (a conservative bound: the whole gap to each fold's "
                      f"best counted as optimism; raw mean {100 * d['mean_accuracy']:.1f}%, optimistic"
                      + ("" if bbc or d["among"] != WHOLE_GRID else "; BBC-CV is estimated per model only")
                      + ("" if bbc or d["among"] == WHOLE_GRID else
                         "; the procedure's own estimate, BBC-CV, was not given to this step") + ")")
        if bbc:
            # The procedure's own estimate (BBC-CV) first; the figures above beside it.
            expect = (f"**{100 * d['bbc_estimate']:.1f}%** (95% bootstrap interval {100 * d['bbc_low']:.1f} to "
                      f"{100 * d['bbc_high']:.1f}%; BBC-CV, Tsamardinos et al. 2018: the rule applied to "
                      f"{int(d['bbc_bags'])} bootstrap samples of the out-of-fold predictions, its choice scored "
                      f"on the samples left out); beside it: " + expect)
        lines.append(f"- **Choose** ({scope}): {name}: {why}.")
        lines.append(f"- **Expect** ({scope}): {expect}.")
        rows = contenders[contenders["among"] == d["among"]]
        size = ""  # one model: its size once
        if d["among"] != WHOLE_GRID and "parameters" in rows.columns and len(rows):
            size = f"; {_count(rows['parameters'].iloc[0])} parameters, {_count(rows['macs'].iloc[0])} MACs/image each"
        # One sub-item a point (a list, not a paragraph: the landing page shows it first).
        lines.append(f"- **Contenders** ({scope}, {len(rows)} of {int(d['candidates'])}, the points these folds "
                     f"cannot separate from the best{size}):")
        lines += [f"  - {_model(r['model']) + ', ' if d['among'] == WHOLE_GRID else ''}{_describe(r, keys)}: "
                  f"{100 * r['mean_accuracy']:.1f}% ({_pts(r['gap'], 'accuracy')}), {_costs(r, d['among'] == WHOLE_GRID)}"
                  for _, r in rows.head(max_listed).iterrows()]
        if len(rows) > max_listed:
            lines.append(f"  - and {len(rows) - max_listed} more (contenders.tsv)")
        if d["among"] != WHOLE_GRID:
            worse = comparisons[(comparisons["model"] == d["among"]) & (comparisons["verdict"] == WORSE)]
            if len(worse):
                lines.append(f"- **Drop** ({scope}): {len(worse)} point(s) *worse* than the best by more than "
                             f"{_rope_pts(analysis)} (posterior ≥ {probability:g}):")
                lines += [f"  - {_describe(r, keys)} ({_pts(r['mean_diff'], 'accuracy')})"
                          for _, r in worse.head(max_listed).iterrows()]
                if len(worse) > max_listed:
                    lines.append(f"  - and {len(worse) - max_listed} more (compare_to_best.tsv)")
            else:
                lines.append(f"- **Drop** ({scope}): no point is *worse* with these folds.")
            if d["among"] in resolution.index:
                r = resolution.loc[d["among"]]
                lines.append(f"- **Resolution** ({scope}): these folds call a point *worse* only about "
                             f"{100 * r['worse_gap_now']:.1f} points below the best; smaller gaps stay "
                             "*undecided*.")
    effects = analysis.tables["factor_effects"]
    if "factor_trends" in analysis.tables:
        lines += sampled_factor_lines(analysis)
    elif len(effects):
        matter = [f"{_FACTOR_NAMES.get(f, f)} ("
                  + ", ".join(f"{_fmt_value(r['level'])} vs {_fmt_value(r['reference'])} {_pts(r['mean_diff'], 'accuracy')}"
                              for _, r in g.iterrows()) + " points)"
                  for f, g in effects.groupby("factor", sort=False) if g["significant"].any()]
        rest = [_FACTOR_NAMES.get(f, f) for f, g in effects.groupby("factor", sort=False) if not g["significant"].any()]
        lines.append("- **Factors**: " + ("; ".join(matter) + " matter" if matter else "none matters significantly")
                     + (f"; no significant effect of {', '.join(rest)} (not evidence of none)" if rest else "")
                     + ".")
    return "\n".join(lines)


def mixed_hardware_paragraph(analysis: Analysis) -> str | None:
    """The grid points whose folds ran on different GPU models or precisions, named; None when
    every point's folds ran alike."""
    mixed = analysis.mixed_hardware
    if not len(mixed):
        return None
    keys = axes_of(analysis.cv_summary)
    return ("**Mixed hardware**: the folds of " + "; ".join(
        f"{_model(r['model'])} with {_describe(r, keys)} ran on {r['devices']} in {r['precisions']}"
        for _, r in mixed.iterrows())
        + ". Their fold differences include the hardware's (precision, kernels), not only the data's.")


def _ordinal(n: int) -> str:
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n if n < 20 else n % 10, 'th') }"


def decide_paragraph(rounds: Sequence[pd.DataFrame], final: pd.DataFrame, folds: int,
                     max_listed: int = MAX_LISTED, choose: str = "best") -> str | None:
    """cv.decide's repeats (rules/decide.smk): which points each round gave a repeat, which
    verdicts changed from the first round's (on the configured repeats of every point) to the
    final ones (`final`, compare_to_best.tsv), and the training jobs that cost against repeating
    the whole grid as often (points x `folds` x repeats added). `rounds`: the rounds' tables
    (cvgrid.decision.repeat_round) in order; None without any. `choose` (final.choose) says
    which point the final model refits where the added repeats changed the best."""
    if not rounds:
        return None
    keys = axes_of(rounds[0])
    added = [(int(r["repeats_done"].iloc[0]), r[r["gets_repeat"].astype(bool)]) for r in rounds]
    given = [(repeat, chosen) for repeat, chosen in added if len(chosen)]
    points = len(rounds[0])
    spent = sum(len(chosen) for _, chosen in given) * folds
    whole = points * folds * len(given)
    parts = [f"a {_ordinal(repeat + 1)} repeat to {len(chosen)} point{'s' if len(chosen) > 1 else ''} ("
             + "; ".join(f"{_model(c['model'])}, {_describe(c, keys)}" for _, c in chosen.head(max_listed).iterrows())
             + (f"; and {len(chosen) - max_listed} more" if len(chosen) > max_listed else "") + ")"
             for repeat, chosen in given]
    last_repeat, last_chosen = added[-1]
    stop = ("then no point was left that more repeats could decide" if not len(last_chosen)
            else "then the most repeats, cv.decide.max_repeats, were reached")
    first = rounds[0][[*keys, "verdict"]].rename(columns={"verdict": "first"})
    both = first.merge(final[[*keys, "verdict"]], on=keys, how="inner", validate="one_to_one")
    changed = both[both["first"] != both["verdict"]]
    change_text = ("; ".join(f"{_model(r['model'])}, {_describe(r, keys)}: *{r['first']}* → *{r['verdict']}*"
                             for _, r in changed.head(max_listed).iterrows())
                   + (f"; and {len(changed) - max_listed} more" if len(changed) > max_listed else "")
                   if len(changed) else "none")
    # The choice (contenders, decision.tsv, selected.tsv, BBC-CV) runs on the repeats every point
    # has, where the first round's best is best: say so where the added repeats made another best.
    firsts, finals = (table[table["verdict"] == "best"].set_index("model") for table in (rounds[0], final))
    moved = [f"{_model(model)}: {_describe(finals.loc[model], keys)} after the added repeats, "
             f"{_describe(row, keys)} on the first" for model, row in firsts.iterrows()
             if model in finals.index and any(finals.loc[model, k] != row[k] for k in keys if k != "model")]
    if moved:
        # The refit follows cv_summary's best under final.choose best, decision.tsv otherwise
        # (rules/final.smk): say which, so that the Decision and results/final are not read as one point.
        refit = ("the best after the added repeats (cv_summary.tsv's rank 1), not the Decision's point"
                 if choose == "best" else "the Decision's point")
        stop += (". The best changed (" + "; ".join(moved) + "): the contenders, the decision and the "
                 "corrected accuracy are computed on the repeats every point has, where the first is best, "
                 f"while the final model (results/final) is refitted on {refit}; the verdicts "
                 "(compare_to_best.tsv) use every repeat")
    if not given:
        return (f"**Repeats only where they decide** (cv.decide): after the first {int(rounds[0]['repeats_done'].iloc[0])}"
                " repeat(s), no undecided point could be decided by more repeats, so none was added.")
    return ("**Repeats only where they decide** (cv.decide): each round compared the points still in play and "
            "gave one more repeat, on new folds shared by all it went to, to each model's best and the undecided "
            "points that the configured number of repeats could decide: "
            + "; ".join(parts) + f"; {stop}. Verdicts changed from the first repeat's to the final: {change_text}. "
            f"This cost {spent} training jobs, against {whole} for giving the whole grid of {points} points the "
            f"same {len(given)} repeat{'s' if len(given) > 1 else ''} ({points} × {folds} folds × {len(given)}).")


def race_paragraph(folds: pd.DataFrame, cv_summary: pd.DataFrame, metric: str,
                   max_listed: int = 2 * MAX_LISTED) -> str | None:
    """cv.race: the points the race stopped, each with its partial mean, and the jobs it saved
    against the full grid, from cv_folds.tsv and cv_summary.tsv with their ``race`` column (the
    whole tables, stopped points included); None without a race."""
    if "race" not in folds:
        return None
    total = int(folds.groupby(axes_of(folds)).size().max())  # the best always completes every fold
    savings = race_savings(folds, total)
    stopped = cv_summary[cv_summary["race"].str.startswith("stopped")]
    keys = axes_of(cv_summary)
    mean = summary_columns(metric)[0]
    label = get_metric(metric).label
    text = (f"**Racing** (cv.race: after each fold round, the points the verdicts call *worse* than their "
            f"model's best on the folds every remaining point has were stopped; a model's best never is): "
            f"{savings['points']} grid points, {savings['run']} training jobs run of the full grid's "
            f"{savings['full']} ({savings['points']} points × {total} folds), so racing saved {savings['saved']}. ")
    if stopped.empty:
        return text + "No point was stopped: every point trained every fold."
    names = [f"{_model(r['model'])} with {_describe(r, keys)}, {r['race']} (mean {label} "
             f"{format_value(metric, r[mean])} over its {int(r['folds'])} folds)"
             for _, r in stopped.head(max_listed).iterrows()]
    more = len(stopped) - len(names)
    return (text + f"{len(stopped)} stopped: " + "; ".join(names) + (f"; and {more} more" if more > 0 else "")
            + ". A stopped point's mean is over its first folds only, so it is not comparable with the "
            f"{total}-fold means of the others; the verdicts, contenders, factors and the refit are of the "
            f"{savings['points'] - len(stopped)} points that trained every fold. Those points were kept by their "
            "accuracy, so the factor effects and trends over them are of a selected set and may differ from the "
            "whole grid's in either direction: measure factors on a run without a race.")


def summary_text(analysis: Analysis, max_listed: int = MAX_LISTED, extra: Sequence[str | None] = ()) -> str:
    """The answer in words: the paragraphs above that have something to say, separated by
    blank lines (summary.md); `extra`: paragraphs on what the analysis does not hold (the race's,
    :func:`race_paragraph`), last."""
    paragraphs = [decision_block(analysis, max_listed), metric_paragraph(analysis), best_paragraph(analysis),
                  models_paragraph(analysis),
                  verdicts_paragraph(analysis, max_listed), resolution_paragraph(analysis),
                  factors_paragraph(analysis), noise_paragraph(analysis), diverged_paragraph(analysis),
                  mixed_hardware_paragraph(analysis), *extra]
    return "\n\n".join(p for p in paragraphs if p is not None) + "\n"


def _inline(paragraph: str) -> str:
    escaped = html.escape(paragraph)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"\*(.+?)\*", r"<i>\1</i>", escaped)


def paragraph_html(paragraph: str) -> str:
    """One paragraph of :func:`summary_text` as HTML: a heading line and "- " items, each with
    "  - " sub-items (:func:`decision_block`), as a list; anything else as <p>."""
    lines = paragraph.strip().split("\n")
    if len(lines) > 1 and lines[1].startswith("- ") and all(line.startswith(("- ", "  - ")) for line in lines[1:]):
        items = []
        for line in lines[1:]:
            if line.startswith("- "):
                items.append([_inline(line[2:]), []])
            else:
                items[-1][1].append(_inline(line[4:]))
        body = "".join(f"<li>{item}" + (f"<ul>{''.join(f'<li>{s}</li>' for s in subs)}</ul>" if subs else "") + "</li>"
                       for item, subs in items)
        return f"<div class='decision'><p>{_inline(lines[0])}</p><ul>{body}</ul></div>"
    return f"<p>{_inline(paragraph)}</p>"


def summary_html(text: str, title: str = "Which configuration to choose") -> str:
    """:func:`summary_text` (paragraphs, **bold**, *italics*) as a small self-contained HTML page."""
    body = "\n".join(paragraph_html(paragraph) for paragraph in text.split("\n\n") if paragraph.strip())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;line-height:1.5}</style></head>"
            f"<body><h2>{html.escape(title)}</h2>\n{body}\n</body></html>\n")


def decision_html(analysis: Analysis) -> str:
    """decision.html: :func:`decision_block` as an HTML fragment (one line), which the report's
    landing page (workflow/report/workflow.rst) shows first."""
    block = decision_block(analysis)
    return (paragraph_html(block) if block is not None else "<p>No decision: the grid has no finished point.</p>") + "\n"


def write_decision(analysis: Analysis, out_dir: str | Path) -> None:
    """out_dir/decision.html (:func:`decision_html`)."""
    with atomic_path(Path(out_dir) / "decision.html") as tmp:
        tmp.write_text(decision_html(analysis))


def write_summary(text: str, out_dir: str | Path, *, markdown: bool) -> None:
    """out_dir/summary.html, and out_dir/summary.md too if `markdown`."""
    with atomic_path(Path(out_dir) / "summary.html") as tmp:
        tmp.write_text(summary_html(text))
    if markdown:
        with atomic_path(Path(out_dir) / "summary.md") as tmp:
            tmp.write_text(text)
