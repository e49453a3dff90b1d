"""cvgrid.race on constructed fold accuracies: which points a round stops, that the best and the
other models' bests race on, that a stopped point stays stopped, the race column of the CV
tables, the jobs saved and the summary's paragraph, and the config checks."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from cvgrid import race, stats, wording
from cvgrid.grid import ConfigError
from cvgrid.io import write_tsv
from cvgrid.summary import cv_summary

T = stats.Thresholds(rope=0.005, probability=0.95, alpha=0.05, metric="accuracy")
KEYS = ["model", "batch_size", "learning_rate", "augmentation"]

# Four folds; the race starts after two. A is the best, B is 3 to 5 points below it, C is
# hopeless (chance level of three classes), D and E are model_b's (far below model_a's best).
ACCURACIES = {
    ("model_a", 32, 0.001, "none"): [0.95, 0.96, 0.95, 0.97],
    ("model_a", 32, 0.0004, "none"): [0.92, 0.91, 0.91, 0.90],
    ("model_a", 32, 100.0, "none"): [0.33, 0.34, 0.33, 0.33],
    ("model_b", 32, 0.001, "none"): [0.70, 0.72, 0.71, 0.70],
    ("model_b", 32, 0.0004, "none"): [0.71, 0.70, 0.72, 0.71],
}
A, B, C, D, E = ACCURACIES


def folder(point) -> str:
    return "/".join(f"{k}~{v}" for k, v in zip(KEYS, point))


def folds_of(points, k) -> pd.DataFrame:
    """cv_folds rows of `points`' folds 0..k-1 (n_train, n_test of a 4-fold split of 100 images)."""
    return pd.DataFrame([{**dict(zip(KEYS, p)), "repeat": 0, "fold": f, "accuracy": ACCURACIES[p][f],
                          "n_train": 75, "n_test": 25, "epochs_run": 2, "seconds": 1.0}
                         for p in points for f in range(k)])


def folders_of(points) -> pd.DataFrame:
    return pd.DataFrame([{**dict(zip(KEYS, p)), "point": folder(p)} for p in points])


def one_round(points, k, previous=None) -> pd.DataFrame:
    folds = folds_of(points, k)
    return race.race_round(folds, folders_of(points), T, previous)


def row(table, point) -> pd.Series:
    return table.set_index("point").loc[folder(point)]


def test_the_first_round_stops_the_hopeless_point_and_keeps_each_models_best():
    table = one_round(list(ACCURACIES), 2)
    assert len(table) == 5 and set(table["round"]) == {2}
    assert row(table, C)["status"] == race.STOPPED and row(table, C)["stopped_after"] == 2
    assert row(table, C)["verdict"] == stats.WORSE
    # A is model_a's best; B cannot be told from it on two folds; model_b's points are compared
    # with model_b's best (D on these folds), not with model_a's, so both race on although far below A.
    for point in (A, B, D, E):
        assert row(table, point)["status"] == race.RACING and pd.isna(row(table, point)["stopped_after"])
    assert table.loc[table["is_best"], "point"].tolist() == [folder(A), folder(D)]


def test_a_later_round_compares_only_the_survivors_and_a_stopped_point_stays_stopped(tmp_path):
    first = one_round(list(ACCURACIES), 2)
    write_tsv(first, tmp_path / "fold~2.tsv")
    survivors = race.survivors(tmp_path / "fold~2.tsv")
    assert set(survivors) == {folder(p) for p in (A, B, D, E)}
    back = {folder(p): p for p in ACCURACIES}
    second = one_round([back[s] for s in survivors], 3, race.read_race(tmp_path / "fold~2.tsv"))
    # B, undecided on two folds (P(worse) 0.89), is worse on three: stopped; C keeps its row of round 2.
    assert row(second, B)["status"] == race.STOPPED and row(second, B)["stopped_after"] == 3
    assert row(second, C)["stopped_after"] == 2 and row(second, C)["round"] == 2
    assert row(second, A)["status"] == race.RACING and row(second, A)["round"] == 3
    assert len(second) == 5
    # A stopped point is in no later round: finding it there is an error, not a silent merge.
    with pytest.raises(ValueError, match="dropped earlier"):
        one_round([A, B, C, D, E], 3, first)
    # Every survivor must have the same folds, or the comparisons would not be paired.
    uneven = pd.concat([folds_of([A, B], 3), folds_of([D, E], 2)])
    with pytest.raises(ValueError, match="folds 0..2"):
        race.race_round(uneven, folders_of([A, B, D, E]), T, first)


