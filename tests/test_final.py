"""The final model: the refit's early-stopping split and best-point choice, and a real
quick-config-like workflow run (generated images, one grid point, two folds, two epochs) that
ends with results/final/model_a/ and a report with a "4. Final model" section.

The workflow run is a session fixture (`final_run`) that tests/test_predict.py reuses."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, run_snakemake
from cvgrid.final import FinalError, best_point, chosen_point
from cvgrid.folds import FoldError, refit_split
from cvgrid.grid import AUGMENTATION_KEYS
from cvgrid.models import build_model
from cvgrid.summary import cv_summary

MODEL = "model_a"
FINAL_FILES = ["model.pt", "model.onnx", "model.json", "history.tsv", "final_model.html"]


@pytest.fixture(scope="session")
def final_run(tiny_run):
    """The shared whole run (conftest.tiny_run: 3 classes x 20 images, validation_fraction 0.2,
    max_epochs 2, patience 1), which ends with the final model."""
    return SimpleNamespace(work=tiny_run.work, config=tiny_run.config, model_dir=tiny_run.model_dir,
                           data=tiny_run.data)


# --- the early-stopping split of the refit --------------------------------------------------

LABELS = np.repeat(np.arange(4), [30, 20, 20, 10])


def test_refit_split_uses_every_sample_once_with_a_stratified_validation_share():
    split = refit_split(LABELS, seed=42, validation_fraction=0.1)
    assert len(split["test"]) == 0
    both = np.concatenate([split["train"], split["validation"]])
    assert sorted(both.tolist()) == list(range(len(LABELS)))
    counts = np.bincount(LABELS[split["validation"]], minlength=4)
    assert counts.tolist() == [3, 2, 2, 1]  # 10% of every class


def test_refit_split_is_seeded():
    a, b = refit_split(LABELS, 42, 0.2), refit_split(LABELS, 42, 0.2)
    other = refit_split(LABELS, 43, 0.2)
    assert np.array_equal(a["validation"], b["validation"])
    assert not np.array_equal(a["validation"], other["validation"])


def test_refit_split_keeps_groups_on_one_side():
    groups = np.arange(len(LABELS)) // 2  # pairs of images of one "person"
    split = refit_split(LABELS, 0, 0.2, groups=groups)
    assert not set(groups[split["train"]]) & set(groups[split["validation"]])


def test_refit_split_refuses_a_bad_fraction():
    with pytest.raises(FoldError, match="validation_fraction"):
        refit_split(LABELS, 0, 0.6)


# --- which grid point ------------------------------------------------------------------------

def summary_of(accuracies: dict) -> pd.DataFrame:
    """cv_summary.tsv of {(model, batch_size, learning_rate, augmentation): fold accuracies}."""
    rows = [{"model": m, "batch_size": b, "learning_rate": lr, "augmentation": aug, "repeat": 0, "fold": f,
             "accuracy": acc, "epochs_run": 10, "seconds": 1.0}
            for (m, b, lr, aug), accs in accuracies.items() for f, acc in enumerate(accs)]
    return cv_summary(pd.DataFrame(rows), metric="accuracy")


SUMMARY = summary_of({
    ("model_b", 64, 0.001, "affine"): [0.94, 0.96, 0.95],
    ("model_a", 32, 0.0004, "none"): [0.80, 0.95, 0.95],   # mean 0.90, std 0.0707
    ("model_a", 128, 0.001, "affine"): [0.84, 0.86, 0.85],
    ("model_b", 32, 0.0001, "none"): [0.80, 0.81, 0.79],
})


def test_best_point_is_the_models_rank_one_with_its_corrected_estimate():
    chosen = best_point(SUMMARY, "model_a", metric="accuracy")
    assert chosen["grid_point"] == {"model": "model_a", "batch_size": 32, "learning_rate": 0.0004,
                                    "augmentation": "none"}
    estimate = chosen["cv_estimate"]
    assert estimate["mean_accuracy"] == pytest.approx(0.90)
    spread = 2 * np.std([0.80, 0.95, 0.95])  # 0.1414: the fold spread, ddof=0
    assert estimate["interval"] == pytest.approx([0.90 - spread, 1.0])  # 1.04 clipped to 1
    # selection among model_a's two points: best per fold 0.84, 0.95, 0.95; minus the
    # winner's 0.80, 0.95, 0.95: 0.04, 0, 0; bias 0.04 / 3
    assert estimate["selection_bias"] == pytest.approx(0.04 / 3)
    assert estimate["corrected_accuracy"] == pytest.approx(0.90 - 0.04 / 3)
    assert "not a confidence interval" in estimate["interval_definition"]
    assert best_point(SUMMARY, "model_b", metric="accuracy")["grid_point"]["augmentation"] == "affine"


def test_best_point_of_a_model_not_in_the_summary_is_named():
    with pytest.raises(FinalError, match="resnet18"):
        best_point(SUMMARY, "resnet18", metric="accuracy")


# --- final.choose: the point the statistics step decided (decision.tsv) -------------------------

ACC = np.array([0.90, 0.88, 0.92, 0.86, 0.94])


def decided(epochs: dict, tmp_path, choose="best", cost="work") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cv_summary, decision.tsv as the refit reads it) of a constructed fold table: model_a with
    batch sizes 32 and 64 equal on every fold and 128 five points worse, model_b one grid point;
    `epochs`: epochs run per (model, batch size), the factor of the training work."""
    from cvgrid.analysis import analyse, write_tables
    from cvgrid.stats import Thresholds

    accuracy = {("model_a", 32): ACC, ("model_a", 64): ACC, ("model_a", 128): ACC - 0.05, ("model_b", 32): ACC - 0.1}
    folds = pd.DataFrame([{"model": m, "batch_size": b, "learning_rate": 0.001, "augmentation": "none", "repeat": 0,
                           "fold": f, "accuracy": a, "epochs_run": epochs[m, b], "n_train": 800, "n_test": 200,
                           "seconds": 1.0} for (m, b), accs in accuracy.items() for f, a in enumerate(accs)])
    summary = cv_summary(folds, metric="accuracy")
    result = analyse(folds, summary, Thresholds(rope=0.005, probability=0.95, alpha=0.05, metric="accuracy"),
                     contender_probability=0.5, choose=choose, cost=cost, ranges=None)
    write_tables(result, tmp_path)
    summary.to_csv(tmp_path / "cv_summary.tsv", sep="\t", index=False)
    return (pd.read_csv(tmp_path / "cv_summary.tsv", sep="\t"), pd.read_csv(tmp_path / "decision.tsv", sep="\t"))


