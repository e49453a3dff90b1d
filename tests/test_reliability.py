"""Reliability: a workflow stopped half way and started again runs only what is missing; a
diverging training stops with its configuration and epoch named; a foreign file where a
checkpoint should be is named; bad folds are refused before any training job."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import snakemake_command, tiny_config, write_config, write_image_folder
from cvgrid.training import CheckpointError, TrainSettings, fit


def finished_metrics(workdir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (workdir / "results" / "train").rglob("metrics.json")}


@pytest.mark.slow
def test_a_stopped_workflow_started_again_runs_only_what_is_missing(tmp_path):
    data = write_image_folder(tmp_path / "data", n_classes=3, per_class=20, size=(32, 32))
    configfile = write_config(tmp_path / "config.yaml", tiny_config(data, grid={"learning_rate": [0.001, 0.0004, 0.0002]}))
    workdir = tmp_path / "run"
    workdir.mkdir()
    command, env = snakemake_command(workdir, configfile, "--cores", "1")
    first = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while len(finished_metrics(workdir)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, "the workflow ended before it could be stopped:\n" + first.stdout.read()
    first.send_signal(signal.SIGTERM)  # what a user's Ctrl-C or a killed login session does
    first.communicate(timeout=120)
    done = finished_metrics(workdir)
    assert 2 <= len(done) < 6, f"{len(done)} of 6 jobs had finished when the workflow was stopped"

    second = subprocess.run([*command, "--rerun-incomplete"], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    after = finished_metrics(workdir)
    assert len(after) == 6
    assert {p: after[p] for p in done} == done, "a job that had finished was run again"
    reran = (second.stdout + second.stderr).count("rule train:")
    assert reran == 6 - len(done)
    assert (workdir / "results" / "cv_summary.tsv").exists()


def tiny_data(n_per_class=12, size=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per_class)
    images = rng.integers(0, 256, size=(len(labels), size, size, 3), dtype=np.uint8)
    images[labels == 1] //= 4  # dark vs bright
    order = rng.permutation(len(labels))
    split = {"train": np.sort(order[:16]), "validation": np.sort(order[16:20]), "test": np.sort(order[20:])}
    return images, labels, split


def settings(**changes) -> TrainSettings:
    values = dict(model="model_a", batch_size=8, learning_rate=0.001, augmentation="none", rotation_degrees=0,
                  shift_fraction=0, zoom_fraction=0, max_epochs=2, patience=2, seed=0, repeat=0, fold=1)
    values.update(changes)
    return TrainSettings(**values)


def test_a_diverging_fold_is_a_result_scored_with_its_best_weights_before_the_divergence(tmp_path):
    import torch

    images, labels, split = tiny_data()
    cpu = torch.device("cpu")
    # A learning rate of 1e10: the training loss is NaN in the first epoch, every time.
    first = fit(images, labels, split, 2, settings(learning_rate=1e10, max_epochs=5), device=cpu, precision="fp32")
    assert first.diverged_epoch == 1 and first.epochs_run == 0 and first.best_epoch == 0
    # Scored with the initial weights (no epoch finished): finite numbers.
    assert np.isfinite(first.test_loss) and np.isfinite(first.test_probabilities).all()
    assert 0.0 <= first.test_accuracy <= 1.0
    # 1e7 diverges in the second epoch: scored with the first epoch's weights, the best before it.
    late_settings = settings(learning_rate=1e7, max_epochs=8, patience=8)
    late = fit(images, labels, split, 2, late_settings, device=cpu, precision="fp32")
    assert late.diverged_epoch == 2 and late.epochs_run == late.best_epoch == 1
    assert len(late.history) == 1
    # The checkpoint of a diverged fold says so: a retry scores it again without training.
    checkpoint = tmp_path / "fold.pt"
    kept = fit(images, labels, split, 2, late_settings, device=cpu, precision="fp32", checkpoint_path=checkpoint, checkpoint_seconds=3600)
    assert checkpoint.exists(), "the end of a fit is always written"
    again = fit(images, labels, split, 2, late_settings, device=cpu, precision="fp32", checkpoint_path=checkpoint, checkpoint_seconds=3600)
    assert kept.diverged_epoch == again.diverged_epoch == 2
    assert again.resumed_from_epoch == kept.epochs_run == 1
    assert again.test_accuracy == kept.test_accuracy == late.test_accuracy
    assert np.array_equal(again.test_probabilities, kept.test_probabilities, equal_nan=True)


@pytest.mark.slow
def test_a_grid_with_a_diverging_configuration_still_gives_the_summary_statistics_and_report(tmp_path):
    """Learning rate 1e10 makes the training loss NaN in the first epoch of both folds (checked
    below, every time): the folds are results, flagged and named in their logs, in cv_folds.tsv
    and in the written summary, and the workflow and its report finish."""
    import json

    import pandas as pd

    data = write_image_folder(tmp_path / "data", n_classes=3, per_class=20, size=(32, 32))
    configfile = write_config(tmp_path / "config.yaml", tiny_config(data, grid={"learning_rate": [0.001, 1e10]}))
    workdir = tmp_path / "run"
    workdir.mkdir()
    command, env = snakemake_command(workdir, configfile, "--cores", "2")
    for extra in ([], ["--report", "report.html"]):
        result = subprocess.run([*command, *extra], cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr

    train = workdir / "results" / "train"
    for fold in (0, 1):
        folder = f"model~model_a/batch_size~16/learning_rate~10000000000.0/augmentation~none/repeat~0/fold~{fold}"
        metrics = json.loads((train / folder / "metrics.json").read_text())
        assert metrics["diverged"] is True and metrics["diverged_epoch"] == 1 and metrics["best_epoch"] == 0
        assert 0 <= metrics["accuracy"] <= 1
        assert "DIVERGED: training loss became nan in epoch 1" in (workdir / "logs" / "results" / "train" /
                                                                  f"{folder}.log").read_text()
    folds = pd.read_csv(workdir / "results" / "cv_folds.tsv", sep="\t")
    assert folds.groupby("learning_rate")["diverged"].agg(list).to_dict() == {0.001: [False, False],
                                                                              1e10: [True, True]}
    summary = pd.read_csv(workdir / "results" / "cv_summary.tsv", sep="\t")
    assert len(summary) == 2 and summary.loc[0, "learning_rate"] == 0.001
    written = (workdir / "results" / "stats" / "summary.html").read_text()
    assert ("<b>Diverged</b>: 2 folds diverged" in written
            and "learning rate 1e+10, augmentation none, repeat 0 fold 0" in written), written
    assert (workdir / "results" / "stats" / "compare_to_best.tsv").exists()
    assert (workdir / "results" / "final" / "model_a" / "model.json").exists()
    assert (workdir / "report.html").stat().st_size > 0


def test_a_file_that_is_not_a_checkpoint_is_named_not_trained_over(tmp_path):
    import torch

    images, labels, split = tiny_data()
    checkpoint = tmp_path / "fold.pt"
    checkpoint.write_bytes(b"this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match=re.escape(str(checkpoint))):
        fit(images, labels, split, 2, settings(), device=torch.device("cpu"), precision="fp32", checkpoint_path=checkpoint)
    torch.save({"some": torch.zeros(2)}, checkpoint)  # loads with weights_only, but is not ours
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        fit(images, labels, split, 2, settings(), device=torch.device("cpu"), precision="fp32", checkpoint_path=checkpoint)


def test_too_few_images_in_a_class_stops_before_any_training_job(tmp_path):
    data = write_image_folder(tmp_path / "data", n_classes=3, per_class=12, size=(32, 32))
    for extra in sorted((data / "class_2").iterdir())[3:]:
        extra.unlink()  # class_2 keeps 3 images: too few for 5 folds
    configfile = write_config(tmp_path / "config.yaml", tiny_config(data, cv={"folds": 5}, grid={"learning_rate": [0.001]}))
    workdir = tmp_path / "run"
    workdir.mkdir()
    command, env = snakemake_command(workdir, configfile, "--cores", "1")
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    log = (workdir / "logs" / "results" / "make_folds.log").read_text()
    assert "class_2 (3)" in log and "5-fold" in log, log
    assert not list((workdir / "results").rglob("metrics.json"))
    assert "rule train:" not in result.stdout + result.stderr
