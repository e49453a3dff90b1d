"""One training job: read the prepared data and the fold table, fit, write the results.

Results (metrics.json, history.tsv, predictions.tsv) are written only after the fit has
finished, each atomically and metrics.json last, so a killed job leaves no result behind,
only its checkpoint, from which the next attempt resumes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from cvgrid import hardware
from cvgrid.data import load_prepared
from cvgrid.folds import split_indices
from cvgrid.io import write_json, write_tsv
from cvgrid.training import TrainSettings, fit

log = logging.getLogger(__name__)


class Terminated(SystemExit):
    """SIGTERM (SLURM's time limit or preemption): leave the last epoch's checkpoint, exit 143."""


def _raise_terminated(signum, frame):
    raise Terminated(128 + signum)


def run(
    settings: TrainSettings,
    images_path: Path,
    index_path: Path,
    folds_path: Path,
    metrics_path: Path,
    history_path: Path,
    predictions_path: Path,
    checkpoint_path: Path | None = None,
    precision: str = "auto",
    device: str = "auto",
    threads: int | None = None,
) -> dict:
    signal.signal(signal.SIGTERM, _raise_terminated)
    if threads:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    torch_device = hardware.training_device(device)
    chosen_precision = hardware.choose_precision(torch_device, precision)

    images, index = load_prepared(images_path, index_path)
    folds = pd.read_csv(folds_path, sep="\t")
    split = split_indices(folds, settings.repeat, settings.fold)
    num_classes = int(index["label"].max()) + 1
    log.info("%s on %s (%s); %s", settings.label(), torch_device, chosen_precision,
             {role: len(ix) for role, ix in split.items()})

    result = fit(images, index["label"].to_numpy(), split, num_classes, settings,
                 torch_device, chosen_precision, checkpoint_path)

    test = index.iloc[split["test"]]
    probs = result.test_probabilities
    predictions = pd.DataFrame({
        "sample": test["sample"].to_numpy(),
        "file": test["file"].to_numpy(),
        "true": test["label"].to_numpy(),
        "predicted": probs.argmax(1),
        "probability": probs.max(1).round(6),
    })
    metrics = {
        "accuracy": result.test_accuracy,
        "loss": result.test_loss,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_accuracy": float(result.history["val_accuracy"].max()),
        "seconds": round(result.seconds, 3),
        "train_seconds": round(result.train_seconds, 3),
        "images_per_second": round(result.images_trained / result.train_seconds, 1),
        "resumed_from_epoch": result.resumed_from_epoch,
        "n_train": len(split["train"]),
        "n_validation": len(split["validation"]),
        "n_test": len(split["test"]),
        "precision": chosen_precision,
        # Which SLURM job ran this fold (None outside SLURM): ties a result to its scheduler record.
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        **hardware.describe(torch_device),
        "config": {**asdict(settings), "precision_requested": precision,
                   "images": str(images_path), "folds": str(folds_path)},
    }
    write_tsv(result.history, history_path)
    write_tsv(predictions, predictions_path)
    write_json(metrics, metrics_path)
    if checkpoint_path is not None:
        Path(checkpoint_path).unlink(missing_ok=True)
    return metrics


def configure_logging() -> None:
    """Progress to stderr, which the rule sends to the job's log."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
