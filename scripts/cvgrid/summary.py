"""Gather the training jobs' metrics.json files into CV statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cvgrid.grid import GRID_KEYS, axes_of
from cvgrid.metrics import (RECALL_PREFIX, PredictionsError, fold_metrics, fold_prefix, metric_columns,
                            read_predictions, summary_columns, to_score, from_score, get_metric, unavailable, unavailable_notes)

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


def prediction_metrics(metrics_path: Path, accuracy: float) -> dict[str, float]:
    """The metrics (cvgrid.metrics) of the predictions.tsv beside a job's metrics.json, except
    accuracy, which metrics.json has; a file that is missing, malformed or not the job's own
    (another accuracy) is named in the error."""
    path = Path(metrics_path).with_name("predictions.tsv")
    try:
        values = fold_metrics(read_predictions(path))
    except PredictionsError as error:
        raise MetricsError(f"predictions file {path}: {error}") from error
    # metrics.json keeps the accuracy as float32: the same count of correct images agrees to 1e-6.
    if abs(values["accuracy"] - accuracy) > 1e-6:
        raise MetricsError(f"predictions file {path} gives accuracy {values['accuracy']:.6f}, but {metrics_path} "
                           f"says {accuracy:.6f}: the two files are not from the same job")
    del values["accuracy"]
    return values


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
    fold, accuracy, and run facts, then the other metrics of its predictions.tsv
    (cvgrid.metrics: balanced accuracy, macro-F1, log-loss, each class's recall).

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
            # After the published columns, so that those keep their places: the GPU model (None
            # on a CPU) and the speed without the warm-up epoch (issue 25; older files lack both).
            "gpu": m.get("gpu"),
            "images_per_second_after_first_epoch": m.get("images_per_second_after_first_epoch"),
            **prediction_metrics(path, m["accuracy"]),
        })
    table = pd.DataFrame(rows)
    # Per-class recalls in label order (cvgrid.data numbers the classes in sorted folder order).
    recalls = sorted(c for c in table.columns if c.startswith(RECALL_PREFIX))
    table = table[[c for c in table.columns if c not in recalls] + recalls]
    return table.sort_values([*axes, "repeat", "fold"], ignore_index=True)


def mixed_hardware(folds: pd.DataFrame) -> pd.DataFrame:
    """The grid points whose folds ran on more than one device (GPU model, or CPU) or in more than
    one precision: one row each, its axes, ``devices`` and ``precisions`` (sorted, joined by
    ", "). Their folds' differences mix the setting with the hardware (bf16 against fp16, a
    cuDNN kernel choice). Empty where the table lacks the columns."""
    if "precision" not in folds or "device" not in folds:
        return pd.DataFrame()
    keys = axes_of(folds)
    gpu = folds["gpu"] if "gpu" in folds else pd.Series(None, index=folds.index)
    # A fold that does not say (an older metrics.json) counts as "unrecorded", not as a device;
    # fillna first: pandas 3's astype(str) keeps a missing value missing.
    where = gpu.where(gpu.notna(), folds["device"]).fillna("unrecorded").astype(str)
    table = folds.assign(_where=where, _precision=folds["precision"].fillna("unrecorded").astype(str))
    grouped = table.groupby(keys, sort=True)
    rows = pd.DataFrame({"devices": grouped["_where"].agg(lambda v: ", ".join(sorted(set(v)))),
                         "precisions": grouped["_precision"].agg(lambda v: ", ".join(sorted(set(v)))),
                         "n_where": grouped["_where"].nunique(), "n_precision": grouped["_precision"].nunique()})
    mixed = rows[(rows["n_where"] > 1) | (rows["n_precision"] > 1)]
    return mixed.drop(columns=["n_where", "n_precision"]).reset_index()


# The spread of a grid point's fold accuracies: numpy's default std (ddof=0), as in the
# reference study and scikit-learn's GridSearchCV (std_test_score), so the figures compare.
# 2 x std is the fold spread, not a confidence interval of the mean.
STD_DDOF = 0


def point_summary(folds: pd.DataFrame, keys=None, *, metric: str) -> pd.DataFrame:
    """THE summary of each grid point, used by cv_summary.tsv, the statistics, the written
    summary and refit_best: ``mean_accuracy`` over all (repeat, fold) pairs, ``acc_std_x2``
    (2 x std, ddof=STD_DDOF), ``folds`` (number of pairs) and ``rank`` within its model (1 =
    the model's best by `metric`, statistics.metric). Another metric than accuracy adds its
    mean and fold spread (cvgrid.metrics.summary_columns). Rows best first by the metric's
    score (cvgrid.metrics.to_score: lower log-loss is better); equal means are ordered by the
    grid keys (smallest batch size, learning rate, ... first), so a model's best is always one
    and the same point. `keys`: the grid's axes, by default those among the table's columns.

    Where points have different numbers of (repeat, fold) pairs (cv.decide added repeats to some),
    the points with more pairs come first, and the best is the best among the points with the
    most: means over different folds do not compare (a point left at its first repeat may owe
    a high mean to those folds alone), and cv.decide gives each round's best the next repeat,
    so the points with the most repeats are the best and the rivals it could not yet separate
    from it, compared on the same pairs. Every other point is then judged against that best on
    the pairs they share (cvgrid.stats.compare_to_best); where every point has the same pairs,
    this is the ranking by mean alone."""
    keys = axes_of(folds) if keys is None else list(keys)
    grouped = folds.groupby(keys, sort=False)
    summary = grouped["accuracy"].agg(mean_accuracy="mean", acc_std_x2=lambda a: 2 * a.std(ddof=STD_DDOF),
                                      folds="size")
    mean = summary_columns(metric)[0]
    if metric != "accuracy":
        missing = unavailable(folds, metric)
        if len(missing):
            notes = [note for note in unavailable_notes(missing) if note.startswith(get_metric(metric).label)]
            raise MetricsError(f"statistics.metric is {metric}, but {notes[0]}: choose another metric "
                               "or retrain those folds")
        summary[mean] = grouped[metric].mean()
        summary[summary_columns(metric)[1]] = grouped[metric].agg(lambda a: 2 * a.std(ddof=STD_DDOF))
    summary = summary.reset_index()
    summary = summary.assign(_score=to_score(metric, summary[mean]))
    summary = summary.sort_values(["folds", "_score", *keys], ascending=[False, False] + [True] * len(keys),
                                  ignore_index=True).drop(columns="_score")
    summary["rank"] = summary.groupby("model", sort=False).cumcount() + 1
    return summary


def cv_summary(folds: pd.DataFrame, *, metric: str) -> pd.DataFrame:
    """cv_summary.tsv: :func:`point_summary` (ranked by `metric`), then mean epochs, training minutes and each
    fold's accuracy (``acc_r<repeat>_f<fold>``), then the mean and fold spread (2 x std,
    ddof=STD_DDOF) of every other metric among the table's columns (cvgrid.metrics; NaN
    where a fold lacks it, so that a figure is always over all the point's folds)."""
    keys = axes_of(folds)
    summary = point_summary(folds, keys, metric=metric).set_index(keys)
    grouped = folds.groupby(keys, sort=False)
    summary["mean_epochs"] = grouped["epochs_run"].mean()
    summary["minutes"] = grouped["seconds"].sum() / 60
    per_fold = folds.pivot_table(index=keys, columns=["repeat", "fold"], values="accuracy", sort=False)
    per_fold.columns = [f"acc_r{r}_f{f}" for r, f in per_fold.columns]
    summary = summary.join(per_fold)
    if metric != "accuracy":  # the selection correction needs the metric's folds too
        per_fold = folds.pivot_table(index=keys, columns=["repeat", "fold"], values=metric, sort=False)
        per_fold.columns = [f"{fold_prefix(metric)}_r{r}_f{f}" for r, f in per_fold.columns]
        summary = summary.join(per_fold)
    for metric in metric_columns(folds):
        if metric == "accuracy":
            continue
        mean, spread = summary_columns(metric)
        summary[mean] = grouped[metric].agg(lambda a: a.mean(skipna=False))
        summary[spread] = grouped[metric].agg(lambda a: 2 * a.std(ddof=STD_DDOF, skipna=False))
    return summary.reset_index()


