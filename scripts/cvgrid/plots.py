"""Figures of the CV results (matplotlib/seaborn, no display needed)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
# The same figure gives the same bytes (published SVGs under docs/ do not change on every run):
# fixed ids for clip paths, and no date (see save_figure).
matplotlib.rcParams["svg.hashsalt"] = "cvgrid"
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from cvgrid.grid import axes_of  # noqa: E402
from cvgrid.metrics import better_word, get_metric, summary_columns, to_score  # noqa: E402
from cvgrid.race import COMPLETED  # noqa: E402


def save_figure(fig, path, **kwargs) -> None:
    """fig.savefig without the creation date that matplotlib writes into an SVG."""
    metadata = {"Date": None} if str(path).endswith(".svg") else None
    fig.savefig(path, metadata=metadata, **kwargs)


# How a cell of the heatmap marks its grid point's verdict against the model's best.
VERDICT_MARKS = {"best": "best", "worse": "worse", "practically equivalent": "equiv.", "undecided": "?",
                 "stopped": "stopped"}  # cv.race: stopped early, its mean is of its first folds only


def heatmap_layout(summary: pd.DataFrame, model: str, chosen: list[str] | None = None) -> tuple[str, str, list[str]]:
    """The heatmap of `model`: its (rows, columns) axes and the axes whose combinations make
    one panel each. `chosen`: the config's plots.heatmap_axes; by default the first two axes
    (after model, in cvgrid.grid.AXES order) that vary in the model's grid, then the first
    that do not (batch_size x learning_rate with one panel per augmentation on the reference
    grid). Every other axis that varies gets its panels, so each cell is one grid point."""
    rows = summary[summary["model"] == model]
    axes = [axis for axis in axes_of(summary) if axis != "model"]
    varying = [axis for axis in axes if rows[axis].nunique() > 1]
    if chosen:
        unknown = [axis for axis in chosen if axis not in axes]
        if unknown:
            raise ValueError(f"plots.heatmap_axes names {unknown[0]!r}, which is not an axis of this grid "
                             f"(axes: {axes})")
        pair = list(chosen)
    else:
        pair = (varying + [axis for axis in axes if axis not in varying])[:2]
    return pair[0], pair[1], [axis for axis in varying if axis not in pair]


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


# At most this many panels in one heatmap: past it the figure shows the panels that hold the
# model's best grid points (by their best cell), in panel order, and says how many it leaves out
# (cv_summary.tsv has them all). 60 panels are 20 lines of 3, a figure 72 inches tall.
MAX_HEATMAP_PANELS = 60


def heatmap(summary: pd.DataFrame, model: str, path, verdicts: pd.DataFrame | None = None,
            axes: list[str] | None = None, *, metric: str) -> None:
    """Two grid axes (heatmap_layout; batch size x learning rate on the reference grid), one
    panel per combination of the other axes that vary (augmentation); each cell the mean
    accuracy (%), below it the fold spread (± 2 x std) and, with `verdicts`
    (compare_to_best.tsv), the grid point's verdict against the model's best (VERDICT_MARKS).
    One colour scale for all panels. The values are `metric`'s (statistics.metric: its mean
    and fold spread columns of cv_summary.tsv), the better end of the scale always yellow."""
    keys = axes_of(summary)
    mean_column, spread_column = summary_columns(metric)
    scale = 100 if get_metric(metric).percent else 1
    unit = "%" if get_metric(metric).percent else "nats"
    cmap = "viridis" if get_metric(metric).higher_is_better else "viridis_r"
    row_axis, column_axis, panel_axes = heatmap_layout(summary, model, axes)
    rows = summary[summary["model"] == model]
    if verdicts is not None:
        rows = rows.merge(verdicts[keys + ["verdict"]], on=keys, how="left")
        if "race" in rows:  # cv.race: a stopped point has no verdict, it is marked as stopped
            rows.loc[rows["race"] != COMPLETED, "verdict"] = "stopped"
    panels = (sorted(rows.groupby(panel_axes).groups) if panel_axes else [()])
    panels = [p if isinstance(p, tuple) else (p,) for p in panels]
    left_out = max(len(panels) - MAX_HEATMAP_PANELS, 0)
    if left_out:
        best = to_score(metric, rows[mean_column]).groupby([rows[a] for a in panel_axes]).max()
        best.index = [p if isinstance(p, tuple) else (p,) for p in best.index]
        kept = set(best.sort_values(ascending=False, kind="stable").index[:MAX_HEATMAP_PANELS])
        panels = [p for p in panels if p in kept]
    vmin, vmax = scale * rows[mean_column].min(), scale * rows[mean_column].max()
    if vmax - vmin < 1e-9:  # every point equal: one colour, not a degenerate scale
        vmin, vmax = vmin - 0.5, vmax + 0.5
    columns = min(len(panels), 3)
    lines = (len(panels) + columns - 1) // columns
    fig, axes_grid = plt.subplots(lines, columns, figsize=(4.2 * columns + 1, 3.6 * lines), squeeze=False)
    for ax in axes_grid.flat[len(panels):]:
        ax.axis("off")
    # sns.heatmap draws the whole figure each time (to turn overlapping tick labels): with every
    # other panel hidden meanwhile, that draw costs one panel, and the figure grows linearly.
    for ax in axes_grid.flat:
        ax.set_visible(False)
    for ax, panel in zip(axes_grid.flat, panels):
        ax.set_visible(True)
        part = rows
        for axis, value in zip(panel_axes, panel):
            part = part[part[axis] == value]
        mean = part.pivot(index=row_axis, columns=column_axis, values=mean_column) * scale
        spread = part.pivot(index=row_axis, columns=column_axis, values=spread_column) * scale
        digits = 1 if scale == 100 else 3
        labels = mean.map(lambda v: f"{v:.{digits}f}") + "\n±" + spread.map(lambda v: f"{v:.{digits}f}")
        if verdicts is not None:
            marks = part.pivot(index=row_axis, columns=column_axis, values="verdict")
            labels = labels + "\n" + marks.map(lambda v: VERDICT_MARKS.get(v, ""))
        sns.heatmap(mean, annot=labels.to_numpy(), fmt="", cmap=cmap, vmin=vmin, vmax=vmax,
                    cbar=ax is axes_grid.flat[len(panels) - 1],
                    cbar_kws={"label": f"mean {get_metric(metric).label} ({unit})"}, ax=ax,
                    annot_kws={"fontsize": 8})
        ax.set_title(", ".join([model, *(f"{axis.replace('_', ' ')}: {_value(v)}" for axis, v in zip(panel_axes, panel))]))
        ax.set_xlabel(column_axis.replace("_", " "))
        ax.set_ylabel(row_axis.replace("_", " "))
        ax.set_visible(False)
    for ax in axes_grid.flat:
        ax.set_visible(True)
    if left_out:
        fig.suptitle(f"{model}: the {len(panels)} panels holding the best grid points; {left_out} more panels"
                     " are not shown (cv_summary.tsv has every grid point)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# Short names of the axes in a grid point's one-line label.
_SHORT = {"batch_size": "bs", "learning_rate": "lr", "augmentation": "aug"}


def point_labels(table: pd.DataFrame) -> pd.Series:
    """'model_a bs=32 lr=0.001 aug=none' for each row (every axis of the grid)."""
    axes = [axis for axis in axes_of(table) if axis != "model"]
    return table.apply(
        lambda r: " ".join([str(r["model"]), *(f"{_SHORT.get(a, a)}={_value(r[a])}" for a in axes)]), axis=1)


# At most this many grid points (rows) in the fold plot: past it, the best ones, and a title that
# says how many are left out (cv_folds.tsv has every fold). 100 rows are a figure 33 inches tall.
MAX_FOLD_PLOT_POINTS = 100


def fold_accuracies(folds: pd.DataFrame, summary: pd.DataFrame, path, *, metric: str) -> None:
    """Every fold's value of `metric` (statistics.metric; its column of cv_folds.tsv) per grid
    point (dots) and the mean (bar), best grid point on top (cv_summary.tsv's order, by the
    metric); the MAX_FOLD_PLOT_POINTS best grid points of a bigger grid."""
    spec = get_metric(metric)
    scale, unit = (100, "%") if spec.percent else (1, "nats")
    left_out = max(len(summary) - MAX_FOLD_PLOT_POINTS, 0)
    summary = summary.head(MAX_FOLD_PLOT_POINTS)  # cv_summary.tsv is ordered best first
    labels = point_labels(summary)
    order = list(labels)
    data = folds.merge(summary[axes_of(summary)].assign(point=labels))
    data = data.assign(value=scale * data[metric])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(order)))
    sns.pointplot(data=data, y="point", x="value", order=order, errorbar=None, linestyle="none",
                  markers="|", markersize=14, color="black", ax=ax)
    sns.stripplot(data=data, y="point", x="value", order=order, hue="fold", palette="tab10",
                  size=5, jitter=0.15, ax=ax)
    lower = "" if spec.higher_is_better else f"; {better_word(metric)} is better"
    ax.set_xlabel(f"test-fold {spec.label} ({unit}{lower})  —  bar: mean")
    ax.set_ylabel("")
    if left_out:
        ax.set_title(f"the {len(summary)} best grid points; {left_out} more are not shown (cv_folds.tsv has every fold)",
                     fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def factor_effects(effects: pd.DataFrame, path) -> None:
    """Each factor level's paired effect on accuracy against its reference, with 95% CI."""
    if effects.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.text(0.5, 0.5, "every factor has a single level in this grid", ha="center", va="center")
        ax.axis("off")
    else:
        labels = effects.apply(lambda r: f"{r.factor}: {r.level} vs {r.reference}", axis=1)
        y = np.arange(len(effects))[::-1]
        mean = 100 * effects["mean_diff"].to_numpy()
        err = 100 * np.vstack([effects["mean_diff"] - effects["ci_low"], effects["ci_high"] - effects["mean_diff"]])
        colours = np.where(effects["significant"].to_numpy(dtype=bool), "tab:red", "tab:gray")
        fig, ax = plt.subplots(figsize=(7, 1 + 0.45 * len(effects)))
        for i, colour in enumerate(colours):
            ax.errorbar(mean[i], y[i], xerr=err[:, i : i + 1], fmt="o", color=colour, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, labels)
        ax.set_xlabel("effect on accuracy (percentage points), 95% CI; red: significant (Holm)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# Past this many grid points the parallel-coordinates lines are thinner, fainter and written as
# one raster image inside the SVG (thousands of vector paths make a file of tens of MB that a
# browser draws slowly); the axes and labels stay vector.
MAX_VECTOR_LINES = 500


def parallel_coordinates(summary: pd.DataFrame, path, *, metric: str, ranges: dict | None = None) -> None:
    """The whole grid: one line per grid point through its settings to its mean of `metric`
    (statistics.metric), coloured by its score (categorical axes are spaced evenly, numbers in
    order; for log-loss the better, lower values are at the top). `ranges` (a sampled grid's
    ranged axes, cvgrid.grid.sampled_ranges): those axes to scale between their bounds, log
    for log_uniform, with ticks at the bounds and between (range_position)."""
    summary = summary.assign(mean_accuracy=to_score(metric, summary[summary_columns(metric)[0]]))
    sign = 1 if get_metric(metric).higher_is_better else -1
    scale = 100 if get_metric(metric).percent else 1
    unit = "%" if get_metric(metric).percent else " nats"
    many = len(summary) > MAX_VECTOR_LINES
    style = {"alpha": 0.3, "lw": 0.6, "rasterized": True} if many else {"alpha": 0.8, "lw": 1.5}
    axes_names = [*axes_of(summary), "mean_accuracy"]
    positions = {}
    for name in axes_names[:-1]:
        levels = sorted(summary[name].unique())
        if ranges and name in ranges:
            positions[name] = {v: float(range_position(ranges[name], v)) for v in levels}
            continue
        positions[name] = {v: i / max(len(levels) - 1, 1) for i, v in enumerate(levels)}
    low, high = summary["mean_accuracy"].min(), summary["mean_accuracy"].max()
    span = (high - low) or 1.0
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(max(9, 1.8 * len(axes_names)), 4.5))
    for row in summary.sort_values("mean_accuracy").itertuples():
        ys = [positions[n][getattr(row, n)] for n in axes_names[:-1]] + [(row.mean_accuracy - low) / span]
        ax.plot(range(len(axes_names)), ys, color=cmap((row.mean_accuracy - low) / span), **style)
    for i, name in enumerate(axes_names):
        ax.axvline(i, color="black", lw=0.8)
        ticks = (range_ticks(ranges[name]) if ranges and name in ranges
                 else positions[name].items() if name in positions
                 else [(f"{sign * scale * (low + f * span):.{1 if scale == 100 else 3}f}{unit}", f) for f in (0, 0.5, 1)])
        for label, y in ticks:
            ax.text(i + 0.03, y, f"{label:g}" if isinstance(label, float) else str(label), fontsize=8, va="center")
    log_axes = [name for name, spec in (ranges or {}).items() if next(iter(spec)) == "log_uniform"]
    ax.set_xticks(range(len(axes_names)), [name.replace("_", " ") + ("\n(log scale)" if name in log_axes else "")
                                           for name in axes_names[:-1]]
                  + [f"mean {get_metric(metric).label}"])
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    values = sorted((sign * scale * low, sign * scale * high))
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(*values), cmap=cmap if sign > 0 else cmap.reversed()),
                 ax=ax, label=f"mean {get_metric(metric).label} ({unit.strip()})")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def range_position(spec: dict, values):
    """Where values of a ranged axis ({distribution: [low, high]}) lie between its bounds, 0 to
    1: on a log scale for log_uniform, else linear."""
    (distribution, (low, high)), = spec.items()
    values = np.asarray(values, dtype=float)
    if distribution == "log_uniform":
        return (np.log(values) - np.log(low)) / (np.log(high) - np.log(low))
    return (values - low) / (high - low)


