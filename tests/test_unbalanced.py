"""Issue 26, point 3: on unbalanced data the metric decides. A constructed image set whose rare
class looks like a common one with a mark that the common one often has too: a plain network
never predicts the rare class and has the higher accuracy; with class-balanced loss weights
(training.class_weights) it finds much of the rare class at the price of false alarms on the
common one. Under statistics.metric balanced_accuracy the workflow ranks the second first and
its written summary says why. A real snakemake run on real JPEGs, fp32 on the CPU, one thread a
job: the same numbers on every run (about 40 s of CPU in all)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, tiny_config, write_config

SIZE = 24
# Images per class, and how many carry the mark (a bright top-left quarter). Among the marked
# blue images one in 15 / (15 + 8) ~ 0.35 is rare: the most likely class of a marked image is
# common_b, so a plain network never predicts rare (accuracy 80 / 90; balanced accuracy 2/3).
# Weighed by inverse class frequency (rare x 4) a marked image is rare (8 x 4 > 15): the
# weighted network finds most rare images and mistakes the marked common_b ones for rare.
CLASSES = {"common_a": ((220, 30, 30), 40, 0), "common_b": ((30, 40, 220), 40, 15), "rare": ((30, 40, 220), 10, 8)}


def write_unbalanced_folder(root):
    """ROOT/<class>/img_NNN.jpg for CLASSES: one colour per class plus noise, the first `marked`
    images of a class with the mark."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, (colour, count, marked) in CLASSES.items():
        folder = root / name
        folder.mkdir(parents=True)
        for j in range(count):
            pixels = np.array(colour, dtype=np.int16) + rng.integers(-20, 21, size=(SIZE, SIZE, 3), dtype=np.int16)
            if j < marked:
                pixels[: SIZE // 2, : SIZE // 2] = 255 - rng.integers(0, 21, size=(SIZE // 2, SIZE // 2, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img_{j:03d}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def unbalanced_run(tmp_path_factory):
    from conftest import run_snakemake

    root = tmp_path_factory.mktemp("unbalanced")
    data = write_unbalanced_folder(root / "data")
    # Model A at width 8, 15 epochs (patience 15: every epoch, the best weighted validation
    # epoch kept), 2 folds; 30 % of a training part for early stopping, so that it holds rare images.
    settings = tiny_config(
        data, image_size=SIZE, cv={"validation_fraction": 0.3},
        training={"max_epochs": 15, "patience": 15}, models={"model_a": {"options": {"width": 8}}},
        grid={"model": ["model_a"], "batch_size": [16], "learning_rate": [0.001], "augmentation": ["none"],
              "class_weights": ["none", "balanced"]},
        statistics={"metric": "balanced_accuracy"})
    configfile = write_config(root / "config.yaml", settings)
    work = root / "work"
    work.mkdir()
    # The CV, its statistics, the written summary and the fold plot (not the refit: not the point here).
    result = run_snakemake(work, configfile, "--cores", "2", "results/stats/summary.html",
                           "results/plots/fold_accuracies.svg")
    return work, result


def test_a_plain_network_never_predicts_the_rare_class_and_a_class_weighted_one_does(unbalanced_run):
    work, _ = unbalanced_run
    rare = sorted(CLASSES).index("rare")
    for metrics_path in sorted((work / "results" / "train").rglob("metrics.json")):
        weights = json.loads(metrics_path.read_text())["config"]["class_weights"]
        predicted = pd.read_csv(metrics_path.with_name("predictions.tsv"), sep="\t")["predicted"]
        if weights == "none":
            assert (predicted != rare).all(), metrics_path
        else:
            assert weights == "balanced" and (predicted == rare).any(), metrics_path
            log = work / "logs" / f"{metrics_path.parent.relative_to(work)}.log"  # the job's log (one fold a job)
            # n / (3 x n_class) of the fold's training part: the rare class weighs 4 times a common one
            weights_line = re.search(r"class weights \(balanced, from the class counts of the \d+ training "
                                     r"images\): (\S+) (\S+) (\S+)", log.read_text())
            assert weights_line, log
            common_a, common_b, rare_weight = map(float, weights_line.groups())
            assert common_a == pytest.approx(common_b, rel=0.1) and rare_weight == pytest.approx(4 * common_a, rel=0.3)


def test_under_balanced_accuracy_the_run_ranks_the_class_weighted_network_first_and_says_why(unbalanced_run):
    work, result = unbalanced_run
    counts = re.search(r"\n\s*train\s+(\d+)\n", result.stdout + result.stderr)
    assert counts and int(counts[1]) == 4  # 2 grid points x 2 folds, trained for real
    summary = pd.read_csv(work / "results" / "cv_summary.tsv", sep="\t").set_index("class_weights")
    # ranked by the metric: the class-weighted network first, though it is the less accurate one
    assert summary.index.tolist() == ["balanced", "none"] and summary.loc["balanced", "rank"] == 1
    assert summary.loc["balanced", "mean_balanced_accuracy"] > summary.loc["none", "mean_balanced_accuracy"]
    assert summary.loc["none", "mean_accuracy"] > summary.loc["balanced", "mean_accuracy"]
    assert summary.loc["none", "mean_recall_rare"] == 0.0 < summary.loc["balanced", "mean_recall_rare"]
    folds = pd.read_csv(work / "results" / "cv_folds.tsv", sep="\t")
    # the plain network: every common image right, no rare one, in each fold
    assert folds.loc[folds["class_weights"] == "none", "balanced_accuracy"].tolist() == pytest.approx([2 / 3] * 2)

    page = (work / "results" / "stats" / "summary.html").read_text()
    assert "ranked and compared by <b>balanced accuracy</b>" in page
    recall = f"{100 * summary.loc['balanced', 'mean_recall_rare']:.1f}%"
    why = (r"the best by balanced accuracy, [^()]*class weights balanced \([^()]*\), is not the best by accuracy, "
           r"[^()]*class weights none \([^()]*\): the higher accuracy comes from the larger classes, while the recall "
           rf"of class rare \(the share of its test images found\) is 0\.0% against {re.escape(recall)}")
    assert re.search(why, page), page

    plot = (work / "results" / "plots" / "fold_accuracies.svg").read_text()
    assert "test-fold balanced accuracy (%)" in plot  # the fold plot shows the metric
