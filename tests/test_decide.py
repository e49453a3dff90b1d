"""cv.decide (repeats only where they decide) through the real workflow: the added repeats' folds,
the checkpoint that names the points of each added repeat, and the jobs it plans. The first
repeat's training outputs are stubs written by the test (the data steps and the checkpoint are
real), with one point known to be undecided and decidable by 3 repeats, one known worse, and one
undecided that no number of repeats up to 3 could decide."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_snakemake, tiny_config, write_config, write_image_folder
from cvgrid import stats
from cvgrid.folds import make_folds
from cvgrid.grid import ConfigError, decide_max_repeats, fold_keys
from test_workflow import job_counts

N_TEST = 12  # test images of a fold: 3 classes x 20 images, 5 folds
# Correct test images (of 12) per fold of repeat 0, by learning rate (the grid's one varying axis).
BEST = 0.001
FIRST_REPEAT = {
    0.001: [11, 11, 10, 11, 10],  # the best
    0.0004: [8, 10, 9, 10, 10],  # undecided; 3 repeats could decide it (repeats_needed 3)
    0.0002: [10, 11, 10, 12, 9],  # undecided; no number of repeats up to 3 could
    0.0001: [5, 5, 5, 5, 5],  # worse
}
GRID = {"model": ["model_a"], "batch_size": [16], "learning_rate": list(FIRST_REPEAT), "augmentation": ["none"]}


def point(lr) -> str:
    return f"model~model_a/batch_size~16/learning_rate~{lr}/augmentation~none"


def stub_job(work, lr, repeat, fold, correct) -> None:
    """A finished training job's three files that agree with each other (the gather checks it)."""
    folder = work / "results" / "train" / point(lr) / f"repeat~{repeat}" / f"fold~{fold}"
    folder.mkdir(parents=True)
    accuracy = correct / N_TEST
    true = [k % 3 for k in range(N_TEST)]
    predicted = [t if k < correct else (t + 1) % 3 for k, t in enumerate(true)]
    rows = [f"{k}\tclass_{t}/img_{k:03d}.jpg\t{t}\t{p}\t0.9" for k, (t, p) in enumerate(zip(true, predicted))]
    (folder / "predictions.tsv").write_text("sample\tfile\ttrue\tpredicted\tprobability\n" + "\n".join(rows) + "\n")
    (folder / "history.tsv").write_text("epoch\n1\n")
    (folder / "metrics.json").write_text(json.dumps({
        "accuracy": accuracy, "loss": 1 - accuracy, "epochs_run": 1, "best_epoch": 1, "n_train": 43,
        "n_validation": 5, "n_test": N_TEST, "seconds": 0.0,
        "config": {"model": "model_a", "batch_size": 16, "learning_rate": lr, "augmentation": "none",
                   "repeat": repeat, "fold": fold}}))


def planned(output: str, rule: str) -> list[str]:
    """The output line of every `rule` job in a dry run's listing (grouped jobs are indented)."""
    outputs, current = [], None
    for line in output.splitlines():
        line = line.strip()
        if line.endswith(":") and line.split()[0] in ("rule", "localrule", "checkpoint"):
            current = line.split()[1][:-1]
        elif line.startswith("output:") and current == rule:
            outputs.append(line.split(":", 1)[1].strip())
    return sorted(outputs)


def trained(output: str) -> list[tuple[str, int]]:
    """(learning rate, repeat) of every planned training job's first output."""
    jobs = []
    for outputs in planned(output, "train"):
        match = re.search(r"learning_rate~([0-9.e-]+)/augmentation~none/repeat~(\d+)/fold~\d+/metrics.json", outputs)
        jobs.append((match[1], int(match[2])))
    return sorted(jobs)


@pytest.fixture(scope="module")
def first_repeat(tmp_path_factory):
    """A working directory with real data steps and stubbed repeat-0 jobs; cv.decide up to 3 repeats."""
    root = tmp_path_factory.mktemp("decide")
    data = write_image_folder(root / "images", n_classes=3, per_class=20, size=(16, 16))
    config = tiny_config(data, cv={"folds": 5, "decide": {"max_repeats": 3}}, grid=GRID)
    configfile = write_config(root / "config.yaml", config)
    work = root / "work"
    work.mkdir()
    run_snakemake(work, configfile, "--cores", "1", "results/data/folds.tsv")
    for lr, counts in FIRST_REPEAT.items():
        for fold, correct in enumerate(counts):
            stub_job(work, lr, 0, fold, correct)
    return work, configfile, config


