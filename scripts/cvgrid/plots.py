"""Figures of the CV results (matplotlib/seaborn, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


# How a cell of the heatmap marks its grid point's verdict against the model's best.
VERDICT_MARKS = {"best": "best", "worse": "worse", "practically equivalent": "equiv.", "undecided": "?"}


def heatmap(summary: pd.DataFrame, model: str, path, verdicts: pd.DataFrame | None = None) -> None:
    """Batch size x learning rate, one panel per augmentation policy; each cell the mean
    accuracy (%), below it the fold spread (± 2 x std) and, with `verdicts`
    (compare_to_best.tsv), the grid point's verdict against the model's best (VERDICT_MARKS).
    One colour scale for all panels."""
    keys = ["model", "batch_size", "learning_rate", "augmentation"]
    rows = summary[summary["model"] == model]
    if verdicts is not None:
        rows = rows.merge(verdicts[keys + ["verdict"]], on=keys, how="left")
    policies = sorted(rows["augmentation"].unique())
    vmin, vmax = 100 * rows["mean_accuracy"].min(), 100 * rows["mean_accuracy"].max()
    fig, axes = plt.subplots(1, len(policies), figsize=(4.2 * len(policies) + 1, 3.6), squeeze=False)
    for ax, policy in zip(axes[0], policies):
        part = rows[rows["augmentation"] == policy]
        mean = part.pivot(index="batch_size", columns="learning_rate", values="mean_accuracy") * 100
        spread = part.pivot(index="batch_size", columns="learning_rate", values="acc_std_x2") * 100
        labels = mean.map(lambda v: f"{v:.1f}") + "\n±" + spread.map(lambda v: f"{v:.1f}")
        if verdicts is not None:
            marks = part.pivot(index="batch_size", columns="learning_rate", values="verdict")
            labels = labels + "\n" + marks.map(lambda v: VERDICT_MARKS.get(v, ""))
        sns.heatmap(mean, annot=labels.to_numpy(), fmt="", cmap="viridis", vmin=vmin, vmax=vmax,
                    cbar=ax is axes[0][-1], cbar_kws={"label": "mean accuracy (%)"}, ax=ax,
                    annot_kws={"fontsize": 8})
        ax.set_title(f"{model}, augmentation: {policy}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("batch size")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fold_accuracies(folds: pd.DataFrame, summary: pd.DataFrame, path) -> None:
    """Every fold's accuracy per grid point (dots) and the mean (bar), best grid point on top."""
    labels = summary.apply(
        lambda r: f"{r.model} bs={r.batch_size} lr={r.learning_rate:g} aug={r.augmentation}", axis=1
    )
    order = list(labels)
    data = folds.merge(summary[["model", "batch_size", "learning_rate", "augmentation"]].assign(point=labels))
    data = data.assign(accuracy_pct=100 * data["accuracy"])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.32 * len(order)))
    sns.pointplot(data=data, y="point", x="accuracy_pct", order=order, errorbar=None, linestyle="none",
                  markers="|", markersize=14, color="black", ax=ax)
    sns.stripplot(data=data, y="point", x="accuracy_pct", order=order, hue="fold", palette="tab10",
                  size=5, jitter=0.15, ax=ax)
    ax.set_xlabel("test-fold accuracy (%)  —  bar: mean")
    ax.set_ylabel("")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
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
    fig.savefig(path)
    plt.close(fig)


def parallel_coordinates(summary: pd.DataFrame, path) -> None:
    """The whole grid: one line per grid point through its settings to its mean accuracy,
    coloured by that accuracy (categorical axes are spaced evenly, numbers in order)."""
    axes_names = ["model", "batch_size", "learning_rate", "augmentation", "mean_accuracy"]
    positions = {}
    for name in axes_names[:-1]:
        levels = sorted(summary[name].unique())
        positions[name] = {v: i / max(len(levels) - 1, 1) for i, v in enumerate(levels)}
    low, high = summary["mean_accuracy"].min(), summary["mean_accuracy"].max()
    span = (high - low) or 1.0
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for row in summary.sort_values("mean_accuracy").itertuples():
        ys = [positions[n][getattr(row, n)] for n in axes_names[:-1]] + [(row.mean_accuracy - low) / span]
        ax.plot(range(len(axes_names)), ys, color=cmap((row.mean_accuracy - low) / span), alpha=0.8, lw=1.5)
    for i, name in enumerate(axes_names):
        ax.axvline(i, color="black", lw=0.8)
        ticks = (positions[name].items() if name in positions
                 else [(f"{100 * (low + f * span):.1f}%", f) for f in (0, 0.5, 1)])
        for label, y in ticks:
            ax.text(i + 0.03, y, f"{label:g}" if isinstance(label, float) else str(label), fontsize=8, va="center")
    ax.set_xticks(range(len(axes_names)), ["model", "batch size", "learning rate", "augmentation", "mean accuracy"])
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(100 * low, 100 * high), cmap=cmap), ax=ax,
                 label="mean accuracy (%)")
    fig.tight_layout()
    fig.savefig(path)
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
    fig.savefig(path)
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
    fig.savefig(path)
    plt.close(fig)


def error_gallery(images: np.ndarray, errors: pd.DataFrame, class_names: list[str], title: str, path,
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def protocol_comparison(table: pd.DataFrame, primary: str, compared: str, path) -> None:
    """Each grid point's mean accuracy (+- 2 x std) under two CV protocols, best (primary) on top."""
    labels = table.apply(
        lambda r: f"{r.model} bs={r.batch_size} lr={r.learning_rate:g} aug={r.augmentation}", axis=1
    )
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
    fig.savefig(path)
    plt.close(fig)
