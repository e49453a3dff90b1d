"""The metrics a fold is scored by, from its predictions.tsv (no retraining), and the one
table of what each means: its direction (higher or lower is better), label and units.

Every metric is computed by scikit-learn's own function. The statistics work on a
*score* where higher is always better (:func:`to_score`); a score goes back to the metric's
own values for display with :func:`from_score`. Those two functions are the only place a
metric's direction is handled. A difference of scores has the magnitude of the difference of
the metric's values, so a ROPE or a gap keeps the metric's own units.

Log-loss needs every class's probability. A predictions.tsv written before the per-class
probabilities were recorded (``probability_<label>`` columns, one per class of the data set)
holds only the predicted class's probability: its log-loss is unavailable (NaN, and
:func:`unavailable` names such folds), never estimated from what is there."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

# The columns every predictions.tsv has (cvgrid.job writes them): label indices 0..K-1.
PREDICTION_COLUMNS = ("sample", "file", "true", "predicted", "probability")
# One column per class (label k) of the data set with its predicted probability.
CLASS_PROBABILITY_PREFIX = "probability_"
# cv_folds.tsv's per-class recall columns: RECALL_PREFIX + the class name (its folder).
RECALL_PREFIX = "recall_"


@dataclass(frozen=True)
class Metric:
    name: str  # the column of cv_folds.tsv and the value of statistics.metric
    label: str  # what the written summary and the plots call it
    higher_is_better: bool
    units: str  # what one unit of it is: a ROPE or a gap is stated in these units
    percent: bool  # shown in percent (a share of 0..1), else as it is


METRICS = {
    "accuracy": Metric("accuracy", "accuracy", True, "share of the test images classified correctly (0 to 1)", True),
    "balanced_accuracy": Metric("balanced_accuracy", "balanced accuracy", True,
                                "mean over the classes of the share of each class's test images found (0 to 1)", True),
    "macro_f1": Metric("macro_f1", "macro-F1", True, "mean over the classes of the F1 score (0 to 1)", True),
    "log_loss": Metric("log_loss", "log-loss", False,
                       "mean negative log-probability of the true class, in nats per test image (0 = certain and right)",
                       False),
}


class PredictionsError(ValueError):
    """A predictions.tsv that cannot be scored (the caller names the file)."""

    pass


def get_metric(name: str) -> Metric:
    """The metric `name` (statistics.metric), or an error that lists the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r} (known: {', '.join(METRICS)})") from None


def to_score(metric: str, values):
    """The metric's values as a score where higher is better: the values themselves, or their
    negation for a metric where lower is better (log-loss). Differences keep their magnitude."""
    return values if get_metric(metric).higher_is_better else -values


def from_score(metric: str, scores):
    """The inverse of :func:`to_score`: scores back to the metric's own values, for display."""
    return to_score(metric, scores)  # negation is its own inverse


def better_word(metric: str) -> str:
    """'higher' or 'lower': which way the metric is better, for the written summary."""
    return "higher" if get_metric(metric).higher_is_better else "lower"


def format_value(metric: str, value: float, digits: int = 1) -> str:
    """A value (or a difference, a ROPE) of the metric in its units: 97.3% or 0.085 nats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unavailable"
    if get_metric(metric).percent:
        return f"{100 * value:.{digits}f}%"
    return f"{value:.{digits + 2}f} nats"


def summary_columns(metric: str) -> tuple[str, str]:
    """cv_summary.tsv's mean and fold-spread (2 x std) columns of a metric. Accuracy keeps the
    published names (mean_accuracy, acc_std_x2)."""
    if metric == "accuracy":
        return "mean_accuracy", "acc_std_x2"
    return f"mean_{metric}", f"{metric}_std_x2"


def fold_prefix(metric: str) -> str:
    """The prefix of cv_summary.tsv's per-fold columns of a metric (``acc_r0_f0`` for
    accuracy, as published; ``balanced_accuracy_r0_f0`` for another statistics.metric)."""
    return "acc" if metric == "accuracy" else metric


def class_probabilities(predictions: pd.DataFrame) -> np.ndarray | None:
    """The N x K matrix of every class's probability, from the ``probability_0..K-1`` columns,
    or None where the file has only the predicted class's probability."""
    columns = [c for c in predictions.columns if str(c).startswith(CLASS_PROBABILITY_PREFIX)]
    if not columns:
        return None
    labels = sorted(int(c[len(CLASS_PROBABILITY_PREFIX):]) for c in columns)
    if labels != list(range(len(labels))):
        raise PredictionsError(f"class probability columns are not {CLASS_PROBABILITY_PREFIX}0..{len(labels) - 1}: {columns}")
    return predictions[[f"{CLASS_PROBABILITY_PREFIX}{k}" for k in labels]].to_numpy(dtype=float)


