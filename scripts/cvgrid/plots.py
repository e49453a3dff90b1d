"""Figures of the CV results (matplotlib/seaborn, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def heatmap(summary: pd.DataFrame, model: str, path) -> None:
    """Batch size x learning rate, one panel per augmentation policy; each cell the mean
    accuracy (%) and, below it, 2 x std. One colour scale for all panels."""
    rows = summary[summary["model"] == model]
    policies = sorted(rows["augmentation"].unique())
    vmin, vmax = 100 * rows["mean_accuracy"].min(), 100 * rows["mean_accuracy"].max()
    fig, axes = plt.subplots(1, len(policies), figsize=(4.2 * len(policies) + 1, 3.6), squeeze=False)
    for ax, policy in zip(axes[0], policies):
        part = rows[rows["augmentation"] == policy]
        mean = part.pivot(index="batch_size", columns="learning_rate", values="mean_accuracy") * 100
        spread = part.pivot(index="batch_size", columns="learning_rate", values="acc_std_x2") * 100
        labels = mean.map(lambda v: f"{v:.1f}") + "\n±" + spread.map(lambda v: f"{v:.1f}")
        sns.heatmap(mean, annot=labels.to_numpy(), fmt="", cmap="viridis", vmin=vmin, vmax=vmax,
                    cbar=ax is axes[0][-1], cbar_kws={"label": "mean accuracy (%)"}, ax=ax)
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
