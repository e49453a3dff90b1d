#!/usr/bin/env python
"""How the workflow scales with the grid and the data set: scheduling, the gather step, the
figures and the data step, measured on stub grids and synthetic image folders.

Everything is built in a temporary folder and removed at the end; nothing is trained. Parts:

- ``sched``: the real workflow (a copy of REPO's workflow/, scripts/, config/, profiles/)
  run with ``snakemake --profile profiles/local`` up to results/cv_summary.tsv, on a grid
  of N jobs whose training script is a stub that writes metrics.json, history.tsv and
  predictions.tsv at once. Planning = seconds until the first job ends; jobs/min is counted
  from then on. A run longer than --cap is stopped and measured up to there (said so).
- ``gather``: scripts/summarize_cv.py on N stub metrics.json files.
- ``figures``: the heatmap, the fold plot and the parallel coordinates of a synthetic grid
  of 2, 20 and 200 heatmap panels (9 grid points, 5 folds each).
- ``data``: scripts/prepare_dataset.py on a folder of N synthetic JPEGs at image_size 100.

Each measurement runs in its own process: wall seconds and peak memory (the largest resident
set of the process and its children, from wait4). A measurement longer than --timeout is
stopped and shown as "> timeout". The table goes to stdout.

    python scripts/bench_scale.py                          # this checkout, every part
    python scripts/bench_scale.py --repo /path/to/other/checkout --parts gather,figures
    python scripts/bench_scale.py --jobs 180,1800,9000 --cap 120

Run it on a quiet machine; the figures of a shared machine move with its load.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

HERE = Path(__file__).resolve().parents[1]

# The stub that replaces scripts/train.py: the outputs the train rule expects, at once.
STUB_TRAIN = '''\
import argparse, json, os, random
p = argparse.ArgumentParser()
for name in ("--images", "--index", "--folds", "--settings", "--precision", "--device", "--threads", "--weights",
             "--checkpoint-seconds", "--out-dir", "--checkpoint"):
    p.add_argument(name)
p.add_argument("--repeat", type=int)
p.add_argument("--fold", type=int)
a, _ = p.parse_known_args()  # options it does not need (--gpus-requested, ...) are ignored
settings = json.loads(a.settings)
random.seed(f"{a.settings}{a.repeat}{a.fold}")
correct = random.randint(80, 99)  # of 100 test images
accuracy = correct / 100
config = {**settings, "repeat": a.repeat, "fold": a.fold}
os.makedirs(a.out_dir, exist_ok=True)
with open(os.path.join(a.out_dir, "history.tsv"), "w") as f:
    f.write("epoch\\ttrain_loss\\ttrain_accuracy\\tval_loss\\tval_accuracy\\n1\\t1.0\\t0.5\\t1.0\\t0.5\\n")
with open(os.path.join(a.out_dir, "predictions.tsv"), "w") as f:
    f.write("sample\\tfile\\ttrue\\tpredicted\\tprobability\\n")
    for k in range(100):
        t = k % 2
        f.write(f"{k}\\tc{t}/{k}.jpg\\t{t}\\t{t if k < correct else 1 - t}\\t0.9\\n")
with open(os.path.join(a.out_dir, "metrics.json"), "w") as f:
    json.dump({"accuracy": accuracy, "loss": 1 - accuracy, "epochs_run": 1, "best_epoch": 1, "n_train": 1,
               "n_validation": 1, "n_test": 100, "seconds": 0.0, "config": config}, f)
'''


def measure(cmd, timeout, cwd=None, env=None, poll=None):
    """Run `cmd` in its own process group: (status, wall seconds, peak RSS in MB, output tail).
    status is "ok", "failed: ..." or "stopped". `poll(elapsed)` is called every second and
    may return True to stop the run early (status "stopped")."""
    start = time.monotonic()
    log = tempfile.TemporaryFile()
    try:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as error:  # e.g. "Argument list too long"
        return f"failed: {error.strerror}", time.monotonic() - start, None, ""
    status = None
    while True:
        pid, code, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        elapsed = time.monotonic() - start
        if elapsed > timeout or (poll and poll(elapsed)):
            status = "stopped"
            os.killpg(process.pid, signal.SIGTERM)
            time.sleep(2)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pid, code, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.2 if elapsed < 5 else 1.0)
    wall = time.monotonic() - start
    log.seek(0)
    tail = log.read().decode(errors="replace")[-3000:]
    if status is None:
        status = "ok" if os.waitstatus_to_exitcode(code) == 0 else f"failed: exit {os.waitstatus_to_exitcode(code)}"
    return status, wall, usage.ru_maxrss / 1024, tail


def python_env(repo: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(repo / "scripts")
    env["MPLBACKEND"] = "Agg"
    return env


# --- stub grids ----------------------------------------------------------------------------------

def grid_of(jobs: int, folds: int = 5) -> dict:
    """A model_a grid of `jobs` jobs (a multiple of 2 x folds): batch sizes x learning rates x
    augmentation {none, affine}."""
    points = jobs // folds // 2
    batches = max(d for d in range(1, int(points**0.5) + 1) if points % d == 0)
    rates = points // batches
    return {"model": ["model_a"], "batch_size": [8 * (i + 1) for i in range(batches)],
            "learning_rate": [round(1e-4 * (i + 1), 6) for i in range(rates)], "augmentation": ["none", "affine"]}


@functools.cache
def stub_predictions(correct: int) -> str:
    """A predictions.tsv of 100 test images (two classes) with `correct` of them right: the
    gather scores every fold's predictions, so a stub's must agree with its metrics.json."""
    rows = [f"{k}\tc{k % 2}/{k}.jpg\t{k % 2}\t{k % 2 if k < correct else 1 - k % 2}\t0.9\n" for k in range(100)]
    return "sample\tfile\ttrue\tpredicted\tprobability\n" + "".join(rows)


def write_metrics(root: Path, jobs: int) -> list[Path]:
    grid = grid_of(jobs)
    paths = []
    for b in grid["batch_size"]:
        for lr in grid["learning_rate"]:
            for aug in grid["augmentation"]:
                for fold in range(5):
                    path = (root / "train" / "model~model_a" / f"batch_size~{b}" / f"learning_rate~{lr}"
                            / f"augmentation~{aug}" / "repeat~0" / f"fold~{fold}" / "metrics.json")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    correct = 80 + (b * 7 + int(lr * 1e4) * 3 + fold) % 20  # of 100 test images
                    accuracy = correct / 100
                    path.with_name("predictions.tsv").write_text(stub_predictions(correct))
                    path.write_text(json.dumps({
                        "accuracy": accuracy, "loss": 1 - accuracy, "epochs_run": 10, "best_epoch": 5, "n_train": 1500,
                        "n_validation": 150, "n_test": 100, "seconds": 60.0,
                        "config": {"model": "model_a", "batch_size": b, "learning_rate": lr, "augmentation": aug,
                                   "repeat": 0, "fold": fold}}))
                    paths.append(path)
    return paths


def bench_gather(repo: Path, work: Path, sizes, timeout) -> list[dict]:
    rows = []
    script = repo / "scripts" / "summarize_cv.py"
    takes_list = "--metrics-list" in script.read_text()
    for jobs in sizes:
        root = work / f"gather{jobs}"
        paths = write_metrics(root, jobs)
        out = ["--folds-out", str(root / "cv_folds.tsv"), "--summary-out", str(root / "cv_summary.tsv"),
               "--axes", "model,batch_size,learning_rate,augmentation"]
        if "--metric" in script.read_text():  # statistics.metric (issue 26); older checkouts rank by accuracy
            out += ["--metric", "accuracy"]
        if takes_list:
            (root / "jobs.txt").write_text("".join(f"{p}\n" for p in paths))
            inputs = ["--metrics-list", str(root / "jobs.txt")]
        else:
            inputs = [str(p) for p in paths]
        status, wall, peak, tail = measure([sys.executable, str(script), *out, *inputs], timeout,
                                           env=python_env(repo))
        rows.append({"part": "gather (summarize_cv.py)", "size": f"{len(paths)} jobs", "status": status,
                     "wall_s": wall, "peak_mb": peak, "rate": None})
        shutil.rmtree(root)
    return rows


# --- figures -------------------------------------------------------------------------------------

FIGURE_CODE = '''
import sys, time
import numpy as np, pandas as pd
from cvgrid import plots
from cvgrid.summary import cv_summary
panels, figure, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rng = np.random.default_rng(0)
rows = [{"model": "model_a", "batch_size": b, "learning_rate": lr, "augmentation": f"policy{p:04d}",
         "repeat": 0, "fold": f, "accuracy": float(rng.uniform(0.8, 0.99)), "epochs_run": 10, "seconds": 60.0}
        for p in range(panels) for b in (32, 64, 128) for lr in (0.0001, 0.0004, 0.001) for f in range(5)]
folds = pd.DataFrame(rows)
summary = cv_summary(folds, metric="accuracy")
start = time.monotonic()
if figure == "heatmap":
    plots.heatmap(summary, "model_a", out, metric="accuracy")
elif figure == "fold plot":
    plots.fold_accuracies(folds, summary, out, metric="accuracy")
else:
    plots.parallel_coordinates(summary, out, metric="accuracy")
'''


def bench_figures(repo: Path, work: Path, sizes, timeout) -> list[dict]:
    rows = []
    for figure in ("heatmap", "fold plot", "parallel coordinates"):
        for panels in sizes:
            out = work / f"{figure.replace(' ', '_')}_{panels}.svg"
            status, wall, peak, tail = measure([sys.executable, "-c", FIGURE_CODE, str(panels), figure, str(out)],
                                               timeout, env=python_env(repo))
            size = f"{out.stat().st_size / 1e6:.1f} MB svg" if out.exists() else ""
            rows.append({"part": f"figure: {figure}", "size": f"{panels} panels, {9 * panels} points",
                         "status": status if status != "ok" else f"ok, {size}", "wall_s": wall, "peak_mb": peak,
                         "rate": None})
            out.unlink(missing_ok=True)
            if status == "stopped":  # a bigger grid would only take longer
                break
    return rows


# --- data ----------------------------------------------------------------------------------------

def write_folder(root: Path, images: int, classes: int = 10, side: int = 120) -> Path:
    """`images` JPEGs of `side` x `side` in `classes` class folders: a colour per class plus noise."""
    rng = np.random.default_rng(0)
    noise = [rng.integers(-20, 20, (side, side, 3)) for _ in range(16)]
    for i in range(images):
        label = i % classes
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array([(37 * label) % 256, (91 * label) % 256, (151 * label) % 256])
        pixels = np.clip(colour + noise[i % 16], 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:06d}.jpg", quality=90)
    return root


def bench_data(repo: Path, work: Path, sizes, timeout) -> list[dict]:
    rows = []
    for images in sizes:
        folder = write_folder(work / f"images{images}", images)
        out = work / f"prepared{images}"
        cmd = [sys.executable, str(repo / "scripts" / "prepare_dataset.py"), "--data-dir", str(folder), "--size", "100",
               "--images", str(out / "images.npy"), "--index", str(out / "index.tsv"),
               "--report", str(out / "report.json")]
        status, wall, peak, tail = measure(cmd, timeout, env=python_env(repo))
        rows.append({"part": "data (prepare_dataset.py, 100 px)",
                     "size": f"{images} images, {images * 100 * 100 * 3 / 1e6:.0f} MB array", "status": status,
                     "wall_s": wall, "peak_mb": peak, "rate": images / wall * 60 if status == "ok" else None})
        shutil.rmtree(folder)
        shutil.rmtree(out, ignore_errors=True)
    return rows


# --- scheduling ----------------------------------------------------------------------------------

def stub_workflow(repo: Path, work: Path) -> Path:
    """A copy of REPO's workflow whose training script is the stub."""
    copy = work / "workflow_copy"
    for name in ("workflow", "scripts", "config", "profiles", "envs"):
        if (repo / name).exists():
            shutil.copytree(repo / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "scripts" / "train.py").write_text(STUB_TRAIN)
    return copy