def range_ticks(spec: dict) -> list[tuple[float, float]]:
    """(value, position) ticks of a ranged axis: its bounds and three values between, evenly
    spaced on its scale (log for log_uniform), rounded to 2 significant digits."""
    (distribution, (low, high)), = spec.items()
    if distribution == "log_uniform":
        values = np.geomspace(low, high, 5)
    else:
        values = np.linspace(low, high, 5)
    values = [float(f"{v:.1e}") for v in values]
    return [(v, float(range_position(spec, v))) for v in values]


def trend_axes(summary: pd.DataFrame, model: str, chosen: list[str] | None, ranges: dict) -> tuple[str, str]:
    """The two axes of a sampled grid's scatter (sampled_scatter): `chosen` (plots.heatmap_axes),
    else the first two that vary among the model's points, ranged axes before lists (in
    cvgrid.grid.AXES order each): learning rate and weight decay on config/search.yaml."""
    rows = summary[summary["model"] == model]
    axes = [axis for axis in axes_of(summary) if axis != "model"]
    if chosen:
        unknown = [axis for axis in chosen if axis not in axes]
        if unknown:
            raise ValueError(f"plots.heatmap_axes names {unknown[0]!r}, which is not an axis of this grid "
                             f"(axes: {axes})")
        return chosen[0], chosen[1]
    varying = [axis for axis in axes if rows[axis].nunique() > 1]
    ordered = ([a for a in varying if a in ranges] + [a for a in varying if a not in ranges]
               + [a for a in axes if a not in varying])
    return ordered[0], ordered[1]


