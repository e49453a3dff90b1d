"""Gathering metrics.json files: malformed files named, the CV summary's columns, order and spread."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from cvgrid.summary import MetricsError, best_points, complete_points, cv_summary, fold_table, read_metrics

# Made-up fold accuracies of three grid points over 2 repeats x 3 folds.
ACCURACIES = {
    ("model_a", 32, 0.001, "none"): [0.80, 0.84, 0.78, 0.82, 0.86, 0.80],
    ("model_a", 64, 0.0004, "affine"): [0.90, 0.88, 0.93, 0.91, 0.87, 0.92],
    ("model_b", 32, 0.0001, "none"): [0.70, 0.95, 0.60, 0.75, 0.65, 0.99],
}
KEYS = ("repeat", "fold")


N_TEST = 100  # per fold: 50 images of class "cat", 50 of "dog"


def metrics_for(point, repeat, fold, accuracy):
    model, batch_size, learning_rate, augmentation = point
    return {
        "accuracy": accuracy, "loss": 1 - accuracy, "epochs_run": 10 + fold, "best_epoch": 5,
        "n_train": 90, "n_validation": 10, "n_test": N_TEST, "seconds": 60.0, "images_per_second": 100.0,
        "precision": "fp32", "device": "cpu",
        "config": {"model": model, "batch_size": batch_size, "learning_rate": learning_rate,
                   "augmentation": augmentation, "repeat": repeat, "fold": fold},
    }


def predictions_for(accuracy):
    """A predictions.tsv's table with this accuracy: every error is a "dog" called "cat", as
    long as there are dogs, then cats called dogs."""
    true = np.repeat([0, 1], N_TEST // 2)
    wrong = N_TEST - round(accuracy * N_TEST)
    order = np.r_[np.arange(N_TEST // 2, N_TEST), np.arange(N_TEST // 2)][:wrong]
    predicted = true.copy()
    predicted[order] = 1 - true[order]
    return pd.DataFrame({"sample": range(N_TEST), "file": [("cat", "dog")[t] + f"/{i}.jpg" for i, t in enumerate(true)],
                         "true": true, "predicted": predicted, "probability": 0.9})


@pytest.fixture
def metrics_files(tmp_path):
    paths = []
    for p, (point, accs) in enumerate(ACCURACIES.items()):
        for i, accuracy in enumerate(accs):
            repeat, fold = divmod(i, 3)
            path = tmp_path / f"point{p}" / f"r{repeat}f{fold}" / "metrics.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(metrics_for(point, repeat, fold, accuracy)))
            predictions_for(accuracy).to_csv(path.with_name("predictions.tsv"), sep="\t", index=False)
            paths.append(path)
    return paths[::-1]  # order of the inputs must not matter


def test_read_metrics_returns_a_good_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics_for(("model_a", 32, 0.001, "none"), 0, 1, 0.75)))
    assert read_metrics(path)["accuracy"] == 0.75


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty (a job killed mid-write by an older version)
        "{\"accuracy\": 0.9",  # not JSON
        json.dumps({"accuracy": 0.9}),  # keys missing
        json.dumps({**metrics_for(("m", 1, 0.1, "none"), 0, 0, 0.5), "accuracy": 1.5}),
        json.dumps({**metrics_for(("m", 1, 0.1, "none"), 0, 0, 0.5), "accuracy": "0.5"}),
        json.dumps({**metrics_for(("m", 1, 0.1, "none"), 0, 0, 0.5), "accuracy": None}),
        "[1, 2, 3]",  # JSON, but not an object
        "null",
        "0.93",
    ],
    ids=["empty", "truncated", "missing-keys", "accuracy-above-1", "accuracy-string", "accuracy-null",
         "list", "null", "number"],
)
def test_read_metrics_names_a_malformed_file(tmp_path, text):
    path = tmp_path / "fold~3" / "metrics.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(MetricsError, match="fold~3"):
        read_metrics(path)


def test_read_metrics_names_a_missing_file(tmp_path):
    with pytest.raises(MetricsError, match="gone.json"):
        read_metrics(tmp_path / "gone.json")


def test_fold_table_has_one_row_per_job(metrics_files):
    table = fold_table(metrics_files)
    assert len(table) == 18
    assert {"model", "batch_size", "learning_rate", "augmentation", "repeat", "fold", "accuracy"} <= set(table.columns)
    # the sizes mean what they mean in metrics.json
    assert (table["n_train"] == 90).all() and (table["n_validation"] == 10).all() and (table["n_test"] == N_TEST).all()
    assert not table.duplicated(["model", "batch_size", "learning_rate", "augmentation", "repeat", "fold"]).any()
    # metrics.json without "diverged" (written before it existed) is a fold that did not diverge
    assert table["diverged"].dtype == bool and not table["diverged"].any()


def test_cv_summary_columns_order_and_spread(metrics_files):
    summary = cv_summary(fold_table(metrics_files), metric="accuracy")
    for column in ("model", "batch_size", "learning_rate", "augmentation", "mean_accuracy", "acc_std_x2", "folds",
                   "rank"):
        assert column in summary.columns, column
    fold_columns = [f"acc_r{r}_f{f}" for r in range(2) for f in range(3)]
    assert set(fold_columns) <= set(summary.columns)
    assert len(summary) == len(ACCURACIES)
    assert summary["mean_accuracy"].is_monotonic_decreasing
    for row in summary.itertuples():
        accs = np.array(ACCURACIES[(row.model, row.batch_size, row.learning_rate, row.augmentation)])
        assert row.folds == 6
        assert row.mean_accuracy == pytest.approx(accs.mean())
        assert row.acc_std_x2 == pytest.approx(2 * np.std(accs, ddof=0))
        assert row.acc_std_x2 != pytest.approx(2 * np.std(accs, ddof=1))
        assert [getattr(row, c) for c in fold_columns] == pytest.approx(list(accs))
    # rank within the model: model_a's two points are 1 and 2, model_b's single point 1
    assert dict(zip(summary["batch_size"].astype(str) + summary["model"], summary["rank"])) == {
        "64model_a": 1, "32model_a": 2, "32model_b": 1}
    assert list(best_points(summary)["batch_size"]) == [64, 32]
    expected_order = sorted(ACCURACIES, key=lambda k: -np.mean(ACCURACIES[k]))
    assert list(summary[["model", "batch_size", "learning_rate", "augmentation"]].itertuples(index=False, name=None)) \
        == expected_order


def test_ties_in_mean_accuracy_are_broken_by_the_grid_keys(tmp_path):
    rows = []
    for point in [("model_b", 32, 0.001, "none"), ("model_a", 64, 0.001, "none"), ("model_a", 32, 0.001, "none")]:
        for fold, acc in enumerate([0.5, 0.7]):
            rows.append({"model": point[0], "batch_size": point[1], "learning_rate": point[2],
                         "augmentation": point[3], "repeat": 0, "fold": fold, "accuracy": acc,
                         "epochs_run": 3, "seconds": 1.0})
    summary = cv_summary(pd.DataFrame(rows), metric="accuracy")
    assert list(zip(summary["model"], summary["batch_size"])) == [("model_a", 32), ("model_a", 64), ("model_b", 32)]


def write_listing(path, metrics_paths):
    path.write_text("".join(f"{p}\n" for p in metrics_paths))
    return path


def summarize(tmp_path, listing, name="s"):
    script = str(REPO / "scripts" / "summarize_cv.py")
    return subprocess.run([sys.executable, script, "--folds-out", str(tmp_path / f"{name}_folds.tsv"),
                           "--summary-out", str(tmp_path / f"{name}_summary.tsv"),
                           "--axes", "model,batch_size,learning_rate,augmentation", "--metric", "accuracy",
                           "--metrics-list", str(listing)],
                          capture_output=True, text=True)


def test_summarize_cli_writes_both_tables_and_names_a_bad_file(tmp_path, metrics_files):
    listing = write_listing(tmp_path / "jobs.txt", metrics_files)
    assert summarize(tmp_path, listing).returncode == 0
    summary = pd.read_csv(tmp_path / "s_summary.tsv", sep="\t")
    assert len(summary) == 3 and summary["folds"].tolist() == [6, 6, 6]
    assert len(pd.read_csv(tmp_path / "s_folds.tsv", sep="\t")) == 18
    metrics_files[0].write_text("{}")
    bad = summarize(tmp_path, listing, "bad")
    assert bad.returncode != 0
    assert str(metrics_files[0]) in bad.stderr
    assert not (tmp_path / "bad_summary.tsv").exists()


def test_the_gather_reads_only_the_listed_jobs_and_names_the_missing_ones(tmp_path):
    # 40 grid points x 5 folds (tests/test_big_grid.py gathers 25,000 through the workflow).
    points = [(m, b, lr, "none") for m in ("model_a", "model_b") for b in (8, 16, 32, 64)
              for lr in (0.0001, 0.0004, 0.001, 0.004, 0.01)]
    paths = []
    for n, point in enumerate(points):
        folder = tmp_path / "train" / f"model~{point[0]}" / f"batch_size~{point[1]}" / f"learning_rate~{point[2]}" / "augmentation~none"
        for fold in range(5):
            path = folder / f"fold~{fold}" / "metrics.json"
            path.parent.mkdir(parents=True)
            accuracy = (n % 97 + fold) / 100
            path.write_text(json.dumps(metrics_for(point, 0, fold, accuracy)))
            predictions_for(accuracy).to_csv(path.with_name("predictions.tsv"), sep="\t", index=False)
            paths.append(path)
    # A stray job of an earlier grid in the same folders is not gathered: only the list is read.
    stray = tmp_path / "train" / "model~model_c" / "fold~0" / "metrics.json"
    stray.parent.mkdir(parents=True)
    stray.write_text(json.dumps(metrics_for(("model_c", 8, 0.1, "none"), 0, 0, 0.5)))
    listing = write_listing(tmp_path / "jobs.txt", paths)

    assert summarize(tmp_path, listing).returncode == 0
    folds = pd.read_csv(tmp_path / "s_folds.tsv", sep="\t")
    summary = pd.read_csv(tmp_path / "s_summary.tsv", sep="\t")
    assert len(folds) == 200 and "model_c" not in set(folds["model"])
    assert len(summary) == 40 and (summary["folds"] == 5).all()

    paths[12].unlink()
    paths[190].unlink()
    missing = summarize(tmp_path, listing, "missing")
    assert missing.returncode != 0
    assert "2 of the 200 training jobs" in missing.stderr
    assert str(paths[12]) in missing.stderr and str(paths[190]) in missing.stderr
    assert not (tmp_path / "missing_summary.tsv").exists()


def test_complete_points_keeps_the_finished_grid_points_and_names_the_others(metrics_files):
    folds = fold_table(metrics_files)
    running = folds.drop(index=folds.index[(folds["model"] == "model_b") & (folds["fold"] == 2)])
    finished, unfinished = complete_points(running, pairs=6)
    assert set(finished["model"]) == {"model_a"} and len(finished) == 12
    assert unfinished[["model", "batch_size", "pairs"]].to_dict(orient="records") == [
        {"model": "model_b", "batch_size": 32, "pairs": 4}]
    everything, none = complete_points(folds, pairs=6)
    assert len(everything) == 18 and none.empty


def test_fold_table_scores_each_folds_predictions_with_scikit_learn(metrics_files):
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score

    table = fold_table(metrics_files)
    # The published columns first, in their places; the other metrics after them.
    assert list(table.columns[:20]) == ["model", "batch_size", "learning_rate", "augmentation", "repeat", "fold",
                                        "accuracy", "loss", "diverged", "epochs_run", "best_epoch", "n_train",
                                        "n_validation", "n_test", "seconds", "images_per_second", "precision", "device",
                                        "gpu", "images_per_second_after_first_epoch"]
    assert list(table.columns[20:]) == ["balanced_accuracy", "macro_f1", "log_loss", "recall_cat", "recall_dog"]
    for row in table.itertuples():
        p = predictions_for(row.accuracy)
        assert row.balanced_accuracy == pytest.approx(balanced_accuracy_score(p["true"], p["predicted"]))
        assert row.macro_f1 == pytest.approx(f1_score(p["true"], p["predicted"], average="macro"))
        assert [row.recall_cat, row.recall_dog] == pytest.approx(recall_score(p["true"], p["predicted"], average=None))
    # 0.60 accuracy, every error a dog: cats all found, a fifth of the dogs
    low = table[table["accuracy"] == 0.60].iloc[0]
    assert (low["recall_cat"], low["recall_dog"], low["balanced_accuracy"]) == pytest.approx((1.0, 0.2, 0.6))
    # Only the predicted class's probability in these files: log-loss unavailable, never estimated.
    assert table["log_loss"].isna().all()


def test_cv_summary_has_each_metrics_mean_and_fold_spread_over_all_folds(metrics_files):
    folds = fold_table(metrics_files)
    summary = cv_summary(folds, metric="accuracy")
    published = ["model", "batch_size", "learning_rate", "augmentation", "mean_accuracy", "acc_std_x2", "folds",
                 "rank", "mean_epochs", "minutes", *[f"acc_r{r}_f{f}" for r in range(2) for f in range(3)]]
    assert list(summary.columns[:len(published)]) == published
    for row in summary.itertuples():
        point = folds[(folds["model"] == row.model) & (folds["batch_size"] == row.batch_size)]
        for metric in ("balanced_accuracy", "macro_f1", "recall_dog"):
            values = point[metric].to_numpy()
            assert getattr(row, f"mean_{metric}") == pytest.approx(values.mean())
            assert getattr(row, f"{metric}_std_x2") == pytest.approx(2 * np.std(values, ddof=0))
        assert np.isnan(row.mean_log_loss) and np.isnan(row.log_loss_std_x2)
    # One fold without a recall of a class: the point's mean of it is left empty, not taken over fewer folds.
    gap = folds.copy()
    gap.loc[gap.index[0], "recall_dog"] = np.nan
    row = cv_summary(gap, metric="accuracy").set_index(["model", "batch_size"]).loc[tuple(gap.loc[gap.index[0], ["model", "batch_size"]])]
    assert np.isnan(row["mean_recall_dog"]) and not np.isnan(row["mean_recall_cat"])


def test_the_log_of_summarize_cv_names_the_folds_without_log_loss(tmp_path, metrics_files):
    run = summarize(tmp_path, write_listing(tmp_path / "jobs.txt", metrics_files))
    assert run.returncode == 0, run.stderr
    assert "log-loss is unavailable for 18 of 18 folds" in run.stderr
    assert "only the predicted class's probability" in run.stderr


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p.drop(columns="predicted"), "lacks columns"),
    (lambda p: p.assign(predicted=1 - p["true"]), "not from the same job"),
    (lambda p: p.iloc[:0], "holds no predictions"),
], ids=["column-missing", "another-jobs-file", "empty"])
def test_a_bad_predictions_file_is_named(metrics_files, change, message):
    path = metrics_files[3].with_name("predictions.tsv")
    change(pd.read_csv(path, sep="\t")).to_csv(path, sep="\t", index=False)
    with pytest.raises(MetricsError, match=message) as error:
        fold_table(metrics_files)
    assert str(path) in str(error.value)


def test_a_missing_predictions_file_is_named(metrics_files):
    path = metrics_files[0].with_name("predictions.tsv")
    path.unlink()
    with pytest.raises(MetricsError, match="predictions.tsv"):
        fold_table(metrics_files)