def test_the_default_rule_refits_todays_best_point(tmp_path):
    summary, decision = decided({("model_a", 32): 10, ("model_a", 64): 5, ("model_a", 128): 1,
                                 ("model_b", 32): 9}, tmp_path)
    for model in ("model_a", "model_b"):
        today = best_point(summary, model, metric="accuracy")
        for chosen in (chosen_point(summary, model, metric="accuracy"), chosen_point(summary, model, decision, metric="accuracy")):
            assert chosen["grid_point"] == today["grid_point"] and chosen["cv_estimate"] == today["cv_estimate"]
            assert chosen["choice"]["rule"] == "best" and chosen["choice"]["gap_to_best"] == 0


def test_the_cheapest_contender_is_refit_with_its_rule_gap_and_bound(tmp_path):
    summary, decision = decided({("model_a", 32): 10, ("model_a", 64): 5, ("model_a", 128): 1,
                                 ("model_b", 32): 9}, tmp_path, choose="cheapest_contender", cost="work")
    chosen = chosen_point(summary, "model_a", decision, metric="accuracy")
    assert chosen["grid_point"]["batch_size"] == 64  # 128 costs less but is worse: not a contender
    assert chosen["choice"] == {"rule": "cheapest_contender", "cost": "work", "gap_to_best": pytest.approx(0),
                                "contenders": 2, "candidates": 3, "definition": chosen["choice"]["definition"]}
    estimate = chosen["cv_estimate"]
    assert estimate["mean_accuracy"] == pytest.approx(ACC.mean())
    assert estimate["corrected_accuracy"] == pytest.approx(ACC.mean())  # equal on every fold: no gap to count
    assert "conservative (low) bound, not an estimate" in estimate["corrected_definition"]
    assert "expected_accuracy" not in chosen["choice"]  # no BBC-CV given to this statistics step
    with_bbc = decision.assign(bbc_estimate=0.89, bbc_low=0.87, bbc_high=0.91, bbc_bags=1000)
    assert chosen_point(summary, "model_a", with_bbc, metric="accuracy")["choice"]["expected_accuracy"]["interval"] == [0.87, 0.91]
    # a model whose best is its only contender (one grid point): its best, under either rule
    single = chosen_point(summary, "model_b", decision, metric="accuracy")
    assert single["grid_point"]["batch_size"] == 32 and single["choice"]["contenders"] == 1


def test_a_tie_in_cost_goes_to_grid_order(tmp_path):
    summary, decision = decided({("model_a", 32): 10, ("model_a", 64): 10, ("model_a", 128): 1,
                                 ("model_b", 32): 9}, tmp_path, choose="cheapest_contender", cost="work")
    assert chosen_point(summary, "model_a", decision, metric="accuracy")["grid_point"]["batch_size"] == 32


def test_a_decision_without_the_model_is_named(tmp_path):
    summary, decision = decided({("model_a", 32): 10, ("model_a", 64): 5, ("model_a", 128): 1,
                                 ("model_b", 32): 9}, tmp_path, choose="cheapest_contender", cost="work")
    with pytest.raises(FinalError, match="model_b"):
        chosen_point(summary, "model_b", decision[decision["among"] != "model_b"], metric="accuracy")


# --- the workflow run --------------------------------------------------------------------------

def test_workflow_ends_with_the_final_model_files(final_run):
    for name in FINAL_FILES:
        assert (final_run.model_dir / name).stat().st_size > 0, name