def fold_columns(summary: pd.DataFrame, metric: str) -> list[str]:
    """The per-fold columns of `metric` in cv_summary.tsv, repeat by repeat, fold by fold
    (accuracy's always; another statistics.metric's beside them)."""
    prefix = f"{fold_prefix(metric)}_r"
    return [c for c in summary.columns if str(c).startswith(prefix) and str(c)[len(prefix):len(prefix) + 1].isdigit()]


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


# The winner, corrected for being chosen: beside point_summary, whose best it corrects, so that
# the refit (cvgrid.final) reads it without the statistics.


def selection_corrected(scores: np.ndarray) -> dict:
    """Tibshirani & Tibshirani (2009) estimate of the winner's score, corrected for choosing it
    as the best of several on the same folds.

    `scores` is configurations x (repeat, fold) pairs of a score where higher is better (an
    accuracy, or cvgrid.metrics.to_score of another metric). The winner is the configuration
    with the highest mean (first of equal ones). On each pair, the best score of any
    configuration exceeds the winner's by some amount; the mean of those amounts estimates
    the optimism of choosing by the maximum, and is subtracted from the winner's mean.
    Returns ``winner`` (row index), ``raw_accuracy``, ``selection_bias`` and
    ``corrected_accuracy`` (in the score's units). With one configuration there is no
    selection: bias 0.
    """
    acc = np.asarray(scores, dtype=float)
    if acc.ndim != 2 or acc.size == 0:
        raise ValueError("accuracy must be a non-empty configurations x folds matrix")
    winner = int(np.argmax(acc.mean(axis=1)))
    raw = float(acc[winner].mean())
    bias = float(np.mean(acc.max(axis=0) - acc[winner]))
    return {"winner": winner, "raw_accuracy": raw, "selection_bias": bias, "corrected_accuracy": raw - bias}


