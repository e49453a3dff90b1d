"""Train one model on one fold: the whole data set on the device, batches resized and
augmented there, the optimizer and learning-rate schedule of the settings (the reference
recipe: Adam at a constant rate), early stopping on validation accuracy, the test fold
scored once (optionally with test-time augmentation).

The loop is written out in full (no callbacks): `fit` is the story, the helpers above it
are its steps.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from cvgrid.curves import open_curves
from cvgrid.grid import without_later_defaults
from cvgrid.hardware import AUTOCAST_DTYPES
from cvgrid.io import atomic_path
from cvgrid.models import build_model, get_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    model: str
    batch_size: int
    learning_rate: float
    augmentation: str  # the policy's name, e.g. "none" or "affine"
    rotation_degrees: float  # +- range of the random rotation
    shift_fraction: float  # +- range of the random shift, as a fraction of width/height
    zoom_fraction: float  # +- range of the random zoom, independently per axis
    max_epochs: int
    patience: int
    seed: int
    repeat: int
    fold: int
    eval_batch_size: int = 512
    weights: str | None = None  # pretrained weights file for the model's backbone; None = from scratch
    # The recipe beyond the reference grid's four axes (cvgrid.grid.AXES); the defaults are the
    # reference recipe, so its settings, checkpoints and results stay what they were.
    optimizer: str = "adam"  # adam | adamw | sgd (momentum 0.9, Nesterov)
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    schedule: str = "constant"  # constant | cosine | onecycle, stepped after every batch
    warmup_epochs: int = 0  # linear warm-up (constant, cosine); onecycle's rising part
    dropout: float | None = None  # the model's dropout option; None = the model's default
    tta: str = "none"  # none | shifts: the test fold scored as the mean over the image and 4 shifts
    class_weights: str = "none"  # none | balanced: each class's loss weighed by its inverse frequency
    recipe: str | None = None  # the name of the config's recipe these settings come from, if any
    architecture: str | None = None  # the registry entry that builds `model`; None = `model` itself
    model_options: dict = field(default_factory=dict)  # the config's models.<model>.options

    @property
    def augments(self) -> bool:
        return bool(self.rotation_degrees or self.shift_fraction or self.zoom_fraction)

    @property
    def builder(self) -> str:
        return self.architecture or self.model

    def build_options(self) -> dict:
        """The model's options: the config's, with the dropout setting over them."""
        return {**self.model_options, **({} if self.dropout is None else {"dropout": self.dropout})}

    def label(self) -> str:
        defaults = TrainSettings.__dataclass_fields__
        recipe = "".join(f" {key}={getattr(self, key)}" for key in RECIPE_KEYS
                         if getattr(self, key) != defaults[key].default)
        return (
            f"model={self.model} batch_size={self.batch_size} learning_rate={self.learning_rate} "
            f"augmentation={self.augmentation}{recipe} repeat={self.repeat} fold={self.fold}"
        )


class SettingsError(ValueError):
    """A training setting the code does not know (the schema checks the config's first)."""


def settings_from_json(values: dict, **extra) -> TrainSettings:
    """TrainSettings from a JSON object (cvgrid.grid.point_settings) and `extra` (repeat, fold,
    weights); an unknown or missing key is a ValueError naming it."""
    names = {f.name for f in fields(TrainSettings)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise SettingsError(f"training settings: unknown key {unknown[0]!r} (known: {sorted(names)})")
    try:
        return TrainSettings(**values, **extra)
    except TypeError as error:  # a required key missing
        raise SettingsError(f"training settings: {error}") from None


RECIPE_KEYS = ("recipe", "optimizer", "weight_decay", "label_smoothing", "schedule", "warmup_epochs", "dropout", "tta",
               "class_weights")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
TTA_MODES = ("none", "shifts")
CLASS_WEIGHTS = ("none", "balanced")
TTA_SHIFT_FRACTION = 0.05  # tta shifts: by 5 % of the width, left, right, up and down


def loss_class_weights(mode: str, train_labels: np.ndarray, num_classes: int) -> np.ndarray | None:
    """The training loss's weight of each class (label 0..num_classes-1): None for `none` (plain
    cross-entropy, the reference); for `balanced` the inverse of each class's frequency in the
    fold's training part, n / (classes x n_class) (scikit-learn's compute_class_weight), so that
    every class weighs as much in the loss as any other, however rare. A class without training
    images gets 1 (no training image carries it; it only weighs its validation images)."""
    if mode == "none":
        return None
    if mode != "balanced":
        raise SettingsError(f"class_weights {mode!r} is not one of {CLASS_WEIGHTS}")
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(train_labels)
    weights = np.ones(num_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=train_labels)
    return weights


def make_optimizer(settings: TrainSettings, parameters):
    if settings.optimizer == "adam":  # weight decay as an L2 term in the gradient, as torch's Adam does
        return torch.optim.Adam(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    if settings.optimizer == "adamw":  # decoupled weight decay (Loshchilov & Hutter)
        return torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=settings.learning_rate, momentum=0.9, nesterov=True,
                               weight_decay=settings.weight_decay)
    raise SettingsError(f"optimizer {settings.optimizer!r} is not one of {OPTIMIZERS}")


def lr_factor(schedule: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning rate of optimizer step `step` (0-based) as a factor of the setting's:
    linear warm-up over `warmup_steps`, then constant, or cosine down to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise SettingsError(f"schedule {schedule!r} is not one of {SCHEDULES}")


def make_scheduler(settings: TrainSettings, optimizer, steps_per_epoch: int):
    """The learning-rate schedule over max_epochs (stepped after every batch); None for the
    reference's constant rate without warm-up. onecycle is torch's OneCycleLR (from lr/25 up to
    the learning rate over warmup_epochs, or 30 % of the steps, then down to lr/1e4; it also
    cycles Adam's beta1 / SGD's momentum)."""
    total = settings.max_epochs * steps_per_epoch
    warmup = settings.warmup_epochs * steps_per_epoch
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=settings.learning_rate, total_steps=total,
            pct_start=min(warmup / total, 0.99) if warmup else 0.3)
    if settings.schedule == "constant" and not warmup:
        return None
    lr_factor(settings.schedule, 0, total, warmup)  # an unknown schedule fails here, before training
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(settings.schedule, step, total, warmup))


def shifted_views(x: torch.Tensor, fraction: float = TTA_SHIFT_FRACTION) -> list[torch.Tensor]:
    """The batch and four copies shifted by `fraction` of the width right, left, down and up
    (edges repeated): the views test-time augmentation averages over."""
    size = x.shape[-1]
    d = max(1, round(fraction * size))
    padded = F.pad(x, (d, d, d, d), mode="replicate")
    views = [x]
    for dy, dx in ((0, d), (0, -d), (d, 0), (-d, 0)):
        views.append(padded[..., d - dy : d - dy + size, d - dx : d - dx + size])
    return views


class BatchTransform:
    """uint8 (N, 3, H, W) on the device -> float in [0, 1] at the model's input size.

    With augmentation, every image gets its own random rotation, shift and zoom, applied
    together with the resize in one `grid_sample`; borders repeat the edge pixels, like
    Keras' fill_mode="nearest". The random parameters are drawn by `generator` on its device,
    which is the batch's (FoldRandom.augment): on a GPU no random numbers go from the host to
    the device per batch.
    """

    def __init__(self, input_size: int, settings: TrainSettings):
        self.size = input_size
        self.rotation = math.radians(settings.rotation_degrees)
        self.shift = 2.0 * settings.shift_fraction  # grid coordinates span [-1, 1]
        self.zoom = settings.zoom_fraction

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is not None:
            # grid_sample's CPU kernel is about 2x slower on channels_last input: sample from
            # channels-first, convert the result.
            x = self.augment(batch.contiguous().div(255.0), generator)  # uint8 -> float32 in one pass
        else:
            x = batch.div(255.0)
            if x.shape[-1] != self.size or x.shape[-2] != self.size:
                downscale = x.shape[-1] > self.size
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=downscale)
        return x.contiguous(memory_format=torch.channels_last)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        u = torch.rand(n, 5, generator=generator, device=generator.device).mul_(2).sub_(1)  # U(-1, 1)
        angle = u[:, 0] * self.rotation
        zoom_x, zoom_y = 1 + u[:, 1] * self.zoom, 1 + u[:, 2] * self.zoom
        cos, sin = torch.cos(angle), torch.sin(angle)
        # The sampling grid of F.affine_grid(theta, align_corners=False), built by broadcasting
        # and written in place: the same numbers, about 10x cheaper on CPU than affine_grid.
        # Output pixel centres in [-1, 1]; grid[n, h, w] = theta[n] @ (x_w, y_h, 1).
        centres = (torch.arange(self.size, device=x.device, dtype=x.dtype) * 2 + 1) / self.size - 1
        xs, ys = centres.view(1, 1, -1), centres.view(1, -1, 1)
        grid = torch.empty(n, self.size, self.size, 2, device=x.device, dtype=x.dtype)

        def fill(out, a, b, c):  # out[n, h, w] = a[n] * x_w + b[n] * y_h + c[n]
            torch.add(a.view(-1, 1, 1) * xs, b.view(-1, 1, 1) * ys + c.view(-1, 1, 1), out=out)

        fill(grid[..., 0], cos * zoom_x, -sin * zoom_y, u[:, 3] * self.shift)
        fill(grid[..., 1], sin * zoom_x, cos * zoom_y, u[:, 4] * self.shift)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def evaluate(model, *, data, labels, indices, transform, device, precision, batch_size, tta: str = "none",
             class_weights: torch.Tensor | None = None):
    """Mean loss, accuracy and per-sample softmax probabilities on `indices`; with tta
    "shifts" each probability is the mean over the image and its shifted_views. With
    `class_weights` (one per class) the loss and the accuracy are means weighted by the class of
    each image, as the training loss is (for early stopping under training.class_weights)."""
    model.eval()
    probabilities = []
    with torch.inference_mode():
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            x = transform(data[idx])
            views = shifted_views(x) if tta == "shifts" else [x]
            probs = 0
            for view in views:
                with autocast(device, precision):
                    logits = model(view)
                probs = probs + torch.softmax(logits.float(), dim=1)
            probabilities.append(probs / len(views))
    probs = torch.cat(probabilities)
    truth = labels[indices]
    loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), truth, weight=class_weights).item()
    correct = (probs.argmax(1) == truth).float()
    if class_weights is None:
        accuracy = correct.mean().item()
    else:
        weight = class_weights[truth]
        accuracy = ((weight * correct).sum() / weight.sum()).item()
    return loss, accuracy, probs