def test_the_constructed_first_repeat_is_what_it_says():
    """The premise of the other tests, from the library's own verdicts."""
    thresholds = stats.Thresholds(rope=0.005, probability=0.95, alpha=0.05, metric="accuracy")
    best = np.array(FIRST_REPEAT[BEST]) / N_TEST
    for lr, decidable in ((0.0004, True), (0.0002, False)):
        diffs = np.array(FIRST_REPEAT[lr]) / N_TEST - best
        posterior = stats.CorrelatedPosterior.from_differences(diffs, 48, 12)
        assert posterior.verdict(0.005, 0.95) == stats.UNDECIDED
        needed = stats.repeats_needed(diffs.mean(), diffs.std(ddof=1), folds=5, size_ratio=12 / 48,
                                      thresholds=thresholds)
        assert (needed <= 3) == decidable, (lr, needed)


def test_before_the_first_round_only_the_checkpoint_waits(first_repeat):
    work, configfile, _ = first_repeat
    result = run_snakemake(work, configfile, "-n", "results/train_jobs.txt")
    output = result.stdout + result.stderr
    counts = job_counts(output)
    assert "train" not in counts, output  # repeat 0 is finished, repeat 1 not decided yet
    assert counts["decide_repeat"] == 1 and planned(output, "decide_repeat") == ["results/decide/repeat~1.tsv"]