def selected_points(summary: pd.DataFrame, keys=None, *, metric: str) -> pd.DataFrame:
    """Each model's best grid point by `metric` (statistics.metric), and the best of the whole
    grid, with its raw mean CV value of the metric and that value corrected for the selection
    (:func:`selection_corrected`), from cv_summary.tsv (:func:`cv_summary`: best first,
    per-fold columns).

    Columns: ``scope`` (a model's name, or ``all models``), ``candidates`` (grid points
    chosen among), the keys, ``raw_<metric>``, ``selection_bias`` (how much better than the
    truth the raw value looks: the metric's units, >= 0), ``corrected_<metric>``,
    ``fold_spread_x2`` (2 x std of the winner's fold values) and ``folds``. For accuracy:
    ``raw_accuracy`` and ``corrected_accuracy``, as published.
    """
    keys = axes_of(summary) if keys is None else list(keys)
    # The selection is corrected on the pairs every point has (cv.decide adds repeats to some:
    # cvgrid.stats.shared_pairs); ``folds`` says how many.
    metric_columns_ = [c for c in fold_columns(summary, metric) if summary[c].notna().all()]
    if not metric_columns_:
        raise ValueError("no (repeat, fold) is shared by every grid point: the selection needs the same folds")
    spread = summary_columns(metric)[1]
    scopes = [(model, summary[summary["model"] == model]) for model in sorted(summary["model"].unique())]
    if len(scopes) > 1:
        scopes.append(("all models", summary))
    rows = []
    for scope, part in scopes:
        part = part.reset_index(drop=True)
        est = selection_corrected(to_score(metric, part[metric_columns_].to_numpy()))
        winner = part.iloc[est["winner"]]
        rows.append({"scope": scope, "candidates": len(part), **{k: winner[k] for k in keys},
                     f"raw_{metric}": float(from_score(metric, est["raw_accuracy"])),
                     "selection_bias": est["selection_bias"],
                     f"corrected_{metric}": float(from_score(metric, est["corrected_accuracy"])),
                     "fold_spread_x2": float(winner[spread]), "folds": len(metric_columns_)})
    return pd.DataFrame(rows)


def best_points(summary: pd.DataFrame) -> pd.DataFrame:
    """The best grid point of each model (rank 1 of :func:`point_summary`), by model name."""
    return summary[summary["rank"] == 1].sort_values("model", ignore_index=True)
