#!/usr/bin/env python
"""How fast the project's training path is, against what it replaces and what it can reach.

One run, one machine, three ways to train the same model on the same images:

1. ``ordinary``: the recipe a user would write: torchvision ``ImageFolder`` reading the
   JPEGs, per-image PIL transforms (``Resize``, ``RandomAffine``, ``ToTensor``), a
   ``DataLoader`` with worker processes, fp32, channels-first.
2. ``project``: the project's own code (``cvgrid.training.train_epoch`` with its
   ``BatchTransform``): the prepared uint8 array on the device, resize and per-image
   affine augmentation on whole batches, channels_last, the precision
   ``hardware.choose_precision`` picks. Timed with (``project_augmented``) and without
   (``project_plain``) augmentation.
3. ``ceiling``: the same training step on float batches already at the model's input size
   and already on the device (no indexing, no transform, no augmentation), at the same
   precision and memory format as 2.

Each variant runs ``warmup`` steps that are not timed, then ``rounds`` interleaved rounds
of ``steps`` timed steps; its figure is the median round. Ratios are taken round by round
and their median reported: ``ratio_project_to_ordinary`` (2 with augmentation over 1) and
``share_not_in_ceiling`` = (t2 - t3) / t2 with t the seconds per image, i.e. the part of
the project path's time spent outside forward, backward and optimizer step.

The augmentation policy (default: the reference config's ``affine``) and the learning rate
(default: the median of its grid's) come from a workflow config. A development tool: the
workflow never calls it.

    python scripts/benchmark.py --data-dir ../shared/datasets/sign-language-digits --out results/benchmark.json
    python scripts/benchmark.py --data-dir DATA --models model_a --steps 60 --compile --precision-matrix

Optional: ``torch.compile`` of the project path (compile seconds, cold and with a warm
cache, against the per-epoch saving of a typical fold) and a precision x memory-format
matrix of the bare training step.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cvgrid import hardware
from cvgrid.data import class_names, prepare_dataset
from cvgrid.grid import ConfigError, augmentation_policy
from cvgrid.models import build_model, get_spec
from cvgrid.training import BatchTransform, FoldRandom, TrainSettings, autocast, train_epoch, train_step

REFERENCE_CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


@dataclass
class BenchConfig:
    data_dir: Path  # folder of CLASS/*.jpg
    augmentation: dict[str, float]  # the config's policy: rotation_degrees, shift_fraction, zoom_fraction
    learning_rate: float
    models: tuple[str, ...] = ("model_a", "model_b")
    steps: dict[str, int] = field(default_factory=lambda: {"model_a": 40, "model_b": 12})
    warmup: int = 5
    batch_size: int = 32
    image_size: int = 100  # size of the prepared array (the workflow's `image_size`)
    limit: int | None = None  # use only the first LIMIT images of each class (smoke tests)
    device: str = "auto"
    workers: int | None = None  # DataLoader workers of the ordinary recipe; None: per core count
    threads: int | None = None
    seed: int = 0
    compile: bool = False
    fold_epochs: int = 20  # a typical fold's epochs, for the torch.compile break-even
    precision_matrix: bool = False
    rounds: int = 7  # interleaved timing rounds per variant; the median counts

    def steps_for(self, model: str) -> int:
        return self.steps.get(model, self.steps.get("*", 20))


# --------------------------------------------------------------------------- timing


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def figure(images: int, seconds: float, **extra) -> dict:
    return {"images": images, "seconds": seconds, "images_per_second": images / seconds, **extra}


def default_workers() -> int:
    """Workers for the ordinary recipe: one per core the process may use, at most 8.

    On a 2-core machine that is 2 workers that share the cores with the training threads,
    which is what a user following the PyTorch tutorials would set (num_workers=os.cpu_count())."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


# --------------------------------------------------------------------------- 1. ordinary