def test_the_checkpoint_adds_the_best_and_the_decidable_point_then_stops(first_repeat):
    work, configfile, _ = first_repeat
    run_snakemake(work, configfile, "--cores", "1", "results/decide/repeat~1.tsv")
    rounds = pd.read_csv(work / "results" / "decide" / "repeat~1.tsv", sep="\t")
    got = dict(zip(rounds["learning_rate"], rounds["gets_repeat"]))
    assert got == {0.001: True, 0.0004: True, 0.0002: False, 0.0001: False}
    assert dict(zip(rounds["learning_rate"], rounds["verdict"]))[0.0001] == "worse"
    assert (rounds["k"] == 5).all() and (rounds["repeats_done"] == 1).all()

    # Round 1 planned: repeat 1 of the best and of the decidable point, 5 folds each, on their
    # own folds file; repeat 0's jobs stay as they are. Round 2 waits for them.
    result = run_snakemake(work, configfile, "-n", "results/train_jobs.txt")
    output = result.stdout + result.stderr
    assert trained(output) == [("0.0004", 1)] * 5 + [("0.001", 1)] * 5, output
    assert planned(output, "make_repeat_folds") == ["results/data/folds_repeat~1.tsv"]
    assert planned(output, "decide_repeat") == ["results/decide/repeat~2.tsv"]
    assert "results/data/folds.tsv" not in planned(output, "make_folds")

    # Repeat 1 done: the decidable point is now clearly worse, so round 2 repeats nobody and the
    # job list holds repeat 0 of the 4 points and repeat 1 of 2 (30 jobs), nothing to train.
    for fold in range(5):
        stub_job(work, BEST, 1, fold, 11)
        stub_job(work, 0.0004, 1, fold, 7)
    run_snakemake(work, configfile, "--cores", "1", "results/train_jobs.txt")
    second = pd.read_csv(work / "results" / "decide" / "repeat~2.tsv", sep="\t")
    assert sorted(second["learning_rate"]) == [0.0004, 0.001] and (second["k"] == 10).all()
    assert not second["gets_repeat"].any()
    assert dict(zip(second["learning_rate"], second["verdict"]))[0.0004] == "worse"
    listed = (work / "results" / "train_jobs.txt").read_text().splitlines()
    assert len(listed) == 4 * 5 + 2 * 5
    assert sum("/repeat~1/" in path for path in listed) == 10 and not any("/repeat~2/" in path for path in listed)
    again = run_snakemake(work, configfile, "-n", "results/train_jobs.txt")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_an_added_repeats_folds_are_those_of_a_longer_folds_table(first_repeat):
    work, configfile, config = first_repeat
    run_snakemake(work, configfile, "--cores", "1", "results/data/folds_repeat~2.tsv")
    added = pd.read_csv(work / "results" / "data" / "folds_repeat~2.tsv", sep="\t")
    index = pd.read_csv(work / "results" / "data" / "index.tsv", sep="\t")
    longer = make_folds(index["label"].to_numpy(), 5, 3, seed=config["cv"]["seed"],
                        validation_fraction=config["cv"]["validation_fraction"])
    expected = longer[longer["repeat"] == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(added, expected, check_dtype=False)
    first = pd.read_csv(work / "results" / "data" / "folds.tsv", sep="\t")
    assert set(first["repeat"]) == {0}  # folds.tsv is cv.repeats' table, untouched


def test_without_decide_the_plan_is_unchanged(tmp_path):
    """No cv.decide: no decide job, and folds.tsv feeds every training job, as before."""
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20, size=(16, 16))
    configfile = write_config(tmp_path / "config.yaml", tiny_config(data, cv={"folds": 2, "repeats": 2}))
    work = tmp_path / "work"
    work.mkdir()
    output = "".join(vars(run_snakemake(work, configfile, "-n", "-p"))[k] for k in ("stdout", "stderr"))
    counts = job_counts(output)
    assert counts["train"] == 2 * 2 * 2 and "decide_repeat" not in counts and "make_repeat_folds" not in counts
    assert "folds_repeat" not in output


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda c: c["cv"].update(decide={"max_repeats": 1}), ("max_repeats", "minimum of 2")),
        (lambda c: c["cv"].update(repeats=2, decide={"max_repeats": 2}),
         ("cv.decide.max_repeats is 2, not above cv.repeats (2)",)),
        (lambda c: (c["cv"].update(decide={"max_repeats": 3}), c["training"].update(folds_per_job="all")),
         ("training.folds_per_job is 'all' with cv.decide",)),
        (lambda c: c["cv"].update(decide={}), ("max_repeats", "required")),
    ],
    ids=["max-repeats-1", "max-repeats-not-above-repeats", "folds-per-job-all", "no-max-repeats"],
)
def test_a_bad_decide_config_fails_before_any_job_naming_the_key(tmp_path, change, named):
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20, size=(16, 16))
    config = tiny_config(data)
    change(config)
    work = tmp_path / "work"
    work.mkdir()
    result = run_snakemake(work, write_config(tmp_path / "bad.yaml", config), "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for word in named:
        assert word in output, output
    assert "Job stats" not in output


def test_decide_with_race_is_refused_naming_both():
    config = {"cv": {"repeats": 1, "folds": 5, "decide": {"max_repeats": 3}, "race": {"after_folds": 2}}}
    with pytest.raises(ConfigError, match="cv.decide and cv.race"):
        decide_max_repeats(config)


def test_folds_per_job_of_one_repeat_stays_one_repeat_with_decide():
    """With cv.repeats 1, folds_per_job = cv.folds would be every fold of a point; with cv.decide
    it is one repeat's (a job per added repeat)."""
    from cvgrid.grid import job_unit

    config = {"cv": {"repeats": 1, "folds": 5, "decide": {"max_repeats": 3}}, "training": {"folds_per_job": 5}}
    assert job_unit(config) == "repeat"
    assert decide_max_repeats({"cv": {"repeats": 1}}) is None
    assert fold_keys(config) == [(0, f) for f in range(5)]


@pytest.mark.real_data
def test_the_study_overlay_adds_ten_jobs_to_the_published_first_repeat(real_data_dir, tmp_path):
    """config/study-decide.yaml on a working directory restored from docs/study (its README's
    command): none of the 90 published stratified jobs is trained again, and round 1 gives
    repeat 1 to the best, (64, 0.0004, affine), and to the one undecided point that 3 repeats
    could decide on the published verdicts, (128, 0.001, none): 10 training jobs."""
    import subprocess
    import sys

    configs = [str(REPO / "config" / "study.yaml"), str(REPO / "config" / "study-decide.yaml")]
    extra = ["--config", f"data_dir={real_data_dir}"]
    work = tmp_path / "study"
    work.mkdir()
    run_snakemake(work, configs[0], "--configfile", *configs, *extra, "--cores", "1", "results/data/folds.tsv")
    subprocess.run([sys.executable, str(REPO / "scripts" / "publish_study.py"), "restore", "--workdir", str(work)],
                   check=True, capture_output=True, cwd=REPO)
    before = run_snakemake(work, configs[0], "--configfile", *configs, *extra, "-n")
    counts = job_counts(before.stdout + before.stderr)
    assert "train" not in counts and counts["decide_repeat"] == 1  # the published jobs are repeat 0

    run_snakemake(work, configs[0], "--configfile", *configs, *extra, "--cores", "1", "results/decide/repeat~1.tsv")
    result = run_snakemake(work, configs[0], "--configfile", *configs, *extra, "-n")
    output = result.stdout + result.stderr
    assert job_counts(output)["train"] == 10
    points = {re.search(r"results/train/(.*?)/repeat~1/fold~\d/metrics.json", line)[1] for line in planned(output, "train")}
    assert points == {"model~model_a/batch_size~64/learning_rate~0.0004/augmentation~affine",
                      "model~model_a/batch_size~128/learning_rate~0.001/augmentation~none"}
    assert "results/compare" not in output  # compare_groups: none


# ---------------------------------------------------------------------------
# Statistics on points with different numbers of repeats (what cv.decide leaves)
# ---------------------------------------------------------------------------

THRESHOLDS = stats.Thresholds(rope=0.005, probability=0.95, alpha=0.05, metric="accuracy")


def mixed_folds() -> pd.DataFrame:
    """Model A after two rounds: P (the best) and Q with 3 repeats of 5 folds, R with its first
    repeat only. R's first repeat is above P's mean over 3 repeats, but below P's first repeat."""
    per_point = {
        0.001: [0.97, 0.95, 0.96, 0.98, 0.99] + [0.95, 0.94, 0.96, 0.95, 0.95] * 2,  # P: repeat 0 mean 0.97
        0.0004: [0.93, 0.92, 0.95, 0.94, 0.96] + [0.92, 0.91, 0.93, 0.92, 0.92] * 2,  # Q
        0.0001: [0.96, 0.95, 0.96, 0.96, 0.97],  # R: mean 0.96 > P's 0.958
    }
    rows = [{"model": "A", "batch_size": 16, "learning_rate": lr, "augmentation": "none", "repeat": i // 5,
             "fold": i % 5, "accuracy": acc, "n_train": 80, "n_validation": 0, "n_test": 20}
            for lr, accs in per_point.items() for i, acc in enumerate(accs)]
    return pd.DataFrame(rows)


def test_the_best_is_the_best_of_the_points_with_the_most_repeats_and_each_comparison_uses_the_shared_pairs():
    from cvgrid.summary import point_summary

    folds = mixed_folds()
    summary = point_summary(folds, metric="accuracy")
    assert list(summary["learning_rate"]) == [0.001, 0.0004, 0.0001]  # R's higher mean is over other folds
    table = stats.compare_to_best(folds, THRESHOLDS).set_index("learning_rate")
    assert table.loc[0.001, "is_best"] and table.loc[0.001, "k"] == 15
    assert table.loc[0.0004, "k"] == 15 and table.loc[0.0001, "k"] == 5
    # R against P on repeat 0 only: 0.96 - 0.97
    assert table.loc[0.0001, "mean_diff"] == pytest.approx(-0.01)
    assert table.loc[0.0004, "mean_diff"] == pytest.approx(np.mean(np.array(mixed_folds().query(
        "learning_rate == 0.0004")["accuracy"]) - np.array(mixed_folds().query("learning_rate == 0.001")["accuracy"])))


def test_pairs_missing_other_than_whole_repeats_at_the_end_are_refused():
    folds = mixed_folds()
    gap = folds[~((folds["learning_rate"] == 0.0004) & (folds["repeat"] == 1))]  # repeat 1 missing, 2 there
    with pytest.raises(ValueError, match="whole repeats at the end"):
        stats.compare_to_best(gap, THRESHOLDS)
    with pytest.raises(ValueError, match="same folds"):
        stats.compare_to_best(folds.drop(index=3), THRESHOLDS)  # a fold of a repeat


def test_the_choice_runs_on_the_pairs_every_point_has():
    """Contenders, the decision, the selection correction and the factor effects see every point
    on repeat 0 (the pairs all have); the verdicts use every pair two points share."""
    from cvgrid.analysis import analyse
    from cvgrid.summary import cv_summary

    folds = mixed_folds().assign(epochs_run=10, best_epoch=5, seconds=1.0, n_validation=8)
    shared = stats.shared_pairs(folds)
    assert set(shared["repeat"]) == {0} and len(shared) == 15
    assert len(stats.shared_pairs(folds[folds["learning_rate"] != 0.0001])) == 30  # all have 3 repeats
    summary = cv_summary(folds, metric="accuracy")
    analysis = analyse(folds, summary, THRESHOLDS, contender_probability=0.5, choose="best", cost="work", ranges=None)
    selected = analysis.tables["selected"].iloc[0]
    assert selected["folds"] == 5 and selected["learning_rate"] == 0.001 and selected["candidates"] == 3
    contenders = analysis.tables["contenders"]
    assert set(contenders["learning_rate"]) >= {0.001} and (contenders["gap"] <= 0).all()
    assert analysis.tables["decision"].iloc[0]["learning_rate"] == 0.001
    assert (analysis.tables["compare_to_best"]["k"].tolist()) == [15, 15, 5]
    noise = analysis.tables["repeat_noise"].set_index("learning_rate")
    assert noise.loc[0.001, "n_repeats"] == 3 and noise.loc[0.0001, "n_repeats"] == 1


def test_bbc_cv_bootstraps_the_repeats_every_point_has():
    from cvgrid.decision import decide

    folds = mixed_folds()
    rows = []
    for (lr, repeat, fold), part in folds.groupby(["learning_rate", "repeat", "fold"]):
        correct = round(part["accuracy"].iloc[0] * 20)
        samples = [s for s in range(100) if (s + repeat) % 5 == fold]  # repeat r's own fold assignment
        rows += [{"model": "A", "batch_size": 16, "learning_rate": lr, "augmentation": "none", "repeat": repeat,
                  "fold": fold, "sample": s, "correct": i < correct} for i, s in enumerate(samples)]
    result = decide(folds, pd.DataFrame(rows), None, "best", rope=0.005, probability=0.95, model="A", bags=50)
    assert result["point"]["learning_rate"] == 0.001 and result["candidates"] == 3
    assert result["raw"] == pytest.approx(0.97)  # P's mean on repeat 0, the pairs all three have


def test_the_summary_says_which_points_got_repeats_what_changed_and_what_it_cost():
    from cvgrid.wording import decide_paragraph

    def round_table(repeats_done, verdicts, gets):
        return pd.DataFrame({"model": "model_a", "batch_size": 16, "learning_rate": list(verdicts),
                             "augmentation": "none", "verdict": list(verdicts.values()),
                             "repeats_done": repeats_done, "gets_repeat": gets})

    first = round_table(1, {0.001: "best", 0.0004: "undecided", 0.0002: "undecided", 0.0001: "worse"},
                        [True, True, False, False])
    second = round_table(2, {0.001: "best", 0.0004: "worse"}, [False, False])
    final = first.assign(verdict=["best", "worse", "undecided", "worse"])
    text = decide_paragraph([first, second], final, folds=5)
    assert "a 2nd repeat to 2 points (model_a, batch size 16, learning rate 0.001, augmentation none; " in text
    assert "then no point was left that more repeats could decide" in text
    assert "learning rate 0.0004, augmentation none: *undecided* → *worse*" in text
    assert "0.0002" not in text.split("Verdicts changed")[1]  # unchanged verdicts are not listed
    assert "This cost 10 training jobs, against 20 for giving the whole grid of 4 points the same 1 repeat" in text
    assert decide_paragraph([], final, folds=5) is None
    assert "The best changed" not in text
    nothing = decide_paragraph([first.assign(gets_repeat=False)], final, folds=5)
    assert "none was added" in nothing
    swapped = final.assign(verdict=["undecided", "best", "undecided", "worse"])
    moved = decide_paragraph([first, second], swapped, folds=5)
    assert ("The best changed (model_a: batch size 16, learning rate 0.0004, augmentation none after the added "
            "repeats, batch size 16, learning rate 0.001, augmentation none on the first)") in moved
    # Which point the final model is: the best after the repeats under final.choose best (rules/final.smk
    # reads cv_summary.tsv), the Decision's point under any other rule (it reads decision.tsv).
    assert "refitted on the best after the added repeats (cv_summary.tsv's rank 1), not the Decision's point" in moved
    other = decide_paragraph([first, second], swapped, folds=5, choose="cheapest_contender")
    assert "refitted on the Decision's point" in other and "rank 1" not in other


def test_a_small_real_run_with_decide_goes_end_to_end(tmp_path):
    """Real training (tiny images, 2 epochs), the rounds, the statistics and the summary: the job
    list holds repeat 0 of every point plus what each round gave, and a second run has nothing to do."""
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20, size=(40, 40))
    config = tiny_config(data, cv={"folds": 3, "validation_fraction": 0.2, "decide": {"max_repeats": 2}},
                         training={"patience": 1})
    configfile = write_config(tmp_path / "config.yaml", config)
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, configfile, "--cores", "2", "results/stats/summary.html", timeout=1500)
    rounds = pd.read_csv(work / "results" / "decide" / "repeat~1.tsv", sep="\t")
    assert len(rounds) == 2 and (rounds["k"] == 3).all()
    listed = (work / "results" / "train_jobs.txt").read_text().splitlines()
    assert len(listed) == 2 * 3 + int(rounds["gets_repeat"].sum()) * 3
    summary = (work / "results" / "stats" / "summary.html").read_text()
    assert "Repeats only where they decide" in summary
    folds = pd.read_csv(work / "results" / "cv_folds.tsv", sep="\t")
    assert len(folds) == len(listed)
    again = run_snakemake(work, configfile, "-n", "results/stats/summary.html")
    assert "Nothing to be done" in again.stdout + again.stderr