def train_step(model, x, y, *, optimizer, scheduler, scaler, device, precision, label_smoothing=0.0,
               class_weights=None):
    """One optimizer step on the batch (x, y), then one step of the learning-rate schedule (if
    any); returns the loss and the logits (not synced). `class_weights`: cross-entropy's weight
    of each class (its mean weighted by the class of each image), or None."""
    with autocast(device, precision):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, weight=class_weights, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()
    return loss, logits


class FitStopped(Exception):
    """A fit stopped between two batches because its job asked it to (`stop`: SIGTERM or an error
    in a fold trained beside it); its last finished epoch is in its checkpoint."""


def train_epoch(model, *, optimizer, scheduler, scaler, data, labels, order, transform, augment_generator,
                settings, device, precision, stop: threading.Event | None = None, class_weights=None):
    """One pass over `order` in mini-batches (augmented with `augment_generator`'s draws if the
    settings augment). Returns (mean loss, accuracy, seconds); with `class_weights` the accuracy
    is weighted by the class of each image, as the loss is. Raises FitStopped before a batch
    once `stop` is set."""
    model.train()
    started = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long if class_weights is None else torch.float32)
    augment_generator = augment_generator if settings.augments else None
    for start in range(0, len(order), settings.batch_size):
        if stop is not None and stop.is_set():
            raise FitStopped(f"{settings.label()} stopped in an epoch")
        idx = order[start : start + settings.batch_size]
        x, y = transform(data[idx], augment_generator), labels[idx]
        loss, logits = train_step(model, x, y, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                  device=device, precision=precision, label_smoothing=settings.label_smoothing,
                                  class_weights=class_weights)
        # Accumulate on the device: no host sync inside the loop.
        loss_sum += loss.detach() * len(idx)
        hits = logits.argmax(1) == y
        correct += hits.sum() if class_weights is None else (class_weights[y] * hits).sum()
    n = len(order)
    total = n if class_weights is None else class_weights[labels[order]].sum().item()
    mean_loss, accuracy = loss_sum.item() / n, correct.item() / total
    return mean_loss, accuracy, time.perf_counter() - started


HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"]


@dataclass
class FoldResult:
    test_loss: float
    test_accuracy: float
    test_probabilities: np.ndarray  # (n_test, classes)
    history: pd.DataFrame
    best_epoch: int
    epochs_run: int
    train_seconds: float  # time in training steps only, summed over epochs
    seconds: float  # wall time of the whole fit, including evaluation
    images_trained: int
    resumed_from_epoch: int
    model: torch.nn.Module  # with the best epoch's weights restored
    # The epoch whose training loss became NaN or inf (training stopped there), else None.
    diverged_epoch: int | None = None


# torch's global generators are shared by every thread of the process: the one thing a fit draws
# from them is its model's initial weights, under this lock (cvgrid.job trains folds in threads).
_GLOBAL_RNG_LOCK = threading.Lock()


class FoldRandom:
    """The random streams of one fit, its own, so that a fold draws the same numbers whether it
    trains alone or beside other folds in the same process (training.parallel_folds):

    - order: the epochs' permutations of the training part (a CPU generator seeded with the seed);
    - augment: the augmentation parameters, drawn on the training device (BatchTransform); on the
      CPU this is `order` itself, as before there was a GPU path, so CPU results are unchanged;
    - dropout: the dropout masks (FoldDropout); on the CPU it continues torch's global generator
      from where building the model left it, which is what nn.Dropout drew from, so CPU results
      are unchanged again.

    On a GPU, augment and dropout are generators on the GPU, seeded with two seeds spawned from the
    seed (numpy's SeedSequence: independent streams). Create it right after building the model,
    holding _GLOBAL_RNG_LOCK."""

    def __init__(self, seed: int, device: torch.device):
        self.on_cpu = device.type == "cpu"
        self.order = torch.Generator().manual_seed(seed)
        if self.on_cpu:
            self.augment = self.order
            self.dropout = torch.Generator()
            self.dropout.set_state(torch.get_rng_state())
        else:
            augment_seed, dropout_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
            self.augment = torch.Generator(device).manual_seed(augment_seed)
            self.dropout = torch.Generator(device).manual_seed(dropout_seed)

    def state_dict(self) -> dict:
        """For the checkpoint. On the CPU the keys of checkpoints written before this class
        ("generator": the permutations and augmentation, "torch": the global generator that
        dropout drew from), so that they resume the same."""
        if self.on_cpu:
            return {"generator": self.order.get_state(), "torch": self.dropout.get_state()}
        return {"generator": self.order.get_state(), "augment": self.augment.get_state(),
                "dropout": self.dropout.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.order.set_state(state["generator"])
        if self.on_cpu:
            self.dropout.set_state(state["torch"])
            return
        for name in ("augment", "dropout"):
            if name in state:
                getattr(self, name).set_state(state[name])
            else:  # a GPU checkpoint written before the draws moved to the GPU
                log.warning("the checkpoint holds no %s generator: it restarts from its seed (the resumed "
                            "fold differs from an uninterrupted one)", name)


class FoldDropout(nn.Dropout):
    """nn.Dropout drawing its masks from `generator` instead of torch's global generator, with
    torch's own arithmetic for the CPU (a Bernoulli(1 - p) mask divided by 1 - p, times the
    input): on the CPU a generator in the global one's state gives the same numbers, bit for bit."""

    def __init__(self, p: float, generator: torch.Generator, inplace: bool = False):
        super().__init__(p, inplace)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            noise = torch.zeros((), dtype=x.dtype, device=x.device)
        else:
            noise = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator).div_(1 - self.p)
        return x.mul_(noise) if self.inplace else x * noise


