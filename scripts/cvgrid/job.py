"""A training job: what the CV folds (`run_folds`) and the final refit (cvgrid.final.refit)
do around their fits, written once (`training_job`).

One job may train several folds of a grid point one after the other (training.folds_per_job),
loading torch, the device and the data once. Results are written only after a fold's fit has
finished, each atomically, so a killed job leaves no half-written result behind, only
checkpoints: the interrupted fold's last finished epoch, and the final state of each fold it
had finished, from which the next attempt scores those folds again without training them
(Snakemake deletes every output of a failed job). The job deletes its checkpoints once it has
written all its results.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cvgrid import hardware
from cvgrid.data import DataError, class_names, load_prepared
from cvgrid.folds import FoldError, split_indices
from cvgrid.io import write_json, write_tsv
from cvgrid.metrics import CLASS_PROBABILITY_PREFIX
from cvgrid.training import CheckpointError, FoldResult, SettingsError, TrainSettings, fit
from cvgrid.weights import WeightsError

log = logging.getLogger(__name__)

# Errors that name a bad input (file, key, value): a script prints them as one line.
INPUT_ERRORS = (DataError, FoldError, WeightsError, CheckpointError, SettingsError, hardware.CudaUnusable)


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
    images_path: Path
    images: np.ndarray
    index: pd.DataFrame
    class_names: list[str]
    checkpoint_seconds: float  # at most one checkpoint per fit in this many seconds (and at its end)
    tensorboard: bool  # training.tensorboard: each fit's curves as event files beside its history.tsv
    # Whether the images fit in the device's free memory; if not, they stay in (pinned) host
    # memory and go to the device batch by batch (hardware.fits_on_device, training.HostBatches).
    data_on_device: bool = True
    checkpoints: list[Path] = field(default_factory=list)  # of the fits so far, deleted at the job's end

    def fit(self, settings: TrainSettings, split: dict[str, np.ndarray], checkpoint_path: Path | None,
            out_dir: Path) -> FoldResult:
        log.info("%s on %s (%s); %s", settings.label(), self.device, self.precision,
                 {role: len(ix) for role, ix in split.items()})
        if checkpoint_path is not None:
            self.checkpoints.append(Path(checkpoint_path))
        return fit(self.images, self.index["label"].to_numpy(), split, len(self.class_names), settings,
                   device=self.device, precision=self.precision, checkpoint_path=checkpoint_path,
                   checkpoint_seconds=self.checkpoint_seconds, curves_dir=out_dir if self.tensorboard else None,
                   data_on_device=self.data_on_device)


@contextmanager
def training_job(*, images_path: Path, index_path: Path, precision: str, device: str, threads: int,
                 checkpoint_seconds: float, tensorboard: bool, gpus_requested: int = 0):
    """Set up a training job and yield it; once the block has written its results, delete the
    checkpoints of its fits. SIGTERM exits with 143 and keeps them (the running fit first
    writes its last finished epoch)."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    # Never a silent CPU fallback where a GPU was asked for (training.device, or the rule's GPU).
    torch_device = hardware.training_device(device, gpus_requested=gpus_requested)
    chosen_precision = hardware.choose_precision(torch_device, precision)
    hardware.configure_tf32(torch_device, chosen_precision)  # recorded by hardware.describe
    images, index = load_prepared(images_path, index_path)
    data_on_device, figures = hardware.fits_on_device(images.nbytes, torch_device)
    if data_on_device:
        log.info("data on the device: %s", figures)
    else:
        log.warning("data stays in pinned host memory and goes to the GPU batch by batch (slower, the same "
                    "numbers): %s", figures)
    job = TrainingJob(
        device=torch_device,
        precision=chosen_precision,
        precision_requested=precision,
        images_path=Path(images_path),
        images=images,
        index=index,
        class_names=class_names(index),
        checkpoint_seconds=checkpoint_seconds,
        tensorboard=tensorboard,
        data_on_device=data_on_device,
    )
    yield job
    for path in job.checkpoints:
        path.unlink(missing_ok=True)


