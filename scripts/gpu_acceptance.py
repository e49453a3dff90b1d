#!/usr/bin/env python
"""The GPU acceptance run: on a machine with one GPU, in one call and under 8 minutes, what the
workflow's GPU path does there. No Snakemake, no network: the data set is a folder copied beside
the repository, the scripts are called as the rules call them, and torch may be older than the
pinned one (2.11 or newer).

1. the device check of a training job (cvgrid.hardware.gpu_check: torch build, nvidia-smi,
   compute capability, precision, TF32, free memory against the data array);
2. scripts/benchmark.py for model A and model B on the device;
3. the five folds of one grid point (model A, batch 64, learning rate 0.0004, affine) with
   scripts/train.py, at precision auto and at fp16 (on the CPU: auto and fp32);
4. training.parallel_folds 1, 2, 4, 8: the same eight folds (repeat 0's five, repeat 1's first
   three) of that grid point, each a fixed number of epochs (--parallel-epochs), by one train.py
   --parallel-folds N: its wall time, the speed-up over one at a time, and whether each fold's
   predictions are those it got one at a time (on the CPU every N means 1, said in its log: 1 and 2 only);

and writes one JSON (default docs/benchmarks/gpu-<gpu name>.json). --cpu checks the whole run
quickly on a machine without a GPU (few images, one epoch, few steps).

    python scripts/gpu_acceptance.py --data-dir data/sign-language-digits        # make gpu-acceptance
    python scripts/gpu_acceptance.py --data-dir DATA --cpu --out /tmp/cpu.json    # the check without a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

from cvgrid.acceptance import fold_summary, parallel_summary, read_config, slug, torch_version_ok  # noqa: E402

CONFIG = REPO / "config" / "config.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
POINT = {"model": "model_a", "batch_size": 64, "learning_rate": 0.0004, "augmentation": "affine"}
FOLDS = 5
PARALLEL = (1, 2, 4, 8)  # training.parallel_folds tried
PARALLEL_FOLDS = [(0, f) for f in range(FOLDS)] + [(1, f) for f in range(3)]  # 8 folds: (repeat, fold)
BUDGET_S = 8 * 60


def run(args: list, log_file: Path) -> float:
    """A script as the workflow's rules run it (its output to its log); the seconds it took.
    A failure stops the acceptance run with the log's end."""
    env = dict(os.environ, PYTHONPATH=f"{SCRIPTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    started = time.monotonic()
    with log_file.open("w") as out:
        proc = subprocess.run([sys.executable, *map(str, args)], stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, args[:1]))} failed (exit {proc.returncode}); "
                 f"its log {log_file} ends:\n{log_file.read_text()[-3000:]}")
    return time.monotonic() - started


