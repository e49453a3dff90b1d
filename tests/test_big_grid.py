"""A grid of 25,000 training jobs through the real workflow: the gather step reads them from the
job list (a command line cannot hold their paths) and runs once all of them are there. The
training jobs' outputs are stubs written by the test; the data steps and the gather are real."""

from __future__ import annotations

import functools
import json

import pandas as pd
import pytest
from snakemake.utils import Paramspace

from conftest import run_snakemake, tiny_config, write_config, write_image_folder
from cvgrid.grid import grid_table

AUGMENTATIONS = {"none": {}, "affine": {"rotation_degrees": 20, "shift_fraction": 0.1, "zoom_fraction": 0.1}}



@functools.cache
def stub_predictions(correct: int) -> str:
    """A predictions.tsv of 12 test images (two classes) with `correct` of them right."""
    true = [k % 2 for k in range(12)]
    predicted = [t if k < correct else 1 - t for k, t in enumerate(true)]
    rows = [f"{k}\tclass_{t}/img_{k:03d}.jpg\t{t}\t{p}\t0.9" for k, (t, p) in enumerate(zip(true, predicted))]
    return "sample\tfile\ttrue\tpredicted\tprobability\n" + "\n".join(rows) + "\n"

@pytest.mark.scale
def test_the_workflow_gathers_25000_jobs(tmp_path):
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20, size=(16, 16))
    grid = {"model": ["model_a"], "batch_size": list(range(8, 408, 8)),
            "learning_rate": [round(1e-4 * (i + 1), 6) for i in range(50)], "augmentation": ["none", "affine"]}
    config = tiny_config(data, cv={"folds": 5}, augmentations=AUGMENTATIONS, grid=grid)
    configfile = write_config(tmp_path / "config.yaml", config)
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, configfile, "--cores", "1", "results/data/folds.tsv")
    jobs = 0
    for point in Paramspace(grid_table(config)).instance_patterns:  # the paths the workflow plans
        settings = dict(part.split("~") for part in point.split("/"))
        for fold in range(5):
            folder = work / "results" / "train" / point / "repeat~0" / f"fold~{fold}"
            folder.mkdir(parents=True)
            correct = jobs % 13  # of 12 test images
            accuracy = correct / 12
            (folder / "metrics.json").write_text(json.dumps({
                "accuracy": accuracy, "loss": 1 - accuracy, "epochs_run": 1, "best_epoch": 1, "n_train": 43,
                "n_validation": 5, "n_test": 12, "seconds": 0.0,
                "config": {"model": "model_a", "batch_size": int(settings["batch_size"]),
                           "learning_rate": float(settings["learning_rate"]), "augmentation": settings["augmentation"],
                           "repeat": 0, "fold": fold}}))
            (folder / "history.tsv").write_text("epoch\n1\n")
            (folder / "predictions.tsv").write_text(stub_predictions(correct))
            jobs += 1
    assert jobs == 25_000

    result = run_snakemake(work, configfile, "--cores", "1", "results/cv_summary.tsv")
    ran = result.stdout + result.stderr
    assert "list_train_jobs        1" in ran and "summarize_cv           1" in ran and "\ntrain " not in ran, ran
    listed = (work / "results" / "train_jobs.txt").read_text().splitlines()
    assert len(listed) == 25_000 and sum(len(path) + 1 for path in listed) > 2**21  # > a command line's limit
    assert len(pd.read_csv(work / "results" / "cv_folds.tsv", sep="\t")) == 25_000
    summary = pd.read_csv(work / "results" / "cv_summary.tsv", sep="\t")
    assert len(summary) == 5_000 and (summary["folds"] == 5).all()
