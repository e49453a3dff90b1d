"""`make status` (scripts/interim_summary.py): an interim summary of a half-finished run, marked
interim everywhere, verdicts only on complete grid points, and not one of the run's files
touched; no torch (it runs on a SLURM login node beside the controller)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, write_config

SCRIPT = str(REPO / "scripts" / "interim_summary.py")
N_TEST = 100
# The grid's four points (learning rates) and the fold accuracies finished so far, of 3 folds.
FINISHED = {0.001: [0.95, 0.96, 0.94], 0.0004: [0.70, 0.72, 0.69], 0.0001: [0.80], 0.004: []}
CONFIG = {
    "cv": {"folds": 3, "repeats": 1, "seed": 42},
    "models": {"model_a": {}},
    "augmentations": {"none": {}},
    "grid": {"model": ["model_a"], "batch_size": [16], "learning_rate": list(FINISHED), "augmentation": ["none"]},
}


def write_job(folder, learning_rate, fold, accuracy):
    """A finished job's files, as cvgrid.job writes them: predictions.tsv, then metrics.json."""
    folder.mkdir(parents=True)
    true = np.repeat([0, 1], N_TEST // 2)
    predicted = true.copy()
    predicted[: N_TEST - round(accuracy * N_TEST)] = 1
    pd.DataFrame({"sample": range(N_TEST), "file": [f"c{t}/{i}.jpg" for i, t in enumerate(true)], "true": true,
                  "predicted": predicted, "probability": 0.9}).to_csv(folder / "predictions.tsv", sep="\t", index=False)
    (folder / "history.tsv").write_text("epoch\n1\n")
    (folder / "metrics.json").write_text(json.dumps({
        "accuracy": accuracy, "loss": 0.2, "epochs_run": 5, "best_epoch": 4, "n_train": 200, "n_validation": 20,
        "n_test": N_TEST, "seconds": 10.0,
        "config": {"model": "model_a", "batch_size": 16, "learning_rate": learning_rate, "augmentation": "none",
                   "repeat": 0, "fold": fold}}))


@pytest.fixture
def running(tmp_path):
    """A run's working directory in the middle of the grid: two points complete, one with 1 of
    3 folds (a second fold being trained), one not started; Snakemake's lock held."""
    work = tmp_path / "work"
    for learning_rate, accuracies in FINISHED.items():
        point = work / f"results/train/model~model_a/batch_size~16/learning_rate~{learning_rate}/augmentation~none"
        for fold, accuracy in enumerate(accuracies):
            write_job(point / f"repeat~0/fold~{fold}", learning_rate, fold, accuracy)
    training = work / "results/train/model~model_a/batch_size~16/learning_rate~0.0001/augmentation~none/repeat~0/fold~1"
    training.mkdir(parents=True)
    (training / "predictions.tsv").write_text("sample\tfile\n")  # being written: no metrics.json yet
    (work / "results/data").mkdir(parents=True)
    (work / "results/data/folds.tsv").write_text("repeat\tfold\tsample\trole\n")
    (work / ".snakemake/locks").mkdir(parents=True)
    (work / ".snakemake/locks/0.input.lock").write_text(str(work / "results/data/folds.tsv"))
    return work, write_config(tmp_path / "config.yaml", CONFIG)


def snapshot(folder, leave_out):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file() and leave_out not in p.parents}


def test_an_interim_summary_of_a_half_finished_run(running):
    work, config = running
    before = snapshot(work, work / "results" / "interim")
    run = subprocess.run([sys.executable, "-X", "importtime", SCRIPT, "--workdir", str(work), "--configfile",
                          str(config)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "7 of 12 training jobs finished, 2 of 4 grid points complete" in run.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "cvgrid.stats" in imported
    assert not [m for m in imported if m.split(".")[0] in ("torch", "torchvision")], "the status step imported torch"
    # Nothing of the run's was touched: its files, the lock, the job still being written.
    assert snapshot(work, work / "results" / "interim") == before

    out = work / "results" / "interim"
    assert all(".interim." in p.name for p in out.rglob("*") if p.is_file())
    progress = pd.read_csv(out / "progress.interim.tsv", sep="\t")
    assert dict(zip(progress["learning_rate"], progress["state"])) == {
        0.001: "complete", 0.0004: "complete", 0.0001: "1 of 3 folds", 0.004: "not started"}
    # Verdicts on the complete points only, the worse one called worse.
    verdicts = pd.read_csv(out / "compare_to_best.interim.tsv", sep="\t")
    assert sorted(verdicts["learning_rate"]) == [0.0004, 0.001]
    assert verdicts.set_index("learning_rate").loc[0.0004, "verdict"] == "worse"
    assert len(pd.read_csv(out / "cv_folds.interim.tsv", sep="\t")) == 7
    page = (out / "summary.interim.html").read_text()
    assert "INTERIM" in page.split("<body>")[0] and "INTERIM: the run is still going" in page
    assert "learning_rate 0.0001: 1 of 3 folds" in page and "learning_rate 0.004: not started" in page
    assert "7 of 12 training jobs" in page


def test_no_complete_point_no_verdict(tmp_path):
    work = tmp_path / "work"
    write_job(work / "results/train/model~model_a/batch_size~16/learning_rate~0.001/augmentation~none/repeat~0/fold~0",
              0.001, 0, 0.9)
    config = write_config(tmp_path / "config.yaml", CONFIG)
    subprocess.run([sys.executable, SCRIPT, "--workdir", str(work), "--configfile", str(config)], check=True,
                   capture_output=True)
    out = work / "results" / "interim"
    assert "No grid point has all its folds yet: no verdict." in (out / "summary.interim.md").read_text()
    assert not (out / "compare_to_best.interim.tsv").exists()


@pytest.mark.parametrize("out", ["results/stats", "results/train/x", "results"])
def test_the_interim_folder_is_never_one_the_run_writes(running, out):
    work, config = running
    run = subprocess.run([sys.executable, SCRIPT, "--workdir", str(work), "--configfile", str(config),
                          "--out", str(work / out)], capture_output=True, text=True)
    assert run.returncode != 0 and "a folder the run writes" in run.stderr


def test_the_config_is_the_runs_a_bad_key_is_named(running):
    work, config = running
    run = subprocess.run([sys.executable, SCRIPT, "--workdir", str(work), "--configfile", str(config),
                          "--config", "cv={folds: 1}"], capture_output=True, text=True)
    assert run.returncode != 0 and "folds" in run.stderr and "Traceback" not in run.stderr


def test_make_status_writes_it_in_the_runs_folder(running):
    work, config = running
    subprocess.run(["make", "-C", str(REPO), "status", f"CONFIG={config}", f"WORKDIR={work}"], check=True,
                   capture_output=True)
    assert "INTERIM" in (work / "results" / "interim" / "summary.interim.html").read_text()
