"""A sampled grid's statistics and report through the real workflow: the data steps, the
gather, the statistics, the figures, the diagnostics, the refit and report.html run for real on a
small image folder; the training jobs' outputs are stubs written by the test (as in
tests/test_big_grid.py) whose accuracy falls with the learning rate and does not depend on the
weight decay. The statistics show the learning rate as a trend and the heatmap as a scatter."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from snakemake.utils import Paramspace, validate

from conftest import SCRIPTS, run_snakemake, tiny_config, write_config, write_image_folder
from cvgrid.grid import grid_table

AUGMENTATIONS = {"none": {}, "affine": {"rotation_degrees": 20, "shift_fraction": 0.1, "zoom_fraction": 0.1}}
GRID = {"sample": {"points": 12, "method": "sobol", "seed": 0}, "model": ["model_a"], "batch_size": [16, 32],
        "learning_rate": {"log_uniform": [0.0001, 0.03]}, "augmentation": ["none", "affine"],
        "weight_decay": {"uniform": [0, 0.1]}}
FOLDS = 3


def write_stub_jobs(work, config) -> int:
    """Every planned training job's metrics.json, history.tsv and predictions.tsv, on the real
    folds (results/data/folds.tsv): of each test fold the first `correct` images right, where
    `correct` falls with the learning rate's log (none on the weight decay). Returns the jobs."""
    folds = pd.read_csv(work / "results" / "data" / "folds.tsv", sep="\t")
    index = pd.read_csv(work / "results" / "data" / "index.tsv", sep="\t")
    classes = int(index["label"].nunique())
    table = grid_table(config)
    jobs = 0
    for (_, point), folder in zip(table.iterrows(), Paramspace(table).instance_patterns):
        share = 0.95 - 0.4 * math.log(point["learning_rate"] / 1e-4) / math.log(300)  # 0.95 down to 0.55
        for fold in range(FOLDS):
            test = folds[(folds["fold"] == fold) & (folds["role"] == "test")]["sample"].to_numpy()
            roles = folds[folds["fold"] == fold]["role"].value_counts()
            correct = min(len(test), round(share * len(test)) + (fold % 2))  # a fold effect, the same for every point
            true = index.loc[test, "label"].to_numpy()  # a sample is a row of index.tsv
            predicted = [t if k < correct else (t + 1) % classes for k, t in enumerate(true)]
            out = work / "results" / "train" / folder / "repeat~0" / f"fold~{fold}"
            out.mkdir(parents=True)
            pd.DataFrame({"sample": test, "file": index.loc[test, "file"].to_numpy(), "true": true,
                          "predicted": predicted, "probability": 0.9}).to_csv(out / "predictions.tsv", sep="\t", index=False)
            (out / "history.tsv").write_text("epoch\ttrain_loss\ttrain_accuracy\tval_loss\tval_accuracy\n"
                                             "1\t1.0\t0.5\t1.0\t0.5\n2\t0.8\t0.6\t0.9\t0.6\n")
            accuracy = correct / len(test)
            (out / "metrics.json").write_text(json.dumps({
                "accuracy": accuracy, "loss": 1 - accuracy, "epochs_run": 2, "best_epoch": 2,
                "n_train": int(roles.get("train", 0)), "n_validation": int(roles.get("validation", 0)),
                "n_test": len(test), "seconds": 1.0, "device": "cpu", "precision": "fp32",
                "config": {**{k: (v.item() if hasattr(v, "item") else v) for k, v in point.items()},
                           "repeat": 0, "fold": fold}}))
            jobs += 1
    return jobs


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory):
    from types import SimpleNamespace

    root = tmp_path_factory.mktemp("sampled_run")
    data = write_image_folder(root / "data", n_classes=3, per_class=20, size=(40, 40))
    config = tiny_config(data, cv={"folds": FOLDS, "validation_fraction": 0.2}, augmentations=AUGMENTATIONS,
                         grid=GRID, training={"optimizer": "adamw"})
    config["grid"] = GRID  # the sampled grid whole (tiny_config's lists would stay beside it)
    configfile = write_config(root / "config.yaml", config)
    work = root / "work"
    work.mkdir()
    run_snakemake(work, configfile, "--cores", "1", "results/data/folds.tsv")
    jobs = write_stub_jobs(work, config)
    run = run_snakemake(work, configfile, "--cores", "2", timeout=900)
    report = run_snakemake(work, configfile, "--report", "report.html")
    return SimpleNamespace(work=work, results=work / "results", config=configfile, jobs=jobs, run=run, report=report)