def test_weights_load_with_weights_only_and_the_config_names_the_best_point(final_run):
    info = json.loads((final_run.model_dir / "model.json").read_text())
    summary = pd.read_csv(final_run.work / "results" / "cv_summary.tsv", sep="\t")
    expected = best_point(summary, MODEL, metric="accuracy")
    assert info["grid_point"] == expected["grid_point"]
    # the point refit_best trained is the one the summary and the statistics call best
    assert info["grid_point"] == {k: summary.loc[summary["rank"] == 1, k].iloc[0] for k in info["grid_point"]}
    to_best = pd.read_csv(final_run.work / "results" / "stats" / "compare_to_best.tsv", sep="\t")
    best = to_best[to_best["is_best"]].iloc[0]
    assert info["grid_point"] == {k: best[k] for k in info["grid_point"]}
    assert info["cv_estimate"]["mean_accuracy"] == pytest.approx(summary["mean_accuracy"].iloc[0])
    assert info["cv_estimate"]["interval"] == pytest.approx(expected["cv_estimate"]["interval"])
    assert info["cv_estimate"]["corrected_accuracy"] == pytest.approx(expected["cv_estimate"]["corrected_accuracy"])
    selected = pd.read_csv(final_run.work / "results" / "stats" / "selected.tsv", sep="\t")
    assert selected.iloc[0]["corrected_accuracy"] == pytest.approx(info["cv_estimate"]["corrected_accuracy"])
    assert info["class_names"] == ["class_0", "class_1", "class_2"]
    assert (info["input_size"], info["image_size"]) == (100, 32)
    assert info["refit"]["n_train"] + info["refit"]["n_validation"] == 60 == info["data"]["images"]
    assert info["refit"]["n_validation"] == 12  # validation_fraction 0.2
    assert (info["refit"]["max_epochs"], info["refit"]["patience"]) == (2, 1)
    assert info["onnx"]["check"]["checked"] and info["onnx"]["check"]["same_class"]
    state = torch.load(final_run.model_dir / "model.pt", weights_only=True)
    model = build_model(MODEL, 3)
    model.load_state_dict(state)  # strict: every key, every shape
    history = pd.read_csv(final_run.model_dir / "history.tsv", sep="\t")
    assert len(history) == info["refit"]["epochs_run"] >= 1


def test_page_says_configuration_estimate_files_and_predict(final_run):
    page = (final_run.model_dir / "final_model.html").read_text()
    info = json.loads((final_run.model_dir / "model.json").read_text())
    lo, hi = info["cv_estimate"]["interval"]
    for text in ("learning_rate", f"{info['cv_estimate']['corrected_accuracy']:.4f}",
                 f"{info['cv_estimate']['mean_accuracy']:.4f}", f"[{lo:.4f}, {hi:.4f}]",
                 "results/final/model_a/model.onnx", "results/final/model_a/model.pt",
                 "scripts/predict.py --model-dir results/final/model_a"):
        assert text in page, text


def refit_config(augmentations: dict) -> dict:
    """refit_best.py's --config: the config's training, augmentations and models."""
    training = {"max_epochs": 1, "patience": 1, "seed": 0, "precision": "fp32", "checkpoint_seconds": 0,
                "tensorboard": False}
    return {"training": training, "augmentations": augmentations, "models": {MODEL: {}}}


def test_a_bad_groups_file_stops_the_refit_with_a_one_line_error(final_run, tmp_path):
    groups = tmp_path / "groups.tsv"
    groups.write_text("file\tgroup\nclass_0/img_000.jpg\tg1\n")  # the other images have no group
    results = final_run.work / "results"
    cmd = [sys.executable, str(REPO / "scripts" / "refit_best.py"), "--summary", str(results / "cv_summary.tsv"),
           "--model", MODEL, "--images", str(results / "data" / "images.npy"),
           "--index", str(results / "data" / "index.tsv"), "--config", json.dumps(refit_config({"none": {}})),
           "--split-seed", "42", "--validation-fraction", "0.2", "--threads", "1", "--metric", "accuracy", "--no-tensorboard", "--groups", str(groups),
           "--out-dir", str(tmp_path / "final")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    # The best point's policy {} lacks its keys: named before any data is read.
    assert result.stderr.strip().splitlines()[-1].startswith("error: the best grid point of model_a")
    cmd[cmd.index("--config") + 1] = json.dumps(refit_config({"none": dict.fromkeys(AUGMENTATION_KEYS, 0)}))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: groups file {groups} has no group for 59 image(s)"), result.stderr
    assert not (tmp_path / "final").exists()


def test_report_has_a_final_model_section(final_run):
    run_snakemake(final_run.work, final_run.config, "--report", "report.zip",
                  *[f"results/final/{MODEL}/{name}" for name in FINAL_FILES])
    with zipfile.ZipFile(final_run.work / "report.zip") as report:
        names = report.namelist()
        text = "\n".join(report.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js")))
    assert any(n.endswith("final_model.html") for n in names), names
    assert "4. Final model" in text


def test_model_json_says_the_rule_that_chose_the_point(final_run):
    info = json.loads((final_run.model_dir / "model.json").read_text())
    assert info["choice"]["rule"] == "best" and info["choice"]["gap_to_best"] == 0  # final.choose's default
    assert "The best grid point of" in (final_run.model_dir / "final_model.html").read_text()
