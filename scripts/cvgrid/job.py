"""A training job: what a CV fold (`run_fold`) and the final refit (cvgrid.final.refit) do
around their fit, written once (`training_job`).

Results are written only after the fit has finished, each atomically, so a killed job leaves
no result behind, only its checkpoint, from which the next attempt resumes; the checkpoint
is deleted once the results are written.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cvgrid import hardware
from cvgrid.data import DataError, class_names, load_prepared
from cvgrid.folds import FoldError, split_indices
from cvgrid.io import write_json, write_tsv
from cvgrid.training import CheckpointError, FoldResult, TrainSettings, fit
from cvgrid.weights import WeightsError

log = logging.getLogger(__name__)

# Errors that name a bad input (file, key, value): a script prints them as one line.
INPUT_ERRORS = (DataError, FoldError, WeightsError, CheckpointError, hardware.CudaUnusable)


class Terminated(SystemExit):
    """SIGTERM (SLURM's time limit or preemption): leave the last epoch's checkpoint, exit 143."""


def _raise_terminated(signum, frame):
    raise Terminated(128 + signum)


@dataclass
class TrainingJob:
    """The device, the precision and the data of a running training job."""

    device: torch.device
    precision: str  # what is used: fp32, bf16 or fp16
    precision_requested: str  # the config's: auto or fp32
    images: np.ndarray
    index: pd.DataFrame
    class_names: list[str]
    checkpoint_path: Path | None

    def fit(self, settings: TrainSettings, split: dict[str, np.ndarray]) -> FoldResult:
        log.info("%s on %s (%s); %s", settings.label(), self.device, self.precision,
                 {role: len(ix) for role, ix in split.items()})
        return fit(self.images, self.index["label"].to_numpy(), split, len(self.class_names), settings,
                   self.device, self.precision, self.checkpoint_path)


@contextmanager
def training_job(images_path: Path, index_path: Path, checkpoint_path: Path | None, precision: str,
                 device: str, threads: int):
    """Set up a training job and yield it; once the block has written its results, delete the
    checkpoint. SIGTERM exits with 143 and keeps the checkpoint."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    torch_device = hardware.training_device(device)  # never a silent CPU fallback where a GPU was asked for
    images, index = load_prepared(images_path, index_path)
    yield TrainingJob(
        device=torch_device,
        precision=hardware.choose_precision(torch_device, precision),
        precision_requested=precision,
        images=images,
        index=index,
        class_names=class_names(index),
        checkpoint_path=checkpoint_path,
    )
    if checkpoint_path is not None:
        Path(checkpoint_path).unlink(missing_ok=True)


def run_fold(
    settings: TrainSettings,
    images_path: Path,
    index_path: Path,
    folds_path: Path,
    out_dir: Path,
    checkpoint_path: Path | None,
    precision: str,
    device: str,
    threads: int,
) -> dict:
    """Train one CV fold; write out_dir/{history.tsv, predictions.tsv, metrics.json} (metrics last)."""
    with training_job(images_path, index_path, checkpoint_path, precision, device, threads) as job:
        split = split_indices(pd.read_csv(folds_path, sep="\t"), settings.repeat, settings.fold)
        result = job.fit(settings, split)

        test = job.index.iloc[split["test"]]
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
            "precision": job.precision,
            # Which SLURM job ran this fold (None outside SLURM): ties a result to its scheduler record.
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            **hardware.describe(job.device),
            "config": {**asdict(settings), "precision_requested": precision,
                       "images": str(images_path), "folds": str(folds_path)},
        }
        out_dir = Path(out_dir)
        write_tsv(result.history, out_dir / "history.tsv")
        write_tsv(predictions, out_dir / "predictions.tsv")
        write_json(metrics, out_dir / "metrics.json")
    return metrics


def configure_logging() -> None:
    """Progress to stderr, which the rule sends to the job's log."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
