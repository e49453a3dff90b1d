"""A training job: what the CV folds (`run_folds`) and the final refit (cvgrid.final.refit)
do around their fits, written once (`training_job`).

One job may train several folds of a grid point (training.folds_per_job), loading torch, the
device and the data once: one after the other, or on a GPU several at the same time
(training.parallel_folds, `train_folds`). Results are written only after a fold's fit has
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
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
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
from cvgrid.training import (CheckpointError, FitStopped, FoldResult, HostBatches, SettingsError, TrainSettings, fit,
                             place_images)
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
    parallel: int = 1  # folds trained at the same time (parallel_folds_on)
    checkpoints: list[Path] = field(default_factory=list)  # of the fits so far, deleted at the job's end
    # The images as the fits read them (training.place_images), placed once for all of them.
    data: torch.Tensor | HostBatches | None = None

    def __post_init__(self):
        if self.data is None:
            self.data = place_images(self.images, self.device, self.data_on_device)

    def fit(self, settings: TrainSettings, split: dict[str, np.ndarray], checkpoint_path: Path | None,
            out_dir: Path, stop: threading.Event | None = None) -> FoldResult:
        log.info("%s on %s (%s); %s", settings.label(), self.device, self.precision,
                 {role: len(ix) for role, ix in split.items()})
        if checkpoint_path is not None:
            self.checkpoints.append(Path(checkpoint_path))
        return fit(self.data, self.index["label"].to_numpy(), split, len(self.class_names), settings,
                   device=self.device, precision=self.precision, checkpoint_path=checkpoint_path,
                   checkpoint_seconds=self.checkpoint_seconds, curves_dir=out_dir if self.tensorboard else None,
                   stop=stop)


@contextmanager
def training_job(*, images_path: Path, index_path: Path, precision: str, device: str, threads: int,
                 checkpoint_seconds: float, tensorboard: bool, gpus_requested: int = 0,
                 parallel_folds: int = 1, folds: int = 1):
    """Set up a training job of `folds` fits and yield it; once the block has written its results,
    delete the checkpoints of its fits. SIGTERM exits with 143 and keeps them (the running fit
    first writes its last finished epoch). `parallel_folds`: training.parallel_folds (what the
    device makes of it is `job.parallel`)."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    # Never a silent CPU fallback where a GPU was asked for (training.device, or the rule's GPU).
    torch_device = hardware.training_device(device, gpus_requested=gpus_requested)
    chosen_precision = hardware.choose_precision(torch_device, precision)
    hardware.configure_tf32(torch_device, chosen_precision)  # recorded by hardware.describe
    parallel = parallel_folds_on(torch_device, parallel_folds, folds)
    images, index = load_prepared(images_path, index_path)
    data_on_device, figures = hardware.fits_on_device(images.nbytes, torch_device, models=parallel)
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
        parallel=parallel,
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
    parallel_folds: int = 1,
) -> list[dict]:
    """Train CV folds in one job (one setting, output folder and checkpoint each), on a GPU up to
    `parallel_folds` at the same time (on the CPU one after the other: parallel_folds_on); write
    each folder's history.tsv, predictions.tsv and metrics.json (metrics last)."""
    with training_job(images_path=images_path, index_path=index_path, precision=precision, device=device,
                      threads=threads, checkpoint_seconds=checkpoint_seconds, tensorboard=tensorboard,
                      gpus_requested=gpus_requested, parallel_folds=parallel_folds,
                      folds=len(fold_settings)) as job:
        return train_folds(job, fold_settings, folds_path=folds_path, out_dirs=out_dirs,
                           checkpoint_paths=checkpoint_paths, parallel=job.parallel)


def parallel_folds_on(device: torch.device, requested: int, folds: int) -> int:
    """How many folds a job trains at the same time: training.parallel_folds on a GPU (at most
    the job's folds); 1 on the CPU, where one fold already has the job's threads (logged)."""
    if requested < 1:
        raise SettingsError(f"training.parallel_folds is {requested}; it must be 1 or more")
    if requested > 1 and device.type != "cuda":
        log.info("training.parallel_folds %d means 1 on %s: the folds train one after the other", requested, device)
        return 1
    if requested > folds:
        log.info("training.parallel_folds %d: this job has %d fold(s), trained at the same time", requested, folds)
    return min(requested, folds)


