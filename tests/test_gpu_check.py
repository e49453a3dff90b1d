"""The GPU check job (checkpoint check_gpu) in a finished run: a training job with outputs to write
waits for it; a finished one does not, so checking again (`-R check_gpu`) or a missing record
retrains nothing, and a new grid point trains only its own folds; folds trained again on purpose
(`-R train`) wait for it. Real snakemake on the tiny run."""

from __future__ import annotations

import json
import subprocess

from conftest import write_config
from test_workflow import job_counts


def test_the_finished_tiny_run_has_its_gpu_check_record(tiny_run):
    record = json.loads((tiny_run.work / "results" / "gpu_check.json").read_text())
    assert record["device"] == "cpu" and record["precision"] == "fp32" and record["gpus_requested"] == 1
    assert record["data_fits_on_device"] is True


def test_checking_again_retrains_nothing(tiny_run, snakemake):
    again = snakemake(tiny_run.work, tiny_run.config, "-n", "-R", "check_gpu")
    assert job_counts(again.stdout + again.stderr) == {"check_gpu": 1}


def test_a_new_grid_point_trains_only_its_own_folds(tiny_run, snakemake, tmp_path):
    grid = dict(tiny_run.settings["grid"])
    grid["learning_rate"] = [*grid["learning_rate"], 0.0123]
    bigger = write_config(tmp_path / "bigger.yaml", {**tiny_run.settings, "grid": grid})
    planned = job_counts(snakemake(tiny_run.work, bigger, "-n", "results/cv_summary.tsv").stdout)
    folds = tiny_run.settings["cv"]["folds"] * tiny_run.settings["cv"].get("repeats", 1)
    assert planned.get("train") == folds and "check_gpu" not in planned, planned
    assert not {"prepare_dataset", "make_folds"} & set(planned), planned  # the data steps stay


def test_a_missing_check_record_retrains_no_finished_fold(tiny_run, snakemake, tmp_path):
    """A restored study folder or a deleted results/gpu_check.json: the finished folds stay; only
    a job that still has to train waits for a new check."""
    work = tmp_path / "work"
    subprocess.run(["cp", "-a", str(tiny_run.work), str(work)], check=True)
    (work / "results" / "gpu_check.json").unlink()
    again = snakemake(work, tiny_run.config, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout + again.stderr

    grid = dict(tiny_run.settings["grid"])
    grid["learning_rate"] = [*grid["learning_rate"], 0.0123]
    bigger = write_config(tmp_path / "bigger.yaml", {**tiny_run.settings, "grid": grid})
    planned = job_counts(snakemake(work, bigger, "-n", "results/cv_summary.tsv").stdout)
    folds = tiny_run.settings["cv"]["folds"] * tiny_run.settings["cv"].get("repeats", 1)
    assert planned.get("train") == folds and planned.get("check_gpu") == 1, planned

    # Training the finished folds again on purpose: they wait for a new check too.
    forced = job_counts(snakemake(work, tiny_run.config, "-n", "-R", "train").stdout)
    points = len(tiny_run.settings["grid"]["learning_rate"])
    assert forced.get("train") == points * folds and forced.get("check_gpu") == 1, forced