def test_the_statistics_of_a_sampled_grid_are_trends_over_its_ranges(sampled_run):
    ran = sampled_run.run.stdout + sampled_run.run.stderr
    assert sampled_run.jobs == 12 * FOLDS and "\ntrain " not in ran  # the stubs are the jobs: nothing trained
    stats = sampled_run.results / "stats"
    trends = pd.read_csv(stats / "factor_trends.tsv", sep="\t").set_index("factor")
    assert list(trends.index) == ["learning_rate", "weight_decay"] and (trends["points"] == 12).all()
    lr, wd = trends.loc["learning_rate"], trends.loc["weight_decay"]
    assert lr["rho"] < -0.9 and lr["ci_high"] < 0 and lr["significant"] and lr["scale"] == "log"
    assert not wd["significant"] and wd["ci_low"] < 0 < wd["ci_high"]
    bins = pd.read_csv(stats / "factor_bins.tsv", sep="\t")
    assert bins.query("factor == 'learning_rate'")["mean"].is_monotonic_decreasing
    effects = pd.read_csv(stats / "factor_effects.tsv", sep="\t")
    assert set(effects["factor"]) == {"batch_size", "augmentation"} and {"n_level", "n_reference"} <= set(effects)
    summary = (stats / "summary.html").read_text()
    assert "Factors of a sampled grid" in summary and "Ranged axes" in summary and "not a causal effect" in summary


def test_the_report_holds_the_trends_the_scatter_and_the_parallel_coordinates(sampled_run):
    html = (sampled_run.work / "report.html").read_text()
    for name in ("factor_trends.svg", "factor_trends.tsv", "factor_bins.tsv", "heatmap_model_a.svg",
                 "parallel_coordinates.svg", "factor_effects.svg"):
        assert name in html, name
    assert "This grid is sampled" in html  # the captions say what the figures are on a sampled grid
    heatmap_log = (sampled_run.work / "logs" / "plot_heatmap" / "model_a.log").read_text()
    assert "error" not in heatmap_log.lower()
    assert (sampled_run.results / "plots" / "heatmap_model_a.svg").stat().st_size > 0


def test_make_status_of_a_sampled_run_shows_its_trends(sampled_run, tmp_path):
    # The interim summary (make status) reads the same config: the same trends, marked interim.
    subprocess.run([sys.executable, str(SCRIPTS / "interim_summary.py"), "--workdir", str(sampled_run.work),
                    "--configfile", str(sampled_run.config), "--out", str(tmp_path)], check=True)
    trends = pd.read_csv(tmp_path / "factor_trends.interim.tsv", sep="\t")
    pd.testing.assert_frame_equal(trends, pd.read_csv(sampled_run.results / "stats" / "factor_trends.tsv", sep="\t"))
    assert "Factors of a sampled grid" in (tmp_path / "summary.interim.md").read_text()


def test_publishing_a_sampled_run_draws_its_trends_and_scatter(sampled_run, tmp_path):
    # scripts/publish_study.py (docs/search is published with it): the tables the workflow wrote.
    sys.path.insert(0, str(SCRIPTS))
    import publish_study

    config = yaml.safe_load(sampled_run.config.read_text())
    validate(config, schema=str(SCRIPTS.parent / "workflow" / "schemas" / "config.schema.yaml"))
    facts = publish_study.publish_protocol(sampled_run.work, tmp_path, "stratified", config)
    assert facts["grid_points_finished"] == 12
    out = tmp_path / "stratified"
    for name in ("factor_trends", "factor_bins", "factor_effects"):
        pd.testing.assert_frame_equal(pd.read_csv(out / "stats" / f"{name}.tsv", sep="\t"),
                                      pd.read_csv(sampled_run.results / "stats" / f"{name}.tsv", sep="\t"))
    assert (out / "stats" / "factor_trends.svg").stat().st_size > 0 and (out / "heatmap_model_a.svg").stat().st_size > 0