# How a dot of the sampled grid's scatter marks its verdict against the model's best.
VERDICT_MARKERS = {"best": "*", "worse": "X", "practically equivalent": "s", "undecided": "o"}


def sampled_scatter(summary: pd.DataFrame, model: str, path, verdicts: pd.DataFrame | None = None,
                    axes: list[str] | None = None, *, ranges: dict, metric: str) -> None:
    """The heatmap of a sampled grid (grid.sample), drawn as a scatter: its points share no
    cells (no two have the same values of two ranged axes), so a heatmap would be one cell per
    point in a sparse table. One dot per grid point of `model` at its values of two axes
    (trend_axes: plots.heatmap_axes, rows then columns, on the vertical and horizontal axis;
    else the first two ranged axes), coloured by its mean of `metric` on one scale, labelled
    with it, and shaped by its verdict against the model's best (VERDICT_MARKERS, with
    `verdicts`, compare_to_best.tsv). A ranged axis is drawn on its scale (log for
    log_uniform); a list's values are spaced evenly, the points at one value spread a little
    (seeded) so that none hides another."""
    keys = axes_of(summary)
    mean_column = summary_columns(metric)[0]
    scale = 100 if get_metric(metric).percent else 1
    unit = "%" if get_metric(metric).percent else "nats"
    cmap = "viridis" if get_metric(metric).higher_is_better else "viridis_r"
    y_axis, x_axis = trend_axes(summary, model, axes, ranges)
    rows = summary[summary["model"] == model].reset_index(drop=True)
    if verdicts is not None:
        rows = rows.merge(verdicts[keys + ["verdict"]], on=keys, how="left")
    fig, ax = plt.subplots(figsize=(8, 6))

    def place(axis, which):
        if axis in ranges:
            if next(iter(ranges[axis])) == "log_uniform":
                (ax.set_xscale if which == "x" else ax.set_yscale)("log")
            return rows[axis].astype(float).to_numpy()
        levels = sorted(rows[axis].unique())
        index = rows[axis].map({v: i for i, v in enumerate(levels)}).to_numpy(dtype=float)
        (ax.set_xticks if which == "x" else ax.set_yticks)(range(len(levels)), [_value(v) for v in levels])
        # The points of one level spread over +-0.25 at random (seeded: the same figure every run;
        # an ordered spread would draw a slope that is not in the data).
        return index + np.random.default_rng(0).uniform(-0.25, 0.25, len(rows))

    xs, ys = place(x_axis, "x"), place(y_axis, "y")
    values = scale * rows[mean_column].to_numpy(dtype=float)
    norm = plt.Normalize(values.min(), values.max() if values.max() > values.min() else values.min() + 1)
    # Without verdicts every dot a circle; a point without a verdict in the table says so.
    verdict_of = (rows["verdict"].fillna("no verdict") if verdicts is not None
                  else pd.Series("undecided", index=rows.index))
    for verdict in [*VERDICT_MARKERS, *sorted(set(verdict_of) - set(VERDICT_MARKERS))]:
        shown = (verdict_of == verdict).to_numpy()
        marker = VERDICT_MARKERS.get(verdict, "o")
        if shown.any():
            ax.scatter(xs[shown], ys[shown], c=values[shown], cmap=cmap, norm=norm, marker=marker,
                       s=160 if marker == "*" else 70, edgecolors="black", linewidths=0.6,
                       label=verdict if verdicts is not None else None)
    digits = 1 if scale == 100 else 3
    for x, y, v in zip(xs, ys, values):
        ax.annotate(f"{v:.{digits}f}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=7)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"mean {get_metric(metric).label} ({unit})")
    if verdicts is not None:
        # Below the plot: inside it could hide a point (the best one, often at the edge).
        ax.legend(title="verdict vs the best", fontsize=8, title_fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.12), ncol=len(VERDICT_MARKERS) + 1)
    ax.set_xlabel(x_axis.replace("_", " ") + (" (log scale)" if x_axis in ranges and next(iter(ranges[x_axis])) == "log_uniform" else ""))
    ax.set_ylabel(y_axis.replace("_", " ") + (" (log scale)" if y_axis in ranges and next(iter(ranges[y_axis])) == "log_uniform" else ""))
    others = [a for a in keys if a not in ("model", x_axis, y_axis) and rows[a].nunique() > 1]
    ax.set_title(f"{model}: {len(rows)} sampled grid points, one dot each (a scatter, not a heatmap: the points share "
                 f"no cells)" + (f"; {', '.join(a.replace('_', ' ') for a in others)} vary too" if others else ""),
                 fontsize=9, wrap=True)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def factor_trends(summary: pd.DataFrame, trends: pd.DataFrame, bins: pd.DataFrame, ranges: dict, path, *,
                  metric: str) -> None:
    """The ranged axes of a sampled grid, one panel each: every grid point's mean of `metric`
    over its folds against its value of the axis (log scale for log_uniform), the quantile bins'
    means with their 95% intervals (factor_bins.tsv) as bars across each bin's values, and the
    rank correlation with its interval in the title (factor_trends.tsv)."""
    mean_column = summary_columns(metric)[0]
    scale = 100 if get_metric(metric).percent else 1
    unit = "%" if get_metric(metric).percent else "nats"
    if trends.empty:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.text(0.5, 0.5, "no axis of this sampled grid is drawn from a range", ha="center", va="center")
        ax.axis("off")
    else:
        fig, axes_grid = plt.subplots(1, len(trends), figsize=(4.6 * len(trends), 4), squeeze=False, sharey=True)
        for ax, (_, trend) in zip(axes_grid.flat, trends.iterrows()):
            axis = trend["factor"]
            if next(iter(ranges[axis])) == "log_uniform":
                ax.set_xscale("log")
            ax.scatter(summary[axis].astype(float), scale * summary[mean_column], s=18, color="tab:blue", alpha=0.7,
                       label="grid point (mean over its folds)")
            for _, b in bins[bins["factor"] == axis].iterrows():
                ax.hlines(scale * b["mean"], b["value_low"], b["value_high"], color="black", lw=2)
                middle = (np.sqrt(b["value_low"] * b["value_high"]) if ax.get_xscale() == "log"
                          else (b["value_low"] + b["value_high"]) / 2)
                if np.isfinite(b["ci_low"]):
                    ax.vlines(middle, scale * b["ci_low"], scale * b["ci_high"], color="black", lw=1)
            rho = ("ρ not computed" if not np.isfinite(trend["rho"]) else
                   f"Spearman ρ = {trend['rho']:+.2f} [{trend['ci_low']:+.2f}, {trend['ci_high']:+.2f}]")
            ax.set_title(f"{axis.replace('_', ' ')}: {rho}", fontsize=9)
            ax.set_xlabel(axis.replace("_", " ") + (" (log scale)" if ax.get_xscale() == "log" else ""))
            ax.grid(alpha=0.3)
        axes_grid.flat[0].set_ylabel(f"mean {get_metric(metric).label} ({unit})")
        fig.suptitle(f"{int(trends['points'].iloc[0])} sampled grid points (dots); black: mean of the points in each "
                     "bin of drawn values, with its 95% t interval; ρ: rank correlation with 95% bootstrap interval "
                     "over the points (an association, not a causal effect)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def confusion(predictions: pd.DataFrame, class_names: list[str], title: str, path) -> None:
    """Confusion matrix of pooled out-of-fold predictions (rows: true class)."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(predictions["true"], predictions["predicted"], labels=range(len(class_names)))
    size = 1.5 + 0.45 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", xticklabels=class_names, yticklabels=class_names,
                cbar=False, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def learning_curves(histories: pd.DataFrame, title: str, path) -> None:
    """Train and validation loss and accuracy per epoch, one line per fold."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (repeat, fold), h in histories.groupby(["repeat", "fold"]):
        for ax, metric in zip(axes, ("loss", "accuracy")):
            line, = ax.plot(h["epoch"], h[f"train_{metric}"], lw=1, alpha=0.8)
            ax.plot(h["epoch"], h[f"val_{metric}"], lw=1, ls="--", color=line.get_color(),
                    label=f"r{repeat} f{fold}")
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, title="solid: train, dashed: validation", title_fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def error_gallery(images: np.ndarray, errors: pd.DataFrame, class_names: list[str], title: str, path, *,
                  limit: int = 24) -> None:
    """The test images the model gets wrong (pooled over folds), most confident first."""
    errors = errors.sort_values("probability", ascending=False).head(limit)
    columns = 8
    rows = max(1, int(np.ceil(len(errors) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, errors.itertuples()):
        ax.imshow(images[row.sample])
        ax.set_title(f"{class_names[row.true]}→{class_names[row.predicted]} ({row.probability:.2f})", fontsize=7)
    if errors.empty:
        axes[0, 0].text(0, 0.5, "no test image was misclassified", fontsize=9)
    fig.suptitle(f"{title}: true→predicted (probability)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def protocol_comparison(table: pd.DataFrame, primary: str, compared: str, path) -> None:
    """Each grid point's mean accuracy (+- 2 x std) under two CV protocols, best (primary) on top
    (cvgrid.protocols.compare_protocols' table). A point the race stopped under a protocol has
    no dot for it (a mean over its first folds is not comparable) and says so in its label."""
    names = {"primary": primary, "compared": compared}
    complete = {side: table[f"race_{side}"] == COMPLETED if f"race_{side}" in table
                else pd.Series(True, index=table.index) for side in names}
    stopped = [" and ".join(names[side] for side in names if not complete[side][i]) for i in table.index]
    labels = [label + (f"\n(stopped: {where})" if where else "") for label, where in zip(point_labels(table), stopped)]
    y = np.arange(len(table))[::-1]
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.35 * len(table)))
    for side, offset, colour in (("primary", 0.12, "tab:blue"), ("compared", -0.12, "tab:orange")):
        ax.errorbar(100 * table[f"mean_accuracy_{side}"].where(complete[side]), y + offset,
                    xerr=100 * table[f"acc_std_x2_{side}"].where(complete[side]), fmt="o", color=colour, capsize=3,
                    label=names[side])
    ax.set_yticks(y, labels)
    ax.set_xlabel("mean test-fold accuracy (%) ± 2 × std")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    left_out = sum(1 for where in stopped if where)
    if left_out:
        fig.suptitle(textwrap.fill(f"{left_out} grid point(s) stopped early by the race: no dot under the protocol that"
                                   " stopped it (its mean is of its first folds only), and in neither the mean"
                                   " difference nor the rank correlation", 100), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
