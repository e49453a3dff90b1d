"""The GPU check job (rule check_gpu) in a finished run: every training job depends on its file,
marked ancient, so checking again (`-R check_gpu`) retrains nothing,
and a new grid point trains only its own folds. Real snakemake on the tiny run."""

from __future__ import annotations

import json

from conftest import write_config
from test_workflow import job_counts


def test_the_finished_tiny_run_has_its_gpu_check_record(tiny_run):
    record = json.loads((tiny_run.work / "results" / "gpu_check.json").read_text())
    assert record["device"] == "cpu" and record["precision"] == "fp32" and record["gpus_requested"] == 1
    assert record["data_fits_on_device"] is True


def test_checking_again_retrains_nothing(tiny_run, snakemake):
    # (A new training.device still replans every training job: the training rules pass the whole
    # `training:` block as a param; issue 25, item 7.)
    again = snakemake(tiny_run.work, tiny_run.config, "-n", "-R", "check_gpu")
    assert job_counts(again.stdout + again.stderr) == {"check_gpu": 1}


def test_a_new_grid_point_trains_only_its_own_folds(tiny_run, snakemake, tmp_path):
    grid = dict(tiny_run.settings["grid"])
    grid["learning_rate"] = [*grid["learning_rate"], 0.0123]
    bigger = write_config(tmp_path / "bigger.yaml", {**tiny_run.settings, "grid": grid})
    planned = job_counts(snakemake(tiny_run.work, bigger, "-n", "results/cv_summary.tsv").stdout)
    folds = tiny_run.settings["cv"]["folds"] * tiny_run.settings["cv"].get("repeats", 1)
    assert planned.get("train") == folds and "check_gpu" not in planned, planned