def train_folds(job: TrainingJob, fold_settings: list[TrainSettings], *, folds_path: Path, out_dirs: list[Path],
                checkpoint_paths: list[Path] | None, parallel: int = 1) -> list[dict]:
    """Train the folds of `fold_settings` in `job`, `parallel` at the same time (on any device: the
    CPU policy is parallel_folds_on's), and write their results; the metrics of each, in order.

    Several at once: one thread per fold, each fold on its own CUDA stream. The kernels of one
    small model leave most of a modern GPU idle and are launched by the CPU one after the other;
    threads launch the folds' kernels side by side (torch releases the GIL inside its operations
    and the backward pass runs in its own threads), and the streams let the GPU run them at the
    same time. Stepping N models in lockstep from one thread would queue every kernel from one
    CPU thread, the very limit of a small model. Each fold keeps the numbers it has alone: its
    random streams are its own (training.FoldRandom: order, augmentation, dropout), the model is
    built under the one lock on torch's global generator, and autocast and grad mode are
    per-thread in torch. (On a GPU, cuDNN's autotuner and atomics make no run bit-exact; on the
    CPU, N at once and one at a time agree bit for bit: tests/test_training.py.)

    SIGTERM (cvgrid.job.Terminated, in the main thread) or an error in one fold stops the others
    before their next batch (training.FitStopped); each leaves its last finished epoch in its
    checkpoint, so a retry resumes all of them. peak_gpu_memory_mb is then the job's peak over
    the folds that ran together (metrics.json's parallel_folds says how many)."""
    fold_table = pd.read_csv(folds_path, sep="\t")
    checkpoint_paths = checkpoint_paths or [None] * len(fold_settings)
    tasks = [dict(settings=settings, out_dir=Path(out_dir), checkpoint_path=checkpoint)
             for settings, out_dir, checkpoint in zip(fold_settings, out_dirs, checkpoint_paths, strict=True)]
    if parallel <= 1:
        return [_train_fold(job, **task, fold_table=fold_table, folds_path=folds_path) for task in tasks]
    log.info("training %d folds, %d at the same time", len(tasks), parallel)
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="fold")
    prefix = _FoldInLog()
    for handler in logging.getLogger().handlers:
        handler.addFilter(prefix)
    try:
        futures = [pool.submit(_train_fold_in_thread, job, **task, fold_table=fold_table, folds_path=folds_path,
                               parallel=parallel, stop=stop)
                   for task in tasks]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:
            raise failed[0].exception()
        return [f.result() for f in futures]
    except BaseException:
        # SIGTERM in this thread, or one fold's error: the others stop before their next batch
        # and write their checkpoints; the folds not started yet do not start.
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(prefix)


class _FoldInLog(logging.Filter):
    """A record from a fold's thread starts with the fold (folds trained at once share one log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName.startswith("fold r") and not getattr(record, "fold_named", False):
            record.msg, record.fold_named = f"[{record.threadName}] {record.msg}", True
        return True


def _train_fold_in_thread(job: TrainingJob, *, parallel: int, **task) -> dict:
    """_train_fold in a thread of its own, named after the fold (in the log), on a CUDA stream of
    its own that first waits for the job's work on the device (the images placed there)."""
    settings = task["settings"]
    threading.current_thread().name = f"fold r{settings.repeat}f{settings.fold}"
    stream = torch.cuda.Stream(job.device) if job.device.type == "cuda" else None
    with torch.cuda.stream(stream) if stream is not None else nullcontext():
        if stream is not None:
            stream.wait_stream(torch.cuda.default_stream(job.device))
        try:
            return _train_fold(job, **task, parallel=parallel)
        except FitStopped:
            log.info("%s stopped", settings.label())
            raise


def images_per_second_after_first_epoch(history: pd.DataFrame, images_trained: int) -> float | None:
    """Training speed over the epochs after the first (each epoch trains the same images); None
    for a fit of fewer than two epochs."""
    if len(history) < 2 or history["seconds"].iloc[1:].sum() <= 0:
        return None
    images_per_epoch = images_trained / len(history)
    return round(images_per_epoch * (len(history) - 1) / float(history["seconds"].iloc[1:].sum()), 1)


def _train_fold(job: TrainingJob, settings: TrainSettings, *, fold_table: pd.DataFrame, folds_path: Path,
                out_dir: Path, checkpoint_path: Path | None, parallel: int = 1,
                stop: threading.Event | None = None) -> dict:
    split = split_indices(fold_table, settings.repeat, settings.fold)
    if job.device.type == "cuda" and parallel == 1:
        torch.cuda.reset_peak_memory_stats(job.device)  # peak_gpu_memory_mb: this fold's, not the job's
    result = job.fit(settings, split, checkpoint_path, out_dir, stop=stop)

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
        # Folds trained at the same time in this job (training.parallel_folds): seconds and
        # images/s are this fold's while sharing the GPU, peak_gpu_memory_mb theirs together.
        "parallel_folds": parallel,
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