# Layers that draw from torch's global generator and have no FoldDropout counterpart here.
GLOBAL_RANDOM_LAYERS = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.RReLU)


@contextmanager
def dropout_from(model: nn.Module, generator: torch.Generator, *, beside_others: bool):
    """Inside the block, every nn.Dropout of `model` draws from `generator` (FoldDropout); after
    it the model has its nn.Dropout layers again (for model.pt and model.onnx). A layer that draws
    from the global generator otherwise (GLOBAL_RANDOM_LAYERS, torchvision's StochasticDepth) is
    a SettingsError naming it where the fit trains `beside_others` (training.parallel_folds): its
    draws would depend on the folds trained beside it. Alone, such a layer draws from the global
    generator as it always did (seeded by the fit: reproducible)."""
    swapped = []
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                swapped.append((parent, name, child))
            elif beside_others and (isinstance(child, GLOBAL_RANDOM_LAYERS) or type(child).__name__ == "StochasticDepth"):
                raise SettingsError(f"the model's layer {parent_name + '.' if parent_name else ''}{name} "
                                    f"({type(child).__name__}) draws from torch's global generator; only "
                                    "nn.Dropout can draw from the fold's own")
    for parent, name, child in swapped:
        fold_dropout = FoldDropout(child.p, generator, child.inplace)
        fold_dropout.train(child.training)
        setattr(parent, name, fold_dropout)
    try:
        yield
    finally:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)


