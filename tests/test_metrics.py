"""The metrics of a fold from its predictions (cvgrid.metrics): scikit-learn's figures, the
direction of each metric handled in one place, log-loss never made up, and the case that makes
a metric other than accuracy matter: unequal classes."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from conftest import write_image_folder
from cvgrid import metrics
from cvgrid.data import prepare_dataset
from cvgrid.folds import make_folds, split_indices
from cvgrid.summary import MetricsError, cv_summary, fold_table


def predictions(true, predicted, probabilities=None) -> pd.DataFrame:
    true, predicted = np.asarray(true), np.asarray(predicted)
    table = pd.DataFrame({"sample": range(len(true)), "file": [f"c{t}/{i}.jpg" for i, t in enumerate(true)],
                          "true": true, "predicted": predicted, "probability": 0.5})
    if probabilities is not None:
        for k in range(probabilities.shape[1]):
            table[f"probability_{k}"] = probabilities[:, k].round(6)
    return table


def test_every_metric_has_a_direction_label_and_units():
    assert set(metrics.METRICS) == {"accuracy", "balanced_accuracy", "macro_f1", "log_loss"}
    for name, metric in metrics.METRICS.items():
        assert metric.name == name and metric.label and metric.units
    assert [m for m, spec in metrics.METRICS.items() if not spec.higher_is_better] == ["log_loss"]


def test_scores_are_higher_is_better_and_go_back_for_display():
    losses = np.array([0.30, 0.10])  # the second configuration is better
    scores = metrics.to_score("log_loss", losses)
    assert scores.argmax() == 1
    assert metrics.from_score("log_loss", scores) == pytest.approx(losses)
    # a difference of scores keeps the metric's units: a ROPE of 0.01 nats is 0.01 in scores
    assert scores[1] - scores[0] == pytest.approx(0.20)
    accuracies = np.array([0.9, 0.8])
    assert metrics.to_score("accuracy", accuracies) is accuracies
    assert metrics.better_word("log_loss") == "lower" and metrics.better_word("macro_f1") == "higher"
    assert metrics.format_value("balanced_accuracy", 0.9734) == "97.3%"
    assert metrics.format_value("log_loss", 0.08512) == "0.085 nats"
    assert metrics.format_value("log_loss", math.nan) == "unavailable"
    with pytest.raises(ValueError, match="unknown metric 'auc'.*accuracy"):
        metrics.get_metric("auc")


def test_summary_columns_keep_the_published_names_for_accuracy():
    assert metrics.summary_columns("accuracy") == ("mean_accuracy", "acc_std_x2")
    assert metrics.summary_columns("log_loss") == ("mean_log_loss", "log_loss_std_x2")


def test_log_loss_from_every_classs_probability_and_unavailable_without():
    true = np.array([0, 1, 2, 2])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    with_all = metrics.fold_metrics(predictions(true, probabilities.argmax(1), probabilities))
    assert with_all["log_loss"] == pytest.approx(log_loss(true, probabilities), abs=1e-5)
    without = metrics.fold_metrics(predictions(true, probabilities.argmax(1)))
    assert math.isnan(without["log_loss"])
    assert without["accuracy"] == with_all["accuracy"] == 0.75
    folds = pd.DataFrame([without, with_all])
    assert len(metrics.unavailable(folds, "log_loss")) == 1
    assert metrics.unavailable_notes(folds) == [
        "log-loss is unavailable for 1 of 2 folds (their predictions.tsv holds only the predicted class's "
        "probability: written before every class's probability was recorded; retraining them would give it); "
        "a grid point's mean and spread of it are then left empty"]


def test_recall_of_a_class_absent_from_the_test_part_is_undefined_not_zero():
    values = metrics.fold_metrics(predictions([0, 0, 1], [0, 2, 1]))
    assert values["recall_c0"] == 0.5 and values["recall_c1"] == 1.0
    assert "recall_c2" not in values  # no image of class 2 in this test part
    assert values["balanced_accuracy"] == 0.75  # the mean recall over the classes the fold has


# The unbalanced set of issue 26 point 3: two common classes and one rare one.
UNBALANCED = [30, 30, 5]


def write_job(folder, point, repeat, fold, table):
    folder.mkdir(parents=True)
    table.to_csv(folder / "predictions.tsv", sep="\t", index=False)
    model, batch_size = point
    metrics_json = {"accuracy": float((table["true"] == table["predicted"]).mean()), "loss": 0.1, "epochs_run": 3,
                    "best_epoch": 2, "n_train": 50, "n_validation": 2, "n_test": len(table), "seconds": 1.0,
                    "config": {"model": model, "batch_size": batch_size, "learning_rate": 0.001,
                               "augmentation": "none", "repeat": repeat, "fold": fold}}
    (folder / "metrics.json").write_text(json.dumps(metrics_json))
    return folder / "metrics.json"


def unbalanced_jobs(tmp_path):
    """Two configurations' jobs on unequal classes (real JPEGs, stratified folds): one never
    predicts the rare class and wins on accuracy; the other finds it at the price of a common
    image per class and fold, and wins on balanced accuracy. Returns (metrics.json paths, rare)."""
    data = write_image_folder(tmp_path / "data", n_classes=3, per_class=UNBALANCED, size=(24, 24))
    images, index, _ = prepare_dataset(data, 16)  # the real JPEGs, decoded
    assert index["label"].value_counts().sort_index().tolist() == UNBALANCED
    rare = int(np.argmin(UNBALANCED))
    # 0.25: the early-stopping part can hold one of the four rare images of a training part
    folds = make_folds(index["label"], n_folds=5, repeats=1, seed=0, validation_fraction=0.25)
    paths = []
    for fold in range(5):
        test = index.iloc[split_indices(folds, 0, fold)["test"]]
        true = test["label"].to_numpy()
        assert (true == rare).sum() == 1  # stratified: the rare class in every test fold
        ignores_rare = np.where(true == rare, 0, true)
        finds_rare = true.copy()
        for common in set(range(3)) - {rare}:
            finds_rare[np.flatnonzero(true == common)[0]] = rare
        for point, predicted in (("ignores_rare", ignores_rare), ("finds_rare", finds_rare)):
            table = pd.DataFrame({"sample": test["sample"], "file": test["file"], "true": true,
                                  "predicted": predicted, "probability": 0.9})
            paths.append(write_job(tmp_path / "train" / point / f"fold~{fold}", (point, 32), 0, fold, table))
    return paths, rare


def test_on_unequal_classes_accuracy_and_balanced_accuracy_rank_two_configurations_differently(tmp_path):
    paths, rare = unbalanced_jobs(tmp_path)
    summary = cv_summary(fold_table(paths), metric="accuracy").set_index("model")

    def ranking(metric):
        mean, _ = metrics.summary_columns(metric)
        return list(metrics.to_score(metric, summary[mean]).sort_values(ascending=False).index)

    assert ranking("accuracy") == ["ignores_rare", "finds_rare"]
    assert ranking("balanced_accuracy") == ["finds_rare", "ignores_rare"]
    assert ranking("macro_f1") == ["finds_rare", "ignores_rare"]
    # what the reader of the per-class recalls sees: the rare class is never found by the first
    assert summary.loc["ignores_rare", f"mean_recall_class_{rare}"] == 0.0
    assert summary.loc["finds_rare", f"mean_recall_class_{rare}"] == 1.0


def test_the_config_schema_offers_exactly_the_metrics():
    import yaml

    from conftest import REPO

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    metric = schema["properties"]["statistics"]["properties"]["metric"]
    assert metric["enum"] == list(metrics.METRICS) and metric["default"] == "accuracy"


@pytest.mark.parametrize("metric", ["balanced_accuracy", "macro_f1"])
def test_under_another_metric_the_statistics_rank_by_it_and_the_summary_says_why(tmp_path, metric):
    """statistics.metric reaches cv_summary's rank, the verdicts, the selection correction and
    the written summary, which names the metric, its direction and the rare class's recall."""
    from cvgrid import wording
    from cvgrid.analysis import analyse
    from cvgrid.stats import Thresholds

    paths, rare = unbalanced_jobs(tmp_path)
    folds = fold_table(paths)
    summary = cv_summary(folds, metric=metric)
    assert summary["model"].tolist() == ["finds_rare", "ignores_rare"]
    assert summary["mean_accuracy"].tolist() == sorted(summary["mean_accuracy"])  # not ranked by it
    result = analyse(folds, summary, Thresholds(rope=0.01, probability=0.95, alpha=0.05, metric=metric),
                     contender_probability=0.5, choose="best", cost="work", ranges=None)
    selected = result.tables["selected"].set_index("scope").loc["all models"]
    assert selected["model"] == "finds_rare"
    assert selected[f"raw_{metric}"] == pytest.approx(summary.loc[0, f"mean_{metric}"])
    assert selected[f"corrected_{metric}"] <= selected[f"raw_{metric}"]
    # one grid point per model here: compare_models holds the two, finds_rare first, in the metric's units
    models = result.tables["compare_models"].iloc[0]
    assert (models["model_a"], models["model_b"]) == ("finds_rare", "ignores_rare")
    assert models["mean_diff"] == pytest.approx(summary.loc[0, f"mean_{metric}"] - summary.loc[1, f"mean_{metric}"])
    text = wording.summary_text(result)
    label = metrics.METRICS[metric].label
    assert f"ranked and compared by **{label}**" in text and "higher is better" in text
    assert "ROPE ±1 points" in text