def subset(data_dir: Path, per_class: int, dest: Path) -> Path:
    """The first `per_class` images of each class, linked into `dest` (the CPU check)."""
    for class_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        (dest / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            (dest / class_dir.name / image.name).symlink_to(image.resolve())
    return dest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, required=True, help="the data set: a folder of CLASS/*.jpg")
    p.add_argument("--cpu", action="store_true", help="check the run on the CPU: few images, one epoch")
    p.add_argument("--out", type=Path, default=None, help="the JSON (default docs/benchmarks/gpu-<gpu>.json)")
    p.add_argument("--work", type=Path, default=None, help="folder for the prepared data and logs (default: a temporary one)")
    p.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="CPU threads per training job")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="cap the folds' epochs (default: the config's training.max_epochs; 1 with --cpu)")
    p.add_argument("--parallel-epochs", type=int, default=None,
                   help="epochs of every fold in the parallel-folds runs, no early stop (default 5; 1 with --cpu)")
    a = p.parse_args(argv)
    started = time.monotonic()

    import torch

    from cvgrid import hardware
    from cvgrid.grid import point_settings

    if not torch_version_ok(torch.__version__):
        sys.exit(f"error: torch {torch.__version__} is older than 2.11, which this run needs")
    if not a.data_dir.is_dir():
        sys.exit(f"error: --data-dir {a.data_dir} is not a folder of CLASS/*.jpg")
    device = "cpu" if a.cpu else "cuda"
    work = a.work or Path(tempfile.mkdtemp(prefix="gpu-acceptance-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    data_dir = subset(a.data_dir, 12, work / "subset") if a.cpu else a.data_dir
    config = read_config(CONFIG, SCHEMA)
    record: dict = {"mode": "cpu check" if a.cpu else "gpu", "point": POINT, "data_dir": str(a.data_dir),
                    "torch": torch.__version__, "python": sys.version.split()[0]}

    # 1. The data, as the workflow prepares it, and the device check of a training job.
    images, index, folds = work / "images.npy", work / "index.tsv", work / "folds.tsv"
    run([SCRIPTS / "prepare_dataset.py", "--data-dir", data_dir, "--size", config["image_size"],
         "--images", images, "--index", index, "--report", work / "dataset.json"], logs / "prepare.log")
    run([SCRIPTS / "make_folds.py", "--index", index, "--folds", FOLDS, "--repeats", 1, "--seed",
         config["cv"]["seed"], "--validation-fraction", config["cv"]["validation_fraction"], "--out", folds],
        logs / "folds.log")
    try:
        record["device_check"] = hardware.gpu_check(device, "auto", 0 if a.cpu else 1, images)
    except hardware.CudaUnusable as error:
        sys.exit(f"error: {error}")
    gpu_name = record["device_check"].get("gpu", "cpu")

    # 2. The benchmark of both models on the device.
    steps = ["--steps", "2", "--rounds", "1", "--warmup", "1", "--limit", "12"] if a.cpu else []
    bench = work / "benchmark.json"
    record["benchmark_seconds"] = round(run(
        [SCRIPTS / "benchmark.py", "--data-dir", data_dir, "--models", "model_a,model_b", "--device", device,
         "--threads", a.threads, *steps, "--out", bench], logs / "benchmark.log"), 1)
    record["benchmark"] = json.loads(bench.read_text())

    # 3. Five folds of one grid point, at precision auto and fp16 (fp32 on the CPU).
    settings = point_settings(config, POINT)
    if a.max_epochs or a.cpu:
        settings["max_epochs"] = a.max_epochs or 1
    record["fold_settings"] = settings
    record["folds"] = {}
    for precision in ("auto", "fp32" if a.cpu else "fp16"):
        out_dirs = [work / f"folds-{precision}" / f"fold{f}" for f in range(FOLDS)]
        seconds = run([SCRIPTS / "train.py", "--images", images, "--index", index, "--folds", folds,
                       "--repeat", *[0] * FOLDS, "--fold", *range(FOLDS), "--settings", json.dumps(settings),
                       "--precision", precision, "--threads", a.threads, "--device", device,
                       "--out-dir", *out_dirs], logs / f"train-{precision}.log")
        metrics = [json.loads((d / "metrics.json").read_text()) for d in out_dirs]
        record["folds"][precision] = fold_summary(metrics, seconds)
    speeds = [record["folds"][p]["mean_images_per_second"] for p in record["folds"]]
    if all(speeds):
        record["images_per_second_ratio_second_to_auto"] = round(speeds[1] / speeds[0], 3)

    # 4. Several folds on one GPU at once (training.parallel_folds): the same eight folds, each the
    # same number of epochs (no early stop), so that the wall times compare.
    two_repeats = work / "folds-2-repeats.tsv"
    run([SCRIPTS / "make_folds.py", "--index", index, "--folds", FOLDS, "--repeats", 2, "--seed",
         config["cv"]["seed"], "--validation-fraction", config["cv"]["validation_fraction"], "--out", two_repeats],
        logs / "folds-2-repeats.log")
    epochs = a.parallel_epochs or (1 if a.cpu else 5)
    parallel_settings = {**settings, "max_epochs": epochs, "patience": epochs}
    record["parallel_folds"] = {"folds": len(PARALLEL_FOLDS), "epochs_per_fold": epochs, "precision": "auto", "runs": {}}
    one_at_a_time = None
    # On the CPU every N means 1 (the same work again): 1 and 2 check the wiring, no more.
    for n in PARALLEL[:2] if a.cpu else PARALLEL:
        out_dirs = [work / f"parallel-{n}" / f"repeat{r}-fold{f}" for r, f in PARALLEL_FOLDS]
        seconds = run([SCRIPTS / "train.py", "--images", images, "--index", index, "--folds", two_repeats,
                       "--repeat", *[r for r, f in PARALLEL_FOLDS], "--fold", *[f for r, f in PARALLEL_FOLDS],
                       "--settings", json.dumps(parallel_settings), "--precision", "auto", "--threads", a.threads,
                       "--device", device, "--parallel-folds", n, "--out-dir", *out_dirs], logs / f"parallel-{n}.log")
        metrics = [json.loads((d / "metrics.json").read_text()) for d in out_dirs]
        predictions = [(d / "predictions.tsv").read_text() for d in out_dirs]
        one_at_a_time = one_at_a_time or {"seconds": seconds, "predictions": predictions}
        record["parallel_folds"]["runs"][str(n)] = parallel_summary(metrics, seconds, predictions, one_at_a_time)

    record["seconds_total"] = round(time.monotonic() - started, 1)
    record["within_8_minutes"] = record["seconds_total"] <= BUDGET_S
    out = a.out or REPO / "docs" / "benchmarks" / f"gpu-{slug(gpu_name)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    print(f"{out}: {gpu_name}, {record['seconds_total']} s; folds: " + "; ".join(
        f"{p}: {s['precision']} {s['mean_images_per_second']} images/s, accuracy {s['mean_accuracy']:.3f}"
        for p, s in record["folds"].items()) + "; parallel folds: " + "; ".join(
        f"{n}: {r['wall_seconds']} s ({r['speed_up']}x), {r['same_predictions_as_one_at_a_time']} of "
        f"{r['folds']} folds as one at a time" for n, r in record["parallel_folds"]["runs"].items()))


if __name__ == "__main__":
    sys.exit(main())