@dataclass
class Progress:
    """Where a fit stands after its last finished epoch: what a checkpoint holds besides the
    model, optimizer, gradient scaler and random state (flat keys, like theirs)."""

    epoch: int = 0  # the last finished epoch; 0 before the first
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_accuracy: float = -1.0  # the best validation accuracy so far ...
    best_epoch: int = 0  # ... in this epoch (0: the initial weights) ...
    best_state: dict | None = None  # ... with these weights (on the CPU)
    train_seconds: float = 0.0  # in training steps, over all attempts
    images_trained: int = 0
    seconds: float = 0.0  # wall time of the fit so far, over all attempts
    diverged_epoch: int | None = None  # the epoch whose training loss became NaN/inf: the fit ended there

    def record(self, model: torch.nn.Module, row: dict, images: int) -> bool:
        """Add a finished epoch (its history row); keep the model's weights if they are the
        best so far. Returns whether they are."""
        self.epoch = row["epoch"]
        self.history.append(row)
        self.train_seconds += row["seconds"]
        self.images_trained += images
        improved = row["val_accuracy"] > self.best_accuracy
        if improved:
            self.best_accuracy, self.best_epoch = row["val_accuracy"], row["epoch"]
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return improved

    def state_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load_state_dict(self, state: dict) -> None:
        for f in fields(self):
            # diverged_epoch is newer than the other keys: a checkpoint written before it
            # existed is one of a fit that had not diverged.
            setattr(self, f.name, state.get(f.name) if f.name == "diverged_epoch" else state[f.name])


class CheckpointError(RuntimeError):
    pass


def load_checkpoint(path: Path, settings: TrainSettings, precision: str) -> dict | None:
    """The checkpoint at `path` if it belongs to this very job; None if there is none or it
    was written for other settings (then the job starts afresh, with a warning). Loaded with
    weights_only=True: a file that is not a checkpoint is an error naming the file."""
    if not path.exists():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a foreign file
        raise CheckpointError(
            f"{path} is not a training checkpoint ({type(error).__name__}: {str(error).splitlines()[0]}); "
            "delete it to start this fold afresh"
        ) from error
    if not isinstance(checkpoint, dict) or "settings" not in checkpoint:
        raise CheckpointError(f"{path} is not a training checkpoint; delete it to start this fold afresh")
    if checkpoint["settings"] != checkpoint_settings(settings) or checkpoint.get("precision") != precision:
        log.warning("ignoring checkpoint %s: it was written for other settings", path)
        return None
    return checkpoint