def ordinary_loader(data_dir: Path, input_size: int, batch_size: int, workers: int, limit: int | None,
                    seed: int, pin_memory: bool, augmentation: dict[str, float]):
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.Resize((input_size, input_size)),
        transforms.RandomAffine(degrees=augmentation["rotation_degrees"],
                                translate=(augmentation["shift_fraction"],) * 2,
                                scale=(1 - augmentation["zoom_fraction"], 1 + augmentation["zoom_fraction"])),
        transforms.ToTensor(),
    ])
    dataset = datasets.ImageFolder(str(data_dir), transform=transform)
    num_classes = len(dataset.classes)
    if limit:
        keep, seen = [], {}
        for i, (_, label) in enumerate(dataset.samples):
            if seen.get(label, 0) < limit:
                keep.append(i)
                seen[label] = seen.get(label, 0) + 1
        dataset = Subset(dataset, keep)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=pin_memory,
        persistent_workers=workers > 0, drop_last=len(dataset) >= batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, num_classes


def endless(loader):
    while True:
        yield from loader


class Variant:
    """One way to train, set up once (model, optimizer, data; `warmup` untimed steps), then
    timed in rounds of `steps` steps: `time(steps)` returns the seconds of one round."""

    label = ""
    meta: dict = {}

    def time(self, steps: int) -> float:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Ordinary(Variant):
    def __init__(self, model_name: str, cfg: BenchConfig, device: torch.device):
        spec = get_spec(model_name)
        workers = cfg.workers if cfg.workers is not None else default_workers()
        self.loader, num_classes = ordinary_loader(cfg.data_dir, spec.input_size, cfg.batch_size, workers,
                                                   cfg.limit, cfg.seed, device.type == "cuda", cfg.augmentation)
        torch.manual_seed(cfg.seed)
        self.model = build_model(model_name, num_classes).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate)
        self.device, self.batches = device, endless(self.loader)
        self.meta = {"precision": "fp32", "memory_format": "contiguous", "workers": workers}
        self.label = "1 ordinary (ImageFolder + PIL + DataLoader, fp32)"
        self.run(cfg.warmup)

    def run(self, steps: int) -> int:
        self.model.train()
        images = 0
        for _ in range(steps):
            x, y = next(self.batches)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            images += len(y)
        return images

    def time(self, steps: int) -> float:
        synchronize(self.device)
        started = time.perf_counter()
        self.run(steps)
        synchronize(self.device)
        return time.perf_counter() - started

    def close(self) -> None:
        del self.batches, self.loader  # stops the workers


# --------------------------------------------------------------------------- 2. project


@dataclass
class Prepared:
    data: torch.Tensor  # (N, 3, S, S) uint8 on the device, channels_last, as in `fit`
    labels: torch.Tensor  # (N,) int64 on the device
    num_classes: int


def prepare(cfg: BenchConfig, device: torch.device) -> Prepared:
    """The array `prepare_dataset` makes, moved to the device the way `fit` does. Not timed."""
    images, index, _ = prepare_dataset(cfg.data_dir, cfg.image_size)
    if cfg.limit:
        keep = index.groupby("label", sort=False).head(cfg.limit).index.to_numpy()
        images, index = images[keep], index.iloc[keep].reset_index(drop=True)
    data = torch.from_numpy(images).permute(0, 3, 1, 2).to(device).contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(np.array(index["label"], dtype=np.int64)).to(device)
    return Prepared(data, labels, len(class_names(index)))


def train_settings(model_name: str, cfg: BenchConfig, augment: bool) -> TrainSettings:
    return TrainSettings(
        model=model_name, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        augmentation="augmented" if augment else "none",
        **{key: value if augment else 0.0 for key, value in cfg.augmentation.items()},
        max_epochs=1, patience=1, seed=cfg.seed, repeat=0, fold=0,
    )


