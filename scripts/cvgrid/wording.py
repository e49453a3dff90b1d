"""The written summary of one run's statistics (summary.md, summary.html): one function per
paragraph, each reading only the tables of :class:`cvgrid.analysis.Analysis`; deterministic.
Accuracies are in percent, differences in percentage points, with one decimal; the only markup
is ``**bold**`` and ``*italics*``. The numbers are :mod:`cvgrid.stats`'s, which never imports
this module."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cvgrid.analysis import Analysis
from cvgrid.grid import axes_of
from cvgrid.io import atomic_path
from cvgrid.stats import BETTER, EQUIVALENT, UNDECIDED, WORSE

# At most this many configurations are named per verdict and model.
MAX_LISTED = 5

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
    return ", ".join(f"{_FACTOR_NAMES.get(k, k)} {_fmt_value(config[k])}" for k in (axes_of(config) if keys is None else keys) if k != "model")


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


def _rope_pts(analysis: Analysis) -> str:
    return f"{100 * analysis.thresholds.rope:g} points"


def best_paragraph(analysis: Analysis) -> str:
    """Best configuration of each model, with the estimate corrected for choosing it."""
    cv_summary = analysis.cv_summary
    keys = axes_of(cv_summary)
    best = cv_summary[cv_summary["rank"] == 1]
    corrected = {r["scope"]: r for _, r in analysis.tables["selected"].iterrows()}
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
    return (f"**Best configurations** (mean test accuracy over {k} folds ± the fold spread, "
            "2 × std, which is not a confidence interval; the corrected figure, after "
            "Tibshirani & Tibshirani 2009, is the accuracy to expect): " + "; ".join(parts) + ".")


def models_paragraph(analysis: Analysis) -> str | None:
    """The best model against the others (compare_models.tsv); None with one model."""
    model_comparisons = analysis.tables["compare_models"]
    if not len(model_comparisons):
        return None
    rope_pts = _rope_pts(analysis)
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
        named = [f"{verdict_name} — {_names(rows, keys, max_listed)}"
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
    return "**What these folds can resolve**: " + " ".join(parts)


def factors_paragraph(analysis: Analysis) -> str | None:
    """Factor effects (factor_effects.tsv), significant ones first (in table order)."""
    effects = analysis.tables["factor_effects"]
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
    if not (matter or not_matter):
        return None
    return ("**Factors** (accuracy difference averaged over this grid's levels of the other "
            "factors, paired by fold; p Holm-adjusted within each factor): " + " ".join(matter + not_matter))


def noise_paragraph(analysis: Analysis) -> str | None:
    """The noise floor across repeats (repeat_noise.tsv by model); None with one repeat."""
    noise_by_model = analysis.noise_by_model
    if not len(noise_by_model):
        return None
    parts = [f"up to {100 * r['repeat_range_max']:.1f} points for {_model(r['model'])} "
             f"(median {100 * r['repeat_range_median']:.1f}; its configurations span "
             f"{100 * r['config_range']:.1f} points)"
             for _, r in noise_by_model.iterrows()]
    return ("**Noise floor**: rerunning the same configuration changed its mean "
            "accuracy by " + "; ".join(parts) + ".")


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


def summary_text(analysis: Analysis, max_listed: int = MAX_LISTED) -> str:
    """The answer in words: the paragraphs above that have something to say, separated by
    blank lines (summary.md)."""
    paragraphs = [best_paragraph(analysis), models_paragraph(analysis),
                  verdicts_paragraph(analysis, max_listed), resolution_paragraph(analysis),
                  factors_paragraph(analysis), noise_paragraph(analysis), diverged_paragraph(analysis),
                  mixed_hardware_paragraph(analysis)]
    return "\n\n".join(p for p in paragraphs if p is not None) + "\n"


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


def write_summary(text: str, out_dir: str | Path, *, markdown: bool) -> None:
    """out_dir/summary.html, and out_dir/summary.md too if `markdown`."""
    with atomic_path(Path(out_dir) / "summary.html") as tmp:
        tmp.write_text(summary_html(text))
    if markdown:
        with atomic_path(Path(out_dir) / "summary.md") as tmp:
            tmp.write_text(text)
