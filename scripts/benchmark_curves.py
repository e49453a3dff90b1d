#!/usr/bin/env python
"""What writing TensorBoard curves (cvgrid.curves, training.tensorboard) costs the training
loop: the same epochs with and without the writer, side by side in one run.

Two copies of one model (same seed, same images) are trained epoch by epoch in alternation,
the order swapped every round so that a drift of the machine's load falls on both: ``off``
is an epoch as `fit` runs it (train_epoch, then evaluate on the early-stopping part); ``on``
is the same epoch followed by ``curves.epoch`` with history.tsv's values. Reported: each
variant's median seconds per epoch, the median round-by-round ratio on / off, the writer's
own seconds per epoch (timed around ``curves.epoch``: what the loop waits for; the files are
written by the writer's thread) and the one-time cost of the first epoch's call (the import
of torch.utils.tensorboard and the opening of the event file). A development tool: the
workflow never calls it.

    python scripts/benchmark_curves.py --data-dir ../shared/datasets/sign-language-digits --limit 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cvgrid import hardware
from cvgrid.curves import open_curves, read_curves
from cvgrid.data import class_names, prepare_dataset
from cvgrid.models import build_model, get_spec
from cvgrid.training import BatchTransform, FoldRandom, TrainSettings, evaluate, train_epoch


class Fit:
    """One model trained epoch by epoch as `fit` does, with or without the curves writer."""

    def __init__(self, model_name, data, labels, train_idx, val_idx, settings, device, precision, curves_dir=None):
        torch.manual_seed(settings.seed)
        self.model = build_model(model_name, int(labels.max()) + 1).to(device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.learning_rate)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.transform = BatchTransform(get_spec(model_name).input_size, settings)
        self.random = FoldRandom(settings.seed, device)  # the permutations on the CPU, the augmentation on the device
        self.data, self.labels, self.train_idx, self.val_idx = data, labels, train_idx, val_idx
        self.settings, self.device, self.precision = settings, device, precision
        self.curves = open_curves(curves_dir, enabled=curves_dir is not None)
        self.epochs, self.writer_seconds = 0, []

    def epoch(self) -> float:
        """Seconds of one epoch, the writer's call included."""
        started = time.perf_counter()
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=self.random.order).to(self.device)]
        train_loss, train_accuracy, seconds = train_epoch(
            model=self.model, optimizer=self.optimizer, scheduler=None, scaler=self.scaler, data=self.data,
            labels=self.labels, order=order, transform=self.transform, augment_generator=self.random.augment,
            settings=self.settings, device=self.device, precision=self.precision)
        val_loss, val_accuracy, _ = evaluate(self.model, data=self.data, labels=self.labels, indices=self.val_idx,
                                             transform=self.transform, device=self.device, precision=self.precision,
                                             batch_size=self.settings.eval_batch_size)
        self.epochs += 1
        writing = time.perf_counter()
        self.curves.epoch(self.epochs, {"train_loss": train_loss, "train_accuracy": train_accuracy,
                                        "val_loss": val_loss, "val_accuracy": val_accuracy, "seconds": seconds})
        self.writer_seconds.append(time.perf_counter() - writing)
        return time.perf_counter() - started


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="folder of CLASS/*.jpg")
    p.add_argument("--limit", type=int, default=60, help="images per class (default 60)")
    p.add_argument("--model", default="model_a")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=8, help="epochs of each variant, interleaved (default 8)")
    p.add_argument("--image-size", type=int, default=100)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None, help="write the figures to this JSON file")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = hardware.select_device(a.device)
    precision = hardware.choose_precision(device, "auto")

    images, index, _ = prepare_dataset(a.data_dir, a.image_size)
    keep = index.groupby("label", sort=False).head(a.limit).index.to_numpy()
    images, index = images[keep], index.iloc[keep].reset_index(drop=True)
    data = torch.from_numpy(images).permute(0, 3, 1, 2).to(device).contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(np.array(index["label"], dtype=np.int64)).to(device)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_val = len(labels) // 10
    val_idx, train_idx = order[:n_val].sort().values.to(device), order[n_val:].to(device)
    settings = TrainSettings(model=a.model, batch_size=a.batch_size, learning_rate=0.0004, augmentation="none",
                             rotation_degrees=0.0, shift_fraction=0.0, zoom_fraction=0.0,
                             max_epochs=a.rounds, patience=a.rounds, seed=0, repeat=0, fold=0)
    machine = {**hardware.describe(device), "precision": precision}
    print(f"device {machine['device']}: {machine.get('gpu') or machine['cpu']}; torch {machine['torch']}, "
          f"{machine['threads']} threads, {precision}; {len(train_idx)} training and {n_val} validation images "
          f"of {len(class_names(index))} classes, {a.model}, batch {a.batch_size}")

    with tempfile.TemporaryDirectory() as tmp:
        fits = {"off": Fit(a.model, data, labels, train_idx, val_idx, settings, device, precision),
                "on": Fit(a.model, data, labels, train_idx, val_idx, settings, device, precision, Path(tmp))}
        seconds = {name: [] for name in fits}
        for r in range(a.rounds):
            for name in (("off", "on") if r % 2 == 0 else ("on", "off")):
                seconds[name].append(fits[name].epoch())
        fits["on"].curves.close()
        written = read_curves(tmp)  # the curves are really there, every epoch
        assert [step for step, _ in written["val_loss"]] == list(range(1, a.rounds + 1)), written

    # The first epoch of each is a warm-up (allocator, caches; for "on" the writer's opening).
    ratios = [on / off for on, off in zip(seconds["on"][1:], seconds["off"][1:])]
    writer = fits["on"].writer_seconds
    figures = {
        "machine": machine, "rounds": a.rounds, "train_images": len(train_idx), "validation_images": n_val,
        "seconds_per_epoch_off": statistics.median(seconds["off"][1:]),
        "seconds_per_epoch_on": statistics.median(seconds["on"][1:]),
        "ratio_on_to_off": statistics.median(ratios),
        "ratio_on_to_off_range": [min(ratios), max(ratios)],
        "writer_seconds_per_epoch": statistics.median(writer[1:]),
        "writer_share_of_epoch": statistics.median(w / s for w, s in zip(writer[1:], seconds["on"][1:])),
        "writer_first_call_seconds": writer[0],
    }
    print(f"epoch without curves: {figures['seconds_per_epoch_off']:.3f} s, with: {figures['seconds_per_epoch_on']:.3f} s "
          f"(medians of {a.rounds - 1} epochs after the first)")
    print(f"ratio with / without, round by round: median {figures['ratio_on_to_off']:.4f} "
          f"(range {min(ratios):.4f} to {max(ratios):.4f}: the machine's noise)")
    print(f"the writer's own time in the loop: {1e6 * figures['writer_seconds_per_epoch']:.0f} us per epoch "
          f"= {figures['writer_share_of_epoch']:.2e} of an epoch; its first call (import, file opened): "
          f"{figures['writer_first_call_seconds']:.3f} s once per training process")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
