"""Figures of the CV results (matplotlib/seaborn, no display needed)."""

from __future__ import annotations

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
from cvgrid.metrics import get_metric, summary_columns, to_score  # noqa: E402
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


def fold_accuracies(folds: pd.DataFrame, summary: pd.DataFrame, path) -> None:
    """Every fold's accuracy per grid point (dots) and the mean (bar), best grid point on top;
    the MAX_FOLD_PLOT_POINTS best grid points of a bigger grid."""
    left_out = max(len(summary) - MAX_FOLD_PLOT_POINTS, 0)
    summary = summary.head(MAX_FOLD_PLOT_POINTS)  # cv_summary.tsv is ordered best first
    labels = point_labels(summary)
    order = list(labels)
    data = folds.merge(summary[axes_of(summary)].assign(point=labels))
    data = data.assign(accuracy_pct=100 * data["accuracy"])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(order)))
    sns.pointplot(data=data, y="point", x="accuracy_pct", order=order, errorbar=None, linestyle="none",
                  markers="|", markersize=14, color="black", ax=ax)
    sns.stripplot(data=data, y="point", x="accuracy_pct", order=order, hue="fold", palette="tab10",
                  size=5, jitter=0.15, ax=ax)
    ax.set_xlabel("test-fold accuracy (%)  —  bar: mean")
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


def parallel_coordinates(summary: pd.DataFrame, path, *, metric: str) -> None:
    """The whole grid: one line per grid point through its settings to its mean of `metric`
    (statistics.metric), coloured by its score (categorical axes are spaced evenly, numbers in
    order; for log-loss the better, lower values are at the top)."""
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
        ticks = (positions[name].items() if name in positions
                 else [(f"{sign * scale * (low + f * span):.{1 if scale == 100 else 3}f}{unit}", f) for f in (0, 0.5, 1)])
        for label, y in ticks:
            ax.text(i + 0.03, y, f"{label:g}" if isinstance(label, float) else str(label), fontsize=8, va="center")
    ax.set_xticks(range(len(axes_names)), [name.replace("_", " ") for name in axes_names[:-1]]
                  + [f"mean {get_metric(metric).label}"])
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    values = sorted((sign * scale * low, sign * scale * high))
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(*values), cmap=cmap if sign > 0 else cmap.reversed()),
                 ax=ax, label=f"mean {get_metric(metric).label} ({unit.strip()})")
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
    """Each grid point's mean accuracy (+- 2 x std) under two CV protocols, best (primary) on top."""
    labels = point_labels(table)
    y = np.arange(len(table))[::-1]
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.35 * len(table)))
    for side, label, offset, colour in (("primary", primary, 0.12, "tab:blue"), ("compared", compared, -0.12, "tab:orange")):
        ax.errorbar(100 * table[f"mean_accuracy_{side}"], y + offset, xerr=100 * table[f"acc_std_x2_{side}"],
                    fmt="o", color=colour, capsize=3, label=label)
    ax.set_yticks(y, labels)
    ax.set_xlabel("mean test-fold accuracy (%) ± 2 × std")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