def test_the_best_races_on_even_when_every_other_point_is_worse():
    table = one_round([A, C], 2)
    assert row(table, A)["status"] == race.RACING and row(table, C)["status"] == race.STOPPED


def raced_tables():
    """cv_folds and cv_summary of the race above: C stopped after 2 folds, B after 3."""
    first = one_round(list(ACCURACIES), 2)
    last = one_round([A, B, D, E], 3, first)
    trained = {A: 4, B: 3, C: 2, D: 4, E: 4}
    folds = pd.concat([folds_of([p], n) for p, n in trained.items()], ignore_index=True)
    folds = folds.assign(diverged=False, epochs_run=2, seconds=60.0)
    return race.mark_race(folds, last), race.mark_race(cv_summary(folds, metric="accuracy"), last)


def test_the_cv_tables_keep_every_fold_and_rank_only_the_completed_points():
    folds, summary = raced_tables()
    assert len(folds) == 17  # every trained fold, the stopped points' first folds too
    labels = summary.set_index(KEYS)["race"]
    assert labels[B] == "stopped early: worse after 3 folds" and labels[C] == "stopped early: worse after 2 folds"
    assert labels[A] == labels[D] == labels[E] == race.COMPLETED
    # Stopped points are unranked and last: rank 1 is what the final model refits.
    assert summary["race"].tolist()[:3] == [race.COMPLETED] * 3
    ranks = summary.set_index(KEYS)["rank"]
    assert ranks[A] == 1 and ranks[E] == 1 and ranks[D] == 2 and pd.isna(ranks[B]) and pd.isna(ranks[C])
    assert summary.set_index(KEYS)["folds"][C] == 2
    assert set(map(tuple, race.completed(summary)[KEYS].to_numpy())) == {A, D, E}
    assert len(race.completed(folds)) == 12
    # Without a race the tables pass through untouched.
    plain = folds.drop(columns="race")
    assert race.completed(plain) is plain


def test_the_savings_and_the_summary_paragraph_name_the_stopped_points():
    folds, summary = raced_tables()
    savings = race.race_savings(folds, 4)
    assert (savings["points"], savings["full"], savings["run"], savings["saved"]) == (5, 20, 17, 3)
    text = wording.race_paragraph(folds, summary, "accuracy")
    assert "17 training jobs run of the full grid's 20 (5 points × 4 folds), so racing saved 3" in text
    assert "learning rate 100, augmentation none, stopped early: worse after 2 folds (mean accuracy 33.5% over its 2 folds)" in text
    assert "learning rate 0.0004, augmentation none, stopped early: worse after 3 folds" in text
    assert "not comparable" in text and "3 points that trained every fold" in text
    assert "factor effects and trends over them are of a selected set" in text  # the stopped were the worst
    assert wording.race_paragraph(folds.drop(columns="race"), summary, "accuracy") is None


CONFIG = {"cv": {"folds": 5, "repeats": 1, "race": {"after_folds": 3}}, "training": {"folds_per_job": 1}}


@pytest.mark.parametrize(("change", "named"), [
    (lambda c: c["cv"]["race"].update(after_folds=1), "cv.race.after_folds is 1; it must be at least 2"),
    (lambda c: c["cv"]["race"].update(after_folds=5), "less than cv.folds (5)"),
    (lambda c: c["cv"].update(repeats=2), "cv.race is set with cv.repeats 2"),
    (lambda c: c["training"].update(folds_per_job="all"), "training.folds_per_job 'all'"),
    (lambda c: c["cv"].update(decide={"repeats": 3}), "cv.race and cv.decide are both set"),
])
def test_a_race_the_config_cannot_run_is_refused_naming_the_key(change, named):
    config = copy.deepcopy(CONFIG)
    change(config)
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")) as error:
        race.race_after_folds(config)
    assert "\n" not in str(error.value)


def test_no_race_without_the_key_and_the_point_folder_of_a_job():
    assert race.race_after_folds({"cv": {"folds": 5, "repeats": 3}, "training": {"folds_per_job": "all"}}) is None
    assert race.race_after_folds(CONFIG) == 3
    path = "results/compare/train/model~model_a/batch_size~32/learning_rate~0.001/repeat~0/fold~3/metrics.json"
    assert race.point_folder(path) == "model~model_a/batch_size~32/learning_rate~0.001"