def class_names(predictions: pd.DataFrame) -> dict[int, str]:
    """Label -> class name of the classes in a fold's test part: the class folder, the first
    part of ``file`` (relative to data_dir, CLASS_NAME/...)."""
    folders = predictions["file"].map(lambda f: PurePosixPath(f).parts[0])
    names = pd.Series(folders.to_numpy(), index=predictions["true"].to_numpy()).groupby(level=0).unique()
    clash = {int(k): list(v) for k, v in names.items() if len(v) != 1}
    if clash:
        raise PredictionsError(f"one label, several class folders: {clash}")
    return {int(k): str(v[0]) for k, v in names.items()}


def fold_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """Every metric of METRICS for one fold's predictions (a predictions.tsv), and the recall
    of each class present in its test part (``recall_<class name>``). Log-loss is NaN where
    the file lacks the per-class probabilities (see the module's docstring)."""
    from sklearn.metrics import log_loss, precision_recall_fscore_support

    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise PredictionsError(f"lacks columns {missing}")
    if predictions.empty:
        raise PredictionsError("holds no predictions")
    y_true, y_pred = predictions["true"].to_numpy(), predictions["predicted"].to_numpy()
    # One scikit-learn call for every class-wise figure (a gather of 25,000 folds pays its input
    # checks once a fold, not four times), over the classes in the fold's truth or predictions,
    # as f1_score's macro average takes them. From it, exactly as scikit-learn defines them:
    # balanced accuracy is the mean recall over the classes the fold's truth has (a predicted
    # class the fold lacks has no recall); macro-F1 the mean F1, a class never predicted
    # counting 0, which is what macro-F1 is for.
    labels = np.union1d(y_true, y_pred)
    _, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0.0)
    present = support > 0
    values = {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1.mean()),
        "log_loss": math.nan,
    }
    probabilities = class_probabilities(predictions)
    if probabilities is not None:
        # The file rounds each probability; rows are rescaled to sum to one again.
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
        values["log_loss"] = float(log_loss(y_true, probabilities, labels=range(probabilities.shape[1])))
    recall_of = dict(zip(labels.tolist(), np.where(present, recall, np.nan)))
    names = class_names(predictions)
    values.update({f"{RECALL_PREFIX}{names[label]}": float(recall_of.get(label, np.nan)) for label in names})
    return values


def read_predictions(path) -> pd.DataFrame:
    """A predictions.tsv; an unreadable one raises PredictionsError (the caller names the file)."""
    try:
        return pd.read_csv(path, sep="\t", dtype={"file": str})
    except (OSError, ValueError) as error:
        raise PredictionsError(f"cannot be read: {error}") from error


def metric_columns(folds: pd.DataFrame) -> list[str]:
    """The metric columns of a fold table (cv_folds.tsv), in METRICS order, then the per-class
    recalls in the table's order."""
    return ([name for name in METRICS if name in folds.columns]
            + [c for c in folds.columns if str(c).startswith(RECALL_PREFIX)])


def unavailable(folds: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of a fold table whose `metric` is missing (log-loss of older predictions)."""
    if metric not in folds.columns:
        return folds
    return folds[folds[metric].isna()]


def unavailable_notes(folds: pd.DataFrame) -> list[str]:
    """One sentence per metric of METRICS that some folds of a fold table lack, saying why."""
    notes = []
    for name, metric in METRICS.items():
        missing = len(unavailable(folds, name))
        if not missing:
            continue
        why = (" (their predictions.tsv holds only the predicted class's probability: written before "
               "every class's probability was recorded; retraining them would give it)") if name == "log_loss" else ""
        notes.append(f"{metric.label} is unavailable for {missing} of {len(folds)} folds{why}; "
                     f"a grid point's mean and spread of it are then left empty")
    return notes