def checkpoint_settings(settings: TrainSettings) -> dict:
    """The settings a checkpoint records and is matched by: those of a checkpoint written before
    a setting of cvgrid.grid.LATER_SETTINGS existed lack it, and still resume a job at its default."""
    return without_later_defaults(asdict(settings))


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _cpu_copy(value):
    """`value` (a state dict, nested dicts and lists of tensors) with every tensor copied to the
    CPU: a snapshot that later training steps do not change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value


class CheckpointSaver:
    """The checkpoint policy of one fit (as timm's CheckpointSaver is its training loop's):
    :meth:`resume` from the file at `path` if it belongs to this very job; :meth:`after_epoch`
    keeps a copy of the state after each finished epoch and writes it at most every `interval`
    seconds (0: after every epoch; a checkpoint of 40 MB after every epoch of a second would
    load a shared file system); :meth:`flush` writes the copy not yet on disk, at the end of the
    fit or on an exception (SIGTERM's, cvgrid.job.Terminated). Without a path it does nothing.
    The training objects are the fit's own, read when a state is kept."""

    def __init__(self, path: Path | None, *, settings: TrainSettings, precision: str, interval: float,
                 model, optimizer, scheduler, scaler, random: FoldRandom, progress: Progress):
        self.path, self.settings, self.precision, self.interval = path, settings, precision, interval
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.random, self.progress = random, progress
        self.unsaved: dict | None = None  # the last finished epoch's state while not yet on disk
        self.saved_at = time.monotonic()

    def resume(self) -> bool:
        """Load the checkpoint into the training objects; False if there is none for this job."""
        checkpoint = load_checkpoint(self.path, self.settings, self.precision) if self.path else None
        if checkpoint is None:
            return False
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.random.load_state_dict(checkpoint["rng"])
        self.progress.load_state_dict(checkpoint)
        log.info("resuming %s after epoch %d from %s", self.settings.label(), self.progress.epoch, self.path)
        return True

    def after_epoch(self) -> None:
        """Keep the state as it stands now (copied at once: from here on a SIGTERM writes this
        epoch), and write it if the last write is `interval` seconds old."""
        if self.path is None:
            return
        self.unsaved = _cpu_copy({
            "settings": checkpoint_settings(self.settings), "precision": self.precision, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": self.random.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            **self.progress.state_dict(),
        })
        if time.monotonic() - self.saved_at >= self.interval:
            save_checkpoint(self.path, self.unsaved)
            self.unsaved, self.saved_at = None, time.monotonic()

    def flush(self) -> None:
        """Write the kept state if it is not on disk yet. A job of several folds keeps the file
        of a finished fold until the job ends, so that its retry does not train that fold again."""
        if self.unsaved is not None:
            save_checkpoint(self.path, self.unsaved)
            self.unsaved = None
            log.info("checkpoint after epoch %d written to %s", self.progress.epoch, self.path)


class HostBatches:
    """The data set kept in host memory (pinned on a GPU) and moved to the device batch by batch,
    for an array that does not fit in the GPU's free memory (hardware.fits_on_device): slower,
    the same numbers. Indexed like the device tensor it stands for: data[indices] is a batch on
    the device."""

    def __init__(self, data: torch.Tensor, device: torch.device):
        self.data = data.pin_memory() if device.type == "cuda" else data
        self.device = device

    def __getitem__(self, indices: torch.Tensor) -> torch.Tensor:
        return self.data[indices.cpu()].to(self.device, non_blocking=True)


def place_images(images: np.ndarray, device: torch.device, on_device: bool = True) -> torch.Tensor | HostBatches:
    """The (N, H, W, 3) uint8 images as the fit reads them: one (N, 3, H, W) channels-last tensor on
    the device for the whole fit, or (on_device False: it does not fit in the GPU's free memory)
    in host memory, moved batch by batch. A job places them once for all its folds."""
    host = torch.from_numpy(images).permute(0, 3, 1, 2)
    if on_device:
        return host.to(device).contiguous(memory_format=torch.channels_last)
    return HostBatches(host.contiguous(memory_format=torch.channels_last), device)


def fit(
    images: np.ndarray | torch.Tensor | HostBatches,
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    num_classes: int,
    settings: TrainSettings,
    *,
    device: torch.device,
    precision: str,
    checkpoint_path: Path | None = None,
    checkpoint_seconds: float = 0.0,
    curves_dir: Path | None = None,
    data_on_device: bool = True,
    stop: threading.Event | None = None,
) -> FoldResult:
    """Train on split["train"], stop early on split["validation"], score split["test"] once
    (if it is not empty: a refit on all data has none).

    `images`: the uint8 (N, H, W, 3) array, or the images placed already (place_images), which
    the folds of a job share. `data_on_device` False (for an array): the images stay in host
    memory and go to the device batch by batch (HostBatches), for an array larger than the GPU's
    free memory; the same numbers.

    Checkpoints (with `checkpoint_path`): the state after a finished epoch is written at most
    every `checkpoint_seconds` (0: after every epoch), and always when the fit ends, also by
    an exception such as SIGTERM's (cvgrid.job.Terminated) or FitStopped (`stop` set, checked
    before every batch): the file then holds the last finished epoch, from which the fit resumes
    as if it had never stopped.

    Random numbers: the fit's own (FoldRandom), so that it gives the same result beside other
    fits in other threads of the process as alone.

    Divergence: when the training loss of an epoch becomes NaN or inf, training stops there
    and the fold is scored with the best weights before it (by validation accuracy, as early
    stopping restores them; the initial weights if the first epoch diverged).
    `diverged_epoch` of the result names the epoch.

    Class weights (settings.class_weights balanced, loss_class_weights): the training loss
    weighs each class by its inverse frequency in split["train"], and early stopping follows the
    validation loss and accuracy weighted the same way (history.tsv's losses and accuracies are
    then the weighted ones); the test fold is scored unweighted, as every other fold is.

    Curves (with `curves_dir`, training.tensorboard): each finished epoch's history row also
    goes to TensorBoard event files there (cvgrid.curves), closed when the fit ends."""
    if settings.tta not in TTA_MODES:
        raise SettingsError(f"tta {settings.tta!r} is not one of {TTA_MODES}")
    weights = loss_class_weights(settings.class_weights, np.asarray(labels)[split["train"]], num_classes)
    if weights is not None:
        log.info("class weights (%s, from the class counts of the %d training images): %s", settings.class_weights,
                 len(split["train"]), " ".join(f"{w:.4g}" for w in weights))
    started = time.perf_counter()
    spec = get_spec(settings.builder)
    with _GLOBAL_RNG_LOCK:
        torch.manual_seed(settings.seed)
        model = build_model(settings.builder, num_classes, weights_path=settings.weights,
                            options=settings.build_options())
        random = FoldRandom(settings.seed, device)
    # `stop` is given to folds trained in threads beside others (cvgrid.job.train_folds).
    with dropout_from(model, random.dropout, beside_others=stop is not None):
        return _fit(model, spec.input_size, images, labels, split, num_classes, settings, random=random,
                    device=device, precision=precision, checkpoint_path=checkpoint_path,
                    checkpoint_seconds=checkpoint_seconds, curves_dir=curves_dir, data_on_device=data_on_device,
                    stop=stop, started=started, weights=weights)


def _fit(model, input_size, images, labels, split, num_classes, settings, *, random, device, precision,
         checkpoint_path, checkpoint_seconds, curves_dir, data_on_device, stop, started, weights) -> FoldResult:
    """fit, once the model is built with its random streams (`weights`: loss_class_weights')."""
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(settings, model.parameters())
    scheduler = make_scheduler(settings, optimizer, steps_per_epoch=math.ceil(len(split["train"]) / settings.batch_size))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    transform = BatchTransform(input_size, settings)

    data = place_images(images, device, data_on_device) if isinstance(images, np.ndarray) else images
    labels_t = torch.from_numpy(np.array(labels, dtype=np.int64)).to(device)
    class_weights = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    train_idx, val_idx, test_idx = (torch.from_numpy(split[r]).to(device) for r in ("train", "validation", "test"))

    progress = Progress()
    saver = CheckpointSaver(checkpoint_path, settings=settings, precision=precision, interval=checkpoint_seconds,
                            model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                            random=random, progress=progress)
    if not saver.resume():
        # What a fit that diverges in its first epoch is scored with.
        progress.best_state = _cpu_copy(model.state_dict())
    resumed_from_epoch, seconds_before = progress.epoch, progress.seconds
    curves = open_curves(curves_dir, enabled=curves_dir is not None)

    try:
        for epoch in range(progress.epoch + 1, settings.max_epochs + 1):
            if progress.diverged_epoch is not None or epoch - progress.best_epoch > settings.patience:
                break
            order = train_idx[torch.randperm(len(train_idx), generator=random.order).to(device)]
            train_loss, train_accuracy, seconds = train_epoch(
                model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, data=data, labels=labels_t,
                order=order, transform=transform, augment_generator=random.augment, settings=settings,
                device=device, precision=precision, stop=stop, class_weights=class_weights,
            )
            if not math.isfinite(train_loss):
                # A result, not a crash: the fold is scored with the best weights before this epoch.
                progress.diverged_epoch = epoch
                log.warning("DIVERGED: training loss became %s in epoch %d of %s; scoring the best weights "
                            "before it (epoch %d)", train_loss, epoch, settings.label(), progress.best_epoch)
                saver.after_epoch()  # a retry must not train this fold again
                break
            # Early stopping follows the objective trained: with class weights, the weighted
            # validation accuracy (with balanced ones about the validation part's balanced accuracy).
            val_loss, val_accuracy, _ = evaluate(
                model, data=data, labels=labels_t, indices=val_idx, transform=transform, device=device,
                precision=precision, batch_size=settings.eval_batch_size, class_weights=class_weights,
            )
            row = {"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy,
                   "val_loss": val_loss, "val_accuracy": val_accuracy, "seconds": seconds}
            improved = progress.record(model, row, len(order))
            curves.epoch(epoch, {name: value for name, value in row.items() if name != "epoch"})
            progress.seconds = seconds_before + time.perf_counter() - started
            saver.after_epoch()
            log.info(
                "epoch %3d  train loss %.4f acc %.4f  val loss %.4f acc %.4f  %.1fs (%.0f img/s)%s",
                epoch, train_loss, train_accuracy, val_loss, val_accuracy, seconds, len(order) / seconds,
                "  *" if improved else "",
            )
    finally:
        # The end of the fit, or an exception (SIGTERM, an error) in the middle of an epoch: the
        # last finished epoch goes to disk, and the curves written so far.
        try:
            saver.flush()
        finally:
            curves.close()

    model.load_state_dict(progress.best_state)
    best_epoch, best_accuracy = progress.best_epoch, progress.best_accuracy
    if len(test_idx):
        test_loss, test_accuracy, probs = evaluate(
            model, data=data, labels=labels_t, indices=test_idx, transform=transform, device=device,
            precision=precision, batch_size=settings.eval_batch_size, tta=settings.tta,
        )
        log.info("best epoch %d (val acc %.4f); test loss %.4f acc %.4f", best_epoch, best_accuracy, test_loss, test_accuracy)
    else:  # a refit on all data has no test part
        test_loss, test_accuracy, probs = math.nan, math.nan, torch.empty(0, num_classes)
    return FoldResult(
        test_loss=test_loss,
        test_accuracy=test_accuracy,
        test_probabilities=probs.cpu().numpy(),
        history=pd.DataFrame(progress.history, columns=HISTORY_COLUMNS),
        best_epoch=best_epoch,
        epochs_run=len(progress.history),
        train_seconds=progress.train_seconds,
        seconds=seconds_before + time.perf_counter() - started,
        images_trained=progress.images_trained,
        resumed_from_epoch=resumed_from_epoch,
        model=model,
        diverged_epoch=progress.diverged_epoch,
    )