def bench_sched(repo: Path, work: Path, sizes, cap, timeout, extra=()) -> list[dict]:
    copy = stub_workflow(repo, work)
    data = write_folder(work / "sched_images", 40, classes=2, side=32)
    profile = yaml.safe_load((copy / "profiles" / "local" / "config.yaml").read_text()) or {}
    scheduler = " ".join([profile.get("scheduler", "ilp (Snakemake's default)"), *extra])
    if profile.get("scheduler-subsample"):
        scheduler += f", subsample {profile['scheduler-subsample']}"
    rows = []
    for jobs in sizes:
        run = work / f"sched{jobs}"
        run.mkdir()
        config = yaml.safe_load((copy / "config" / "config.yaml").read_text())
        config.update(data_dir=str(data), grid=grid_of(jobs))
        config["training"]["threads"] = 1
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        train = run / "results" / "train"
        marks = {}

        def poll(elapsed, train=train, marks=marks):
            done = sum(1 for _ in train.glob("*/*/*/*/*/*/metrics.json")) if train.exists() else 0
            if done and "first" not in marks:
                marks["first"] = (elapsed, done)
            marks["last"] = (elapsed, done)
            return "first" in marks and elapsed - marks["first"][0] > cap

        cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(copy / "workflow" / "Snakefile"),
               "-d", str(run), "--configfile", str(run / "config.yaml"), "--profile", str(copy / "profiles" / "local"),
               "--cores", "2", *extra, "results/cv_summary.tsv"]
        status, wall, peak, tail = measure(cmd, timeout, cwd=run, env=python_env(repo), poll=poll)
        done = sum(1 for _ in train.glob("*/*/*/*/*/*/metrics.json")) if train.exists() else 0
        first_t, first_n = marks.get("first", (wall, 0))
        end_t = wall if status == "ok" else marks.get("last", (wall, done))[0]
        rate = (done - first_n) / (end_t - first_t) * 60 if end_t > first_t else None
        note = f"ok, planned in {first_t:.0f} s" if status == "ok" else (
            f"{status} after {end_t - first_t:.0f} s of jobs: {done} of {jobs} done, planned in {first_t:.0f} s")
        if status.startswith("failed"):
            note += " | " + tail.strip().splitlines()[-1][:120] if tail.strip() else ""
        rows.append({"part": f"scheduling ({scheduler})", "size": f"{jobs} stub jobs", "status": note,
                     "wall_s": wall, "peak_mb": peak, "rate": rate})
        shutil.rmtree(run)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| part | size | wall (s) | peak RSS (MB) | per minute | status |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        rate = f"{r['rate']:.0f}" if r["rate"] else ""
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] else ""
        lines.append(f"| {r['part']} | {r['size']} | {r['wall_s']:.1f} | {peak} | {rate} | {r['status']} |")
    return "\n".join(lines)


def numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=HERE, help="the checkout to measure (default: this one)")
    p.add_argument("--parts", default="sched,gather,figures,data", help="comma-separated: sched,gather,figures,data")
    p.add_argument("--jobs", type=numbers, default=[180, 1800, 9000], help="stub grid sizes for sched")
    p.add_argument("--gather-jobs", type=numbers, default=[180, 1800, 25000])
    p.add_argument("--panels", type=numbers, default=[2, 20, 200])
    p.add_argument("--images", type=numbers, default=[2062, 20000])
    p.add_argument("--cap", type=float, default=120, help="seconds of jobs after which a sched run is stopped")
    p.add_argument("--timeout", type=float, default=600, help="seconds after which any measurement is stopped")
    p.add_argument("--snakemake-args", default="", help="more snakemake options for sched, e.g. '--scheduler ilp'")
    a = p.parse_args(argv)
    repo = a.repo.resolve()
    parts = a.parts.split(",")
    commit = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%h %s"], capture_output=True,
                            text=True).stdout.strip()
    print(f"# bench_scale: {repo} at {commit}; {os.cpu_count()} CPUs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_scale.") as tmp:
        work = Path(tmp)
        if "gather" in parts:
            rows += bench_gather(repo, work, a.gather_jobs, a.timeout)
            print(table(rows[-len(a.gather_jobs):]), flush=True, file=sys.stderr)
        if "figures" in parts:
            rows += bench_figures(repo, work, a.panels, a.timeout)
        if "data" in parts:
            rows += bench_data(repo, work, a.images, a.timeout)
        if "sched" in parts:
            rows += bench_sched(repo, work, a.jobs, a.cap, a.timeout, a.snakemake_args.split())
    print(textwrap.dedent(table(rows)))


if __name__ == "__main__":
    main()
