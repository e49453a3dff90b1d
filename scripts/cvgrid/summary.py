"""Gather the training jobs' metrics.json files into CV statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cvgrid.grid import GRID_KEYS, axes_of

# Each metrics.json must have these, or the gather step names the file and stops.
REQUIRED_METRICS = ("accuracy", "loss", "epochs_run", "best_epoch", "n_train", "n_validation", "n_test", "config")


class MetricsError(ValueError):
    pass


def read_metrics(path: str | Path) -> dict:
    """One job's metrics.json, checked; a malformed file is named in the error."""
    try:
        metrics = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise MetricsError(f"cannot read metrics file {path}: {error}") from error
    if not isinstance(metrics, dict):
        raise MetricsError(f"metrics file {path} is not a JSON object")
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        raise MetricsError(f"metrics file {path} lacks {missing}")
    accuracy = metrics["accuracy"]
    if not isinstance(accuracy, (int, float)) or not 0.0 <= accuracy <= 1.0:
        raise MetricsError(f"metrics file {path} has accuracy {accuracy!r}, not a number in [0, 1]")
    return metrics


def planned_metrics(listing: str | Path) -> list[Path]:
    """The metrics.json files a gather step reads: those named in `listing` (one path a line,
    written by the workflow from the planned jobs), never a walk of the folders, which could
    hold stray jobs of an earlier grid. A planned file that does not exist is named."""
    try:
        paths = [Path(line) for line in Path(listing).read_text().splitlines() if line.strip()]
    except OSError as error:
        raise MetricsError(f"cannot read the list of training jobs {listing}: {error}") from error
    if not paths:
        raise MetricsError(f"the list of training jobs {listing} names no metrics.json file")
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MetricsError(f"{len(missing)} of the {len(paths)} training jobs listed in {listing}"
                           f" have no metrics.json: {shown}")
    return paths


def fold_table(metrics_paths, axes=GRID_KEYS) -> pd.DataFrame:
    """One row per training job: the grid's axes (cvgrid.grid.grid_axes of the config), repeat,
    fold, accuracy, and run facts.

    ``n_train``, ``n_validation`` and ``n_test`` mean what they mean in metrics.json: the
    images the network was fitted on, its early-stopping part, the scored test fold."""
    rows = []
    for path in metrics_paths:
        m = read_metrics(path)
        c = m["config"]
        missing = [key for key in axes if key not in c]
        if missing:
            raise MetricsError(f"metrics file {path} has no setting {missing[0]!r} (an axis of this grid) in its config")
        rows.append({
            **{key: c[key] for key in axes},
            "repeat": c["repeat"], "fold": c["fold"],
            "accuracy": m["accuracy"], "loss": m["loss"],
            # Training loss NaN/inf: the fold was scored with its best weights before that epoch.
            "diverged": bool(m.get("diverged", False)),
            "epochs_run": m["epochs_run"], "best_epoch": m["best_epoch"],
            "n_train": m["n_train"], "n_validation": m["n_validation"], "n_test": m["n_test"],
            "seconds": m.get("seconds"), "images_per_second": m.get("images_per_second"),
            "precision": m.get("precision"), "device": m.get("device"),
        })
    table = pd.DataFrame(rows)
    return table.sort_values([*axes, "repeat", "fold"], ignore_index=True)


# The spread of a grid point's fold accuracies: numpy's default std (ddof=0), as in the
# reference study and scikit-learn's GridSearchCV (std_test_score), so the figures compare.
# 2 x std is the fold spread, not a confidence interval of the mean.
STD_DDOF = 0


def point_summary(folds: pd.DataFrame, keys=None) -> pd.DataFrame:
    """THE summary of each grid point, used by cv_summary.tsv, the statistics, the written
    summary and refit_best: ``mean_accuracy`` over all (repeat, fold) pairs, ``acc_std_x2``
    (2 x std, ddof=STD_DDOF), ``folds`` (number of pairs) and ``rank`` within its model (1 =
    the model's best). Rows best first; equal means are ordered by the grid keys (smallest
    batch size, learning rate, ... first), so a model's best is always one and the same point.
    `keys`: the grid's axes, by default those among the table's columns."""
    keys = axes_of(folds) if keys is None else list(keys)
    grouped = folds.groupby(keys, sort=False)["accuracy"]
    summary = grouped.agg(mean_accuracy="mean", acc_std_x2=lambda a: 2 * a.std(ddof=STD_DDOF),
                          folds="size").reset_index()
    summary = summary.sort_values(["mean_accuracy", *keys], ascending=[False] + [True] * len(keys),
                                  ignore_index=True)
    summary["rank"] = summary.groupby("model", sort=False).cumcount() + 1
    return summary