def run_folds(
    *,
    fold_settings: list[TrainSettings],
    images_path: Path,
    index_path: Path,
    folds_path: Path,
    out_dirs: list[Path],
    checkpoint_paths: list[Path] | None,
    precision: str,
    device: str,
    threads: int,
    checkpoint_seconds: float,
    tensorboard: bool,
    gpus_requested: int = 0,
) -> list[dict]:
    """Train CV folds one after the other in one job (one setting, output folder and checkpoint
    each); write each folder's history.tsv, predictions.tsv and metrics.json (metrics last)."""
    checkpoint_paths = checkpoint_paths or [None] * len(fold_settings)
    with training_job(images_path=images_path, index_path=index_path, precision=precision, device=device,
                      threads=threads, checkpoint_seconds=checkpoint_seconds, tensorboard=tensorboard,
                      gpus_requested=gpus_requested) as job:
        fold_table = pd.read_csv(folds_path, sep="\t")
        return [_train_fold(job, settings, fold_table=fold_table, folds_path=folds_path, out_dir=Path(out_dir),
                            checkpoint_path=checkpoint)
                for settings, out_dir, checkpoint in zip(fold_settings, out_dirs, checkpoint_paths, strict=True)]


def images_per_second_after_first_epoch(history: pd.DataFrame, images_trained: int) -> float | None:
    """Training speed over the epochs after the first (each epoch trains the same images); None
    for a fit of fewer than two epochs."""
    if len(history) < 2 or history["seconds"].iloc[1:].sum() <= 0:
        return None
    images_per_epoch = images_trained / len(history)
    return round(images_per_epoch * (len(history) - 1) / float(history["seconds"].iloc[1:].sum()), 1)


def _train_fold(job: TrainingJob, settings: TrainSettings, *, fold_table: pd.DataFrame, folds_path: Path,
                out_dir: Path, checkpoint_path: Path | None) -> dict:
    split = split_indices(fold_table, settings.repeat, settings.fold)
    if job.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(job.device)  # peak_gpu_memory_mb: this fold's, not the job's
    result = job.fit(settings, split, checkpoint_path, out_dir)

    test = job.index.iloc[split["test"]]
    probs = result.test_probabilities
    predictions = pd.DataFrame({
        "sample": test["sample"].to_numpy(),
        "file": test["file"].to_numpy(),
        "true": test["label"].to_numpy(),
        "predicted": probs.argmax(1),
        "probability": probs.max(1).round(6),
        # Every class's probability (log-loss needs them: cvgrid.metrics), 6 significant digits
        # so that a rare class's small probability keeps its size.
        **{f"{CLASS_PROBABILITY_PREFIX}{k}": [f"{p:.6g}" for p in probs[:, k]] for k in range(probs.shape[1])},
    })
    history = result.history
    metrics = {
        "accuracy": result.test_accuracy,
        # A diverged network's loss may be NaN: null, so that metrics.json stays strict JSON.
        "loss": result.test_loss if math.isfinite(result.test_loss) else None,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        # A fold that diverged in its first epoch has no finished epoch: null.
        "best_val_accuracy": float(history["val_accuracy"].max()) if len(history) else None,
        # Training loss NaN/inf in epoch `diverged_epoch`: training stopped there, and the fold is
        # scored with the best weights before it (best_epoch; 0 = the initial weights).
        "diverged": result.diverged_epoch is not None,
        "diverged_epoch": result.diverged_epoch,
        "seconds": round(result.seconds, 3),
        "train_seconds": round(result.train_seconds, 3),
        "images_per_second": round(result.images_trained / result.train_seconds, 1) if result.train_seconds else None,
        # Without the first epoch (warm-up: cuDNN autotuning, lazy CUDA loading, cold caches).
        "images_per_second_after_first_epoch": images_per_second_after_first_epoch(history, result.images_trained),
        "resumed_from_epoch": result.resumed_from_epoch,
        "n_train": len(split["train"]),
        "n_validation": len(split["validation"]),
        "n_test": len(split["test"]),
        "precision": job.precision,
        # False: the images did not fit in the GPU's free memory and went to it batch by batch.
        "data_on_device": job.data_on_device,
        **hardware.describe(job.device),
        # Where it ran: host, SLURM job and partition (None outside SLURM; ties a result to its
        # scheduler record), and on a GPU its name, capability, driver, CUDA, cuDNN, TF32, peak memory.
        **hardware.where_run(job.device),
        "config": {**asdict(settings), "precision_requested": job.precision_requested,
                   "images": str(job.images_path), "folds": str(folds_path)},
    }
    write_tsv(history, out_dir / "history.tsv")
    write_tsv(predictions, out_dir / "predictions.tsv")
    write_json(metrics, out_dir / "metrics.json")
    return metrics


def configure_logging() -> None:
    """Progress to stderr, which the rule sends to the job's log."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