def test_the_summary_says_why_the_best_by_the_metric_is_not_the_best_by_accuracy(tmp_path):
    from cvgrid import wording
    from cvgrid.analysis import analyse
    from cvgrid.stats import Thresholds

    paths, rare = unbalanced_jobs(tmp_path)
    folds = fold_table(paths)
    # One model with two grid points: its best by balanced accuracy is not its best by accuracy.
    folds["batch_size"] = folds["model"].map({"ignores_rare": 16, "finds_rare": 32})
    folds["model"] = "model_a"
    summary = cv_summary(folds, metric="balanced_accuracy")
    assert summary["batch_size"].tolist() == [32, 16]  # finds_rare first
    result = analyse(folds, summary, Thresholds(rope=0.01, probability=0.95, alpha=0.05, metric="balanced_accuracy"),
                     contender_probability=0.5, choose="best", cost="work", ranges=None)
    paragraph = wording.metric_paragraph(result)
    assert "is not the best by accuracy" in paragraph
    assert f"recall of class class_{rare}" in paragraph and "is 0.0% against 100.0%" in paragraph
    assert wording.metric_paragraph(analyse(folds, cv_summary(folds, metric="accuracy"), Thresholds(
        rope=0.01, probability=0.95, alpha=0.05, metric="accuracy"), contender_probability=0.5, choose="best", cost="work", ranges=None)) is None


def test_log_loss_of_files_without_every_classs_probability_stops_the_ranking_naming_why(tmp_path):
    paths, _ = unbalanced_jobs(tmp_path)  # predictions.tsv with the predicted class's probability only
    with pytest.raises(MetricsError, match="statistics.metric is log_loss, but log-loss is unavailable for 10 of 10 folds"):
        cv_summary(fold_table(paths), metric="log_loss")