def cv_summary(folds: pd.DataFrame) -> pd.DataFrame:
    """cv_summary.tsv: :func:`point_summary`, then mean epochs, training minutes and each
    fold's accuracy (``acc_r<repeat>_f<fold>``)."""
    keys = axes_of(folds)
    summary = point_summary(folds, keys).set_index(keys)
    grouped = folds.groupby(keys, sort=False)
    summary["mean_epochs"] = grouped["epochs_run"].mean()
    summary["minutes"] = grouped["seconds"].sum() / 60
    per_fold = folds.pivot_table(index=keys, columns=["repeat", "fold"], values="accuracy", sort=False)
    per_fold.columns = [f"acc_r{r}_f{f}" for r, f in per_fold.columns]
    return summary.join(per_fold).reset_index()


def fold_columns(summary: pd.DataFrame) -> list[str]:
    """The per-fold accuracy columns of cv_summary.tsv, repeat by repeat, fold by fold."""
    return [c for c in summary.columns if str(c).startswith("acc_r")]


def complete_points(folds: pd.DataFrame, pairs: int, keys=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the grid points that have all `pairs` (repeat, fold) pairs, and the grid
    points that do not (keys and the number of pairs they have): paired statistics need the
    same folds for every point, so a grid that is still running is summarised over its
    finished points only, and the unfinished ones are named."""
    keys = axes_of(folds) if keys is None else list(keys)
    counts = folds.groupby(keys, sort=True).size().rename("pairs").reset_index()
    done = counts["pairs"] == pairs
    finished = folds.merge(counts.loc[done, keys], on=keys)
    return finished.sort_values([*keys, "repeat", "fold"], ignore_index=True), counts.loc[~done].reset_index(drop=True)


def best_points(summary: pd.DataFrame) -> pd.DataFrame:
    """The best grid point of each model (rank 1 of :func:`point_summary`), by model name."""
    return summary[summary["rank"] == 1].sort_values("model", ignore_index=True)


def compare_protocols(primary: pd.DataFrame, compared: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The same grid under two CV protocols: each grid point's mean and 2 x std under both,
    the difference (compared - primary) and its rank under both. The folds differ between
    protocols, so the differences are not paired; the facts dict says whether the ranking
    changes (Spearman correlation of the means, same best grid point or not)."""
    from scipy.stats import spearmanr

    keys = axes_of(primary)
    columns = [*keys, "mean_accuracy", "acc_std_x2"]
    table = primary[columns].merge(compared[columns], on=keys, suffixes=("_primary", "_compared"))
    if len(table) != len(primary) or len(table) != len(compared):
        raise MetricsError("the two protocols' summaries do not hold the same grid points")
    table["difference"] = table["mean_accuracy_compared"] - table["mean_accuracy_primary"]
    for side in ("primary", "compared"):
        table[f"rank_{side}"] = table[f"mean_accuracy_{side}"].rank(ascending=False, method="min").astype(int)
    table = table.sort_values("rank_primary", kind="stable", ignore_index=True)
    best_primary = table.loc[table["rank_primary"].idxmin(), keys].to_dict()
    best_compared = table.loc[table["rank_compared"].idxmin(), keys].to_dict()
    # Rank correlation needs three grid points or more; None (JSON null) below that.
    rho = float(spearmanr(table["mean_accuracy_primary"], table["mean_accuracy_compared"]).statistic) if len(table) > 2 else None
    facts = {
        "mean_difference": float(table["difference"].mean()),
        "spearman_rank_correlation": rho,
        "same_best": best_primary == best_compared,
        "best_primary": best_primary,
        "best_compared": best_compared,
    }
    return table, facts