def sample_order(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` indices: shuffled passes over 0..n-1, as the epochs of `fit` draw them."""
    passes = [torch.randperm(n, generator=generator) for _ in range(math.ceil(count / n))]
    return torch.cat(passes)[:count]


def new_model(model_name: str, num_classes: int, device: torch.device, memory_format, cfg: BenchConfig):
    torch.manual_seed(cfg.seed)
    model = build_model(model_name, num_classes).to(device, memory_format=memory_format)
    return model, torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)


class Project(Variant):
    """`train_epoch` itself, each round over `steps` batches drawn as `fit` draws them."""

    def __init__(self, model_name: str, cfg: BenchConfig, device: torch.device, precision: str,
                 prepared: Prepared, augment: bool, compile_model: bool = False):
        self.settings = train_settings(model_name, cfg, augment)
        self.model, self.optimizer = new_model(model_name, prepared.num_classes, device, torch.channels_last, cfg)
        if compile_model:
            self.model = torch.compile(self.model)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.transform = BatchTransform(get_spec(model_name).input_size, self.settings)
        self.random = FoldRandom(cfg.seed, device)  # the permutations on the CPU, the augmentation on the device
        self.cfg, self.device, self.precision, self.prepared = cfg, device, precision, prepared
        self.meta = {"precision": precision, "memory_format": "channels_last", "augmentation": augment}
        if compile_model:
            self.meta["compiled"] = True
        self.label = f"2 project path, {'augmented' if augment else 'no augmentation'}"
        self.warmup_seconds = self.time(cfg.warmup) if cfg.warmup else 0.0

    def time(self, steps: int) -> float:
        order = sample_order(len(self.prepared.labels), steps * self.cfg.batch_size, self.random.order).to(self.device)
        synchronize(self.device)
        started = time.perf_counter()
        train_epoch(self.model, optimizer=self.optimizer, scheduler=None, scaler=self.scaler,
                    data=self.prepared.data, labels=self.prepared.labels, order=order, transform=self.transform,
                    augment_generator=self.random.augment, settings=self.settings, device=self.device,
                    precision=self.precision)  # ends in .item()
        return time.perf_counter() - started


# --------------------------------------------------------------------------- 3. ceiling


def ceiling_batches(model_name: str, cfg: BenchConfig, prepared: Prepared, device: torch.device,
                    memory_format, count: int, batch_size: int | None = None):
    """`count` distinct float batches at the input size, on the device, made before timing."""
    batch_size = batch_size or cfg.batch_size
    transform = BatchTransform(get_spec(model_name).input_size, train_settings(model_name, cfg, False))
    order = sample_order(len(prepared.labels), count * batch_size, torch.Generator().manual_seed(cfg.seed + 1))
    batches = []
    for k in range(count):
        idx = order[k * batch_size : (k + 1) * batch_size].to(device)
        x = transform(prepared.data[idx]).contiguous(memory_format=memory_format)
        batches.append((x, prepared.labels[idx]))
    return batches


def time_steps(model, optimizer, scaler, batches, device, precision, warmup: int, steps: int) -> tuple[float, float]:
    """`train_step`, the step of `train_epoch` (autocast forward, fp32 loss, backward, Adam, device-side
    accumulation) on ready batches. Returns (warm-up seconds, timed seconds)."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    seconds = [0.0, 0.0]
    for phase, count in enumerate((warmup, steps)):
        synchronize(device)
        started = time.perf_counter()
        for step in range(count):
            x, y = batches[step % len(batches)]
            loss, _ = train_step(model, x, y, optimizer=optimizer, scheduler=None, scaler=scaler, device=device,
                                 precision=precision)
            loss_sum += loss.detach() * len(y)
        loss_sum.item()
        seconds[phase] = time.perf_counter() - started
    return seconds[0], seconds[1]


class Ceiling(Variant):
    """The same step on up to 8 distinct float batches prepared on the device beforehand."""

    def __init__(self, model_name: str, cfg: BenchConfig, device: torch.device, precision: str,
                 prepared: Prepared, memory_format=torch.channels_last, steps: int = 8):
        self.batches = ceiling_batches(model_name, cfg, prepared, device, memory_format, min(steps, 8))
        self.model, self.optimizer = new_model(model_name, prepared.num_classes, device, memory_format, cfg)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.device, self.precision = device, precision
        fmt = "channels_last" if memory_format == torch.channels_last else "contiguous"
        self.meta = {"precision": precision, "memory_format": fmt}
        self.label = "3 compute ceiling"
        self.time(cfg.warmup)

    def time(self, steps: int) -> float:
        return time_steps(self.model, self.optimizer, self.scaler, self.batches, self.device, self.precision, 0, steps)[1]


def measure(variants: dict[str, Variant], steps: int, rounds: int, batch_size: int) -> dict[str, dict]:
    """Time every variant `rounds` times, interleaved (A B C A B C ...), so that a burst of load
    from elsewhere hits all of them alike. A variant's figure is its median round; every
    round's images per second is kept (`rounds_images_per_second`), and `paired_ratio` compares
    variants round by round."""
    seconds = {key: [] for key in variants}
    for _ in range(rounds):
        for key, variant in variants.items():
            seconds[key].append(variant.time(steps))
    images = steps * batch_size
    figures = {}
    for key, s in seconds.items():
        per_round = [images / t for t in s]
        figures[key] = figure(images, images / float(np.median(per_round)), **variants[key].meta,
                              best_images_per_second=max(per_round), rounds_images_per_second=per_round)
    return figures


def paired_ratio(a: dict, b: dict) -> float:
    """Median over the interleaved rounds of (a's images per second / b's) in the same round:
    on a shared or throttled machine the speed drifts between rounds, much less within one."""
    return float(np.median(np.divide(a["rounds_images_per_second"], b["rounds_images_per_second"])))


# --------------------------------------------------------------------------- options


@contextmanager
def inductor_cache(directory: str | None):
    """Point torch.compile's on-disk cache at `directory` (a cold cache) for the block."""
    old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if directory is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = directory
    try:
        yield
    finally:
        if directory is not None:
            if old is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = old


def compile_costs(model_name: str, cfg: BenchConfig, device: torch.device, precision: str,
                  prepared: Prepared) -> dict:
    """Seconds torch.compile adds to one fold: the first training step, the recompile for an
    epoch's last (smaller) batch, and the first evaluation batches (eval mode, inference
    mode, two sizes). Each first call minus the same call's steady time."""
    import torch._dynamo

    settings = train_settings(model_name, cfg, True)
    input_size = get_spec(model_name).input_size
    transform = BatchTransform(input_size, settings)
    model, optimizer = new_model(model_name, prepared.num_classes, device, torch.channels_last, cfg)
    random = FoldRandom(cfg.seed, device)  # the permutations on the CPU, the augmentation on the device
    compiled = torch.compile(model)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    n = len(prepared.labels)
    costs = {}

    def train(batch: int) -> float:
        order = sample_order(n, batch, random.order).to(device)
        synchronize(device)
        started = time.perf_counter()
        train_epoch(compiled, optimizer=optimizer, scheduler=None, scaler=scaler, data=prepared.data,
                    labels=prepared.labels, order=order, transform=transform, augment_generator=random.augment,
                    settings=settings, device=device, precision=precision)
        return time.perf_counter() - started

    def evaluate(batch: int) -> float:
        compiled.eval()
        idx = torch.arange(min(batch, n), device=device)
        synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode(), autocast(device, precision):
            compiled(transform(prepared.data[idx])).float().sum().item()
        return time.perf_counter() - started

    last = max(1, cfg.batch_size // 2 + 1)  # an epoch's last batch is (almost always) smaller
    for name, call in (("train_step", lambda: train(cfg.batch_size)), ("train_last_batch", lambda: train(last)),
                       ("eval_batch", lambda: evaluate(512)), ("eval_last_batch", lambda: evaluate(97))):
        first = call()
        again = min(call() for _ in range(2))
        costs[name] = max(first - again, 0.0)
    torch._dynamo.reset()
    return {"seconds": sum(costs.values()), "parts": costs}


def compile_variant(model_name: str, cfg: BenchConfig, device: torch.device, precision: str,
                    prepared: Prepared) -> tuple[Variant, dict]:
    """torch.compile on the project path with augmentation: the compile seconds one fold pays
    with a cold on-disk cache (a fresh machine) and with a warm one (a later job on the same
    machine), and a compiled variant to time alongside the others."""
    import torch._dynamo

    torch._dynamo.reset()
    with tempfile.TemporaryDirectory(prefix="cvgrid-inductor-") as cache, inductor_cache(cache):
        cold = compile_costs(model_name, cfg, device, precision, prepared)
        warm = compile_costs(model_name, cfg, device, precision, prepared)
        variant = Project(model_name, cfg, device, precision, prepared, augment=True, compile_model=True)
    variant.label = "2 project path, augmented, torch.compile"
    return variant, {"cold": cold, "warm": warm}


def compile_summary(costs: dict, eager: dict, compiled: dict, num_images: int, fold_epochs: int) -> dict:
    """Does compiling pay for itself over `fold_epochs` epochs of a 5-fold split's training part?"""
    epoch_images = round(num_images * 0.8 * 0.9)  # 5 folds, 10% of the training part for validation
    saving_per_epoch = epoch_images * (1 / eager["images_per_second"] - 1 / compiled["images_per_second"])
    fold_saving = saving_per_epoch * fold_epochs
    out = {
        "images_per_second": compiled["images_per_second"],
        "speedup_over_eager": compiled["images_per_second"] / eager["images_per_second"],
        "epoch_images": epoch_images,
        "saving_per_epoch_seconds": saving_per_epoch,
        "fold_epochs": fold_epochs,
    }
    for cache in ("cold", "warm"):
        seconds = costs[cache]["seconds"]
        out[f"compile_seconds_{cache}_cache"] = seconds
        out[f"compile_parts_{cache}_cache"] = costs[cache]["parts"]
        out[f"fold_net_seconds_{cache}_cache"] = fold_saving - seconds
        out[f"break_even_epochs_{cache}_cache"] = seconds / saving_per_epoch if saving_per_epoch > 0 else None
    out["pays_off_per_fold"] = out["fold_net_seconds_cold_cache"] > 0
    out["pays_off_per_fold_warm_cache"] = out["fold_net_seconds_warm_cache"] > 0
    return out


def precision_matrix(model_name: str, cfg: BenchConfig, device: torch.device, steps: int,
                     prepared: Prepared) -> dict:
    """The bare training step in fp32 and under autocast, channels-first and channels_last."""
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    variants = {
        f"{precision}/{fmt_name}": Ceiling(model_name, cfg, device, precision, prepared, memory_format, steps)
        for memory_format, fmt_name in ((torch.contiguous_format, "contiguous"), (torch.channels_last, "channels_last"))
        for precision in precisions
    }
    return {key: f["images_per_second"] for key, f in measure(variants, steps, cfg.rounds, cfg.batch_size).items()}


# --------------------------------------------------------------------------- the run


def hardware_info(device: torch.device, precision: str) -> dict:
    info = hardware.describe(device)
    info["precision"] = precision
    info["native_bf16"] = bool(hardware.cpu_flags() & hardware.NATIVE_BF16_CPU_FLAGS)
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if device.type == "cuda":
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    return info


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run(cfg: BenchConfig, log=print) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = hardware.select_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precision = hardware.choose_precision(device, "auto")
    machine = hardware_info(device, precision)
    result = {"machine": machine, "load_average_start": load_average(),
              "settings": {"batch_size": cfg.batch_size, "warmup_steps": cfg.warmup, "rounds": cfg.rounds,
                           "augmentation": cfg.augmentation, "learning_rate": cfg.learning_rate,
                           "image_size": cfg.image_size, "data_dir": str(cfg.data_dir), "limit_per_class": cfg.limit,
                           "steps": {m: cfg.steps_for(m) for m in cfg.models}},
              "models": {}}
    log(describe_machine(machine))
    log(f"load average at start: {' '.join(map(str, result['load_average_start']))}")

    started = time.perf_counter()
    prepared = prepare(cfg, device)
    log(f"prepared {len(prepared.labels)} images at {cfg.image_size} px on {device} "
        f"in {time.perf_counter() - started:.1f} s (not timed below)")

    for model_name in cfg.models:
        steps = cfg.steps_for(model_name)
        spec = get_spec(model_name)
        log(f"\n{model_name} ({spec.input_size} x {spec.input_size}), batch {cfg.batch_size}: median of {cfg.rounds} "
            f"interleaved rounds of {steps} timed steps, after {cfg.warmup} warm-up steps per variant")
        figures = {"input_size": spec.input_size, "steps": steps}
        compile_costs_ = None
        variants: dict[str, Variant] = {}
        try:
            variants["ordinary"] = Ordinary(model_name, cfg, device)
            variants["project_augmented"] = Project(model_name, cfg, device, precision, prepared, augment=True)
            variants["project_plain"] = Project(model_name, cfg, device, precision, prepared, augment=False)
            variants["ceiling"] = Ceiling(model_name, cfg, device, precision, prepared, steps=steps)
            if cfg.compile:
                variants["project_compiled"], compile_costs_ = compile_variant(model_name, cfg, device, precision, prepared)
            figures.update(measure(variants, steps, cfg.rounds, cfg.batch_size))
        finally:
            for variant in variants.values():
                variant.close()
        for key, variant in variants.items():
            log(format_figure(variant.label, figures[key]))
        ordinary, augmented = figures["ordinary"], figures["project_augmented"]
        plain, ceiling = figures["project_plain"], figures["ceiling"]
        figures["ratio_project_to_ordinary"] = paired_ratio(augmented, ordinary)
        # (t2 - t3) / t2 with t the seconds per image
        figures["share_not_in_ceiling"] = 1 - paired_ratio(augmented, ceiling)
        figures["share_not_in_ceiling_plain"] = 1 - paired_ratio(plain, ceiling)
        figures["ratio_ceiling_to_ordinary"] = paired_ratio(ceiling, ordinary)
        log("  round by round, median over the rounds:")
        log(f"  ratio 2/1 (augmented / ordinary):        {figures['ratio_project_to_ordinary']:6.2f} x")
        log(f"  share of 2's time not in 3, augmented:   {figures['share_not_in_ceiling']:6.1%}")
        log(f"  share of 2's time not in 3, plain:       {figures['share_not_in_ceiling_plain']:6.1%}")
        log(f"  ceiling / ordinary:                      {figures['ratio_ceiling_to_ordinary']:6.2f} x")
        if compile_costs_ is not None:
            c = figures["compile"] = compile_summary(compile_costs_, figures["project_augmented"],
                                                     figures.pop("project_compiled"), len(prepared.labels),
                                                     cfg.fold_epochs)
            log(f"  torch.compile: {c['speedup_over_eager']:.2f} x eager; compile {c['compile_seconds_cold_cache']:.1f} s "
                f"per fold with a cold cache, {c['compile_seconds_warm_cache']:.1f} s warm; saves "
                f"{c['saving_per_epoch_seconds']:.2f} s per {c['epoch_images']}-image epoch; net over "
                f"{c['fold_epochs']} epochs: {c['fold_net_seconds_cold_cache']:+.1f} s cold, "
                f"{c['fold_net_seconds_warm_cache']:+.1f} s warm")
        if cfg.precision_matrix:
            m = figures["precision_matrix"] = precision_matrix(model_name, cfg, device, steps, prepared)
            log("  bare training step, img/s: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()))
        result["models"][model_name] = figures
    result["load_average_end"] = load_average()
    log(f"\nload average at end: {' '.join(map(str, result['load_average_end']))}")
    return result


def describe_machine(machine: dict) -> str:
    what = machine.get("gpu") or machine["cpu"]
    flags = " ".join(machine["cpu_flags"]) or "none of " + ", ".join(hardware.REPORTED_CPU_FLAGS)
    return (f"device {machine['device']}: {what}; CPU flags: {flags}; torch {machine['torch']} "
            f"({machine['cpu_capability']}), {machine['threads']} threads; precision of the project path: "
            f"{machine['precision']}")


def format_figure(label: str, f: dict) -> str:
    extra = f"{f['precision']}, {f['memory_format']}"
    if len(f.get("rounds_images_per_second", [])) > 1:
        extra += ", rounds " + "/".join(f"{x:.0f}" for x in f["rounds_images_per_second"])
    if "workers" in f:
        extra += f", {f['workers']} workers"
    return f"  {label:<52} {f['images_per_second']:8.1f} img/s  ({f['images']} images in {f['seconds']:.2f} s; {extra})"


# --------------------------------------------------------------------------- command line


def read_config(path: Path) -> dict:
    """A workflow config with the schema's defaults filled in, as the workflow reads it (also
    where Snakemake is not installed: cvgrid.acceptance.read_config)."""
    from cvgrid.acceptance import read_config as read_with_defaults

    return read_with_defaults(path, SCHEMA)


def parse_steps(text: str) -> dict[str, int]:
    """'40' (every model) or 'model_a=40,model_b=12'."""
    steps = {}
    for part in text.split(","):
        name, _, count = part.rpartition("=")
        steps[name.strip() or "*"] = int(count)
        if int(count) < 1:
            raise argparse.ArgumentTypeError(f"steps must be positive, got {part!r}")
    return steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="model_a,model_b", help="comma-separated model names")
    p.add_argument("--steps", type=parse_steps, default=parse_steps("model_a=40,model_b=12"),
                   help="timed steps: N for every model, or model_a=40,model_b=12 (default)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before each timing (default 5)")
    p.add_argument("--rounds", type=int, default=7,
                   help="timing rounds per variant, interleaved across variants; the median counts, ratios are taken round by round (default 7)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data-dir", type=Path, required=True, help="folder of CLASS/*.jpg")
    p.add_argument("--config", type=Path, default=REFERENCE_CONFIG,
                   help="workflow config with the augmentation policy and learning rates (default: config/config.yaml)")
    p.add_argument("--augmentation", default="affine", help="name of the config's policy to time (default affine)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="Adam's learning rate (default: the median of the config's grid.learning_rate)")
    p.add_argument("--image-size", type=int, default=100, help="size of the prepared array (config image_size)")
    p.add_argument("--limit", type=int, default=None, help="only the first LIMIT images of each class")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers of the ordinary recipe (default: one per core, at most 8)")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile on the project path and its compile seconds per fold")
    p.add_argument("--fold-epochs", type=int, default=20, help="epochs of a typical fold, for --compile")
    p.add_argument("--precision-matrix", action="store_true",
                   help="also time the bare step in fp32/bf16 x channels-first/channels_last")
    p.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    a = p.parse_args(argv)
    if not a.data_dir.is_dir():
        sys.exit(f"error: --data-dir {a.data_dir} is not a folder of CLASS/*.jpg")
    config = read_config(a.config)
    try:
        augmentation = augmentation_policy(config["augmentations"], a.augmentation)
    except ConfigError as error:
        sys.exit(f"error: {a.config}: {error}")
    learning_rate = a.learning_rate or statistics.median(config["grid"]["learning_rate"])
    cfg = BenchConfig(
        data_dir=a.data_dir, augmentation=augmentation, learning_rate=learning_rate,
        models=tuple(m.strip() for m in a.models.split(",") if m.strip()), steps=a.steps, warmup=a.warmup,
        batch_size=a.batch_size, image_size=a.image_size, limit=a.limit,
        device=a.device, workers=a.workers, threads=a.threads, compile=a.compile,
        fold_epochs=a.fold_epochs, precision_matrix=a.precision_matrix, rounds=a.rounds,
    )
    result = run(cfg, log=lambda line: print(line, flush=True))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {a.out}")


if __name__ == "__main__":
    sys.exit(main())
