"""cv.race through the real `snakemake` CLI on a tiny grid with a known hopeless point: what each
round plans, that the hopeless point is stopped after the first folds while the best is kept and
refitted, what the outputs and the written summary say, that a raced run over folds trained
already trains nothing, and the configs a race refuses."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO, tiny_config, write_config, write_image_folder
from test_workflow import job_counts

pytestmark = pytest.mark.slow

GRID_KEYS = ["model", "batch_size", "learning_rate", "augmentation"]
FOLDS, AFTER = 4, 2
# Two good learning rates and one so large (100) that the network predicts one class of three:
# chance level on every fold, with the same seeds every time.
HOPELESS = "model~model_a/batch_size~16/learning_rate~100.0/augmentation~none"
GOOD = ["model~model_a/batch_size~16/learning_rate~0.001/augmentation~none",
        "model~model_a/batch_size~16/learning_rate~0.0004/augmentation~none"]


def race_config(data, **changes) -> dict:
    config = tiny_config(data, cv={"folds": FOLDS, "validation_fraction": 0.2, "race": {"after_folds": AFTER}},
                         training={"patience": 1})
    config["grid"]["learning_rate"] = [0.001, 0.0004, 100.0]
    for section, values in changes.items():
        config[section].update(values)
    return config


def planned_folds(output: str) -> set[str]:
    """The training jobs a dry run plans, as point/fold~F."""
    return {re.sub(r"/repeat~0/", "/", m) for m in re.findall(r"output: results/train/(\S+)/metrics\.json", output)}


def expected(points, folds) -> set[str]:
    return {f"{p}/fold~{f}" for p in points for f in folds}


def trained(work, results="results") -> set[str]:
    root = work / results / "train"
    return {re.sub(r"/repeat~0/", "/", str(p.parent.relative_to(root))) for p in root.rglob("metrics.json")}


@pytest.fixture(scope="module")
def raced_run(tmp_path_factory):
    """The race run round by round (a dry run before each), then to the end. Returns what each
    step printed and planned."""
    from types import SimpleNamespace

    from conftest import run_snakemake

    root = tmp_path_factory.mktemp("race")
    data = write_image_folder(root / "data", n_classes=3, per_class=20, size=(40, 40))
    configfile = write_config(root / "race.yaml", race_config(data))
    work = root / "work"
    work.mkdir()
    steps = {}
    for name, targets in [("round 2", ["results/race/fold~2.tsv"]), ("round 3", ["results/race/fold~3.tsv"]),
                          ("rest", [])]:
        plan = run_snakemake(work, configfile, "-n", *targets)
        ran = run_snakemake(work, configfile, "--cores", "2", *targets)
        steps[name] = SimpleNamespace(plan=plan.stdout + plan.stderr, ran=ran.stdout + ran.stderr)
    again = run_snakemake(work, configfile, "-n")
    return SimpleNamespace(root=root, data=data, config=configfile, work=work, steps=steps,
                           again=again.stdout + again.stderr)


def test_each_round_plans_only_the_survivors_next_fold(raced_run):
    # Before the race: every point's first two folds, and no other training job.
    first = raced_run.steps["round 2"]
    assert job_counts(first.plan)["train"] == 3 * AFTER
    assert planned_folds(first.plan) == expected([*GOOD, HOPELESS], range(AFTER))
    # After round 2 the hopeless point is stopped: only the good points train fold 2, then fold 3.
    for name, fold in [("round 3", 2), ("rest", 3)]:
        plan = raced_run.steps[name].plan
        assert job_counts(plan)["train"] == 2, (name, plan)
        assert planned_folds(plan) == expected(GOOD, [fold]), name
    assert "Nothing to be done" in raced_run.again, raced_run.again
    assert trained(raced_run.work) == expected(GOOD, range(FOLDS)) | expected([HOPELESS], range(AFTER))


def test_the_hopeless_point_is_stopped_after_the_first_folds_and_the_best_is_kept(raced_run):
    results = raced_run.work / "results"
    rounds = {k: pd.read_csv(results / "race" / f"fold~{k}.tsv", sep="\t").set_index("point") for k in (2, 3)}
    assert rounds[2].loc[HOPELESS, "status"] == "stopped" and rounds[2].loc[HOPELESS, "verdict"] == "worse"
    assert rounds[2].loc[HOPELESS, "stopped_after"] == AFTER
    # A stopped point stays stopped: round 3 keeps its row of round 2 and compares only the others.
    assert rounds[3].loc[HOPELESS, "round"] == 2 and rounds[3].loc[HOPELESS, "status"] == "stopped"
    assert set(rounds[3].index[rounds[3]["round"] == 3]) == set(GOOD)
    for k in (2, 3):
        best = rounds[k][rounds[k]["is_best"]]
        assert len(best) == 1 and best["status"].item() == "racing"
    jobs = (results / "train_jobs.txt").read_text().split()
    assert len(jobs) == 2 * FOLDS + AFTER  # every trained fold, the stopped point's two too


def test_the_outputs_name_the_stopped_point_and_the_statistics_and_refit_leave_it_out(raced_run):
    results = raced_run.work / "results"
    summary = pd.read_csv(results / "cv_summary.tsv", sep="\t")
    folds = pd.read_csv(results / "cv_folds.tsv", sep="\t")
    stopped = summary[summary["learning_rate"] == 100.0].iloc[0]
    assert stopped["race"] == "stopped early: worse after 2 folds" and stopped["folds"] == AFTER
    assert pd.isna(stopped["rank"]) and summary.index[summary["learning_rate"] == 100.0].tolist() == [2]
    assert stopped["mean_accuracy"] == pytest.approx(1 / 3, abs=0.02)  # chance: the partial mean
    assert set(summary.loc[summary["race"] == "completed", "folds"]) == {FOLDS}
    assert len(folds) == 2 * FOLDS + AFTER
    assert folds.loc[folds["learning_rate"] == 100.0, "accuracy"].to_numpy() == pytest.approx([1 / 3] * AFTER, abs=0.02)
    stats = results / "stats"
    for table in ("compare_to_best", "contenders", "factor_effects", "selected", "decision"):
        frame = pd.read_csv(stats / f"{table}.tsv", sep="\t")
        if "learning_rate" in frame:
            assert 100.0 not in set(frame["learning_rate"]), table
    verdicts = pd.read_csv(stats / "compare_to_best.tsv", sep="\t")
    assert len(verdicts) == 2 and verdicts["k"].eq(FOLDS).all()  # over every fold
    best = summary[summary["rank"] == 1].iloc[0]
    refit = json.loads((results / "final" / "model_a" / "model.json").read_text())
    assert refit["grid_point"]["learning_rate"] == best["learning_rate"] != 100.0
    expectation = json.loads((stats / "expectation" / "model_a.json").read_text())
    assert expectation["point"]["learning_rate"] == best["learning_rate"] and expectation["candidates"] == 2
    text = re.sub(r"<[^>]+>", "", (stats / "summary.html").read_text())
    assert ("learning rate 100, augmentation none, stopped early: worse after 2 folds (mean accuracy 33.3% over"
            " its 2 folds)") in text
    assert "10 training jobs run of the full grid&#x27;s 12 (3 points × 4 folds), so racing saved 2" in text
    assert "not comparable with the 4-fold means" in text


def test_the_race_replayed_from_its_jobs_is_the_workflows_race(raced_run, tmp_path):
    """cvgrid.race.replay_race over the jobs the race ran gives the round tables its checkpoints
    wrote, and publish_study.py publish-race publishes the raced run's own tables."""
    from publish_study import overlaid_config, race_rounds
    from cvgrid.race import point_folder, replay_race
    from cvgrid.stats import Thresholds
    from cvgrid.summary import fold_table, read_metrics

    # The raced config as a config and its race overlay, as config/search.yaml and search-race.yaml.
    config = yaml.safe_load(raced_run.config.read_text())
    config_file = write_config(tmp_path / "config.yaml", {k: v for k, v in config.items() if k != "cv"}
                               | {"cv": {k: v for k, v in config["cv"].items() if k != "race"}})
    overlay = write_config(tmp_path / "race.yaml", {"cv": {"race": config["cv"]["race"]}})
    config = overlaid_config(config_file, overlay)
    results = raced_run.work / "results"
    metrics = sorted((results / "train").rglob("metrics.json"))
    folders = pd.DataFrame([{**{k: read_metrics(path)["config"][k] for k in GRID_KEYS}, "point": point_folder(path)}
                            for path in metrics]).drop_duplicates(ignore_index=True)
    replayed = replay_race(fold_table(metrics, GRID_KEYS), folders, Thresholds.from_config(config["statistics"]),
                           AFTER, FOLDS)
    written = race_rounds(results / "race")
    assert len(replayed) == len(written) == FOLDS - AFTER
    for again, before in zip(replayed, written):
        again = pd.read_csv(io.StringIO(again.to_csv(sep="\t", index=False)), sep="\t", dtype={"stopped_after": "Int64"})
        pd.testing.assert_frame_equal(again, before)

    published = tmp_path / "published"
    publish_study = subprocess.run([sys.executable, str(REPO / "scripts" / "publish_study.py"), "publish-race",
                                    "--workdir", str(raced_run.work), "--published", str(published),
                                    "--config", str(config_file), "--race", str(overlay)],
                                   capture_output=True, text=True, cwd=tmp_path)
    assert publish_study.returncode == 0, publish_study.stderr
    assert "race: 10 of 12 jobs, 1 points stopped" in publish_study.stdout
    out = published / "raced"
    for name in ("cv_folds.tsv", "cv_summary.tsv", "stats/compare_to_best.tsv", "stats/contenders.tsv",
                 "stats/decision.tsv", "stats/selected.tsv"):
        mine, theirs = (pd.read_csv(folder / name, sep="\t") for folder in (out, results))
        drop = [c for c in ("minutes",) if c in mine]
        pd.testing.assert_frame_equal(mine.drop(columns=drop), theirs.drop(columns=drop), check_exact=False, rtol=1e-12)
    assert "stopped early: worse after 2 folds" in (out / "stats" / "summary.md").read_text()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["jobs_run"] == 10 and provenance["jobs_full"] == 12 and provenance["points_stopped"] == 1
    assert len(list((published / "jobs" / "stratified" / "train").rglob("metrics.json"))) == 10


def same_race(work, raced_work) -> None:
    """`work`'s race tables and cv_summary.tsv are those of the raced run in `raced_work`."""
    for k in range(AFTER, FOLDS):
        again = pd.read_csv(work / "results" / "race" / f"fold~{k}.tsv", sep="\t")
        before = pd.read_csv(raced_work / "results" / "race" / f"fold~{k}.tsv", sep="\t")
        pd.testing.assert_frame_equal(again, before)
    summary = pd.read_csv(work / "results" / "cv_summary.tsv", sep="\t")
    before = pd.read_csv(raced_work / "results" / "cv_summary.tsv", sep="\t")
    pd.testing.assert_frame_equal(summary.drop(columns="minutes"), before.drop(columns="minutes"))


def test_a_raced_run_over_folds_trained_already_trains_nothing(raced_run, tmp_path):
    from conftest import run_snakemake

    # The raced folder, then the whole grid without a race: only the stopped point's last folds
    # are new jobs (the race changed no job's params or paths, so every raced fold is reused).
    work = tmp_path / "work"
    subprocess.run(["cp", "-a", str(raced_run.work), str(work)], check=True)
    full = race_config(raced_run.data)
    del full["cv"]["race"]
    full_config = write_config(tmp_path / "full.yaml", full)
    ran = run_snakemake(work, full_config, "--cores", "2")
    assert job_counts(ran.stdout + ran.stderr)["train"] == 2
    assert trained(work) == expected([*GOOD, HOPELESS], range(FOLDS))

    # The full run's jobs restored into a new folder (as publish_study.py restore does: the data
    # steps, then the jobs' files): the raced run trains nothing and races as before.
    restored = tmp_path / "restored"
    restored.mkdir()
    run_snakemake(restored, raced_run.config, "--cores", "1", "results/data/folds.tsv")
    for path in (work / "results" / "train").rglob("*"):
        if path.name in ("metrics.json", "history.tsv", "predictions.tsv"):
            target = restored / path.relative_to(work)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    raced = run_snakemake(restored, raced_run.config, "--cores", "2")
    counts = job_counts(raced.stdout + raced.stderr)
    assert "train" not in counts and counts["race"] == FOLDS - AFTER, counts
    same_race(restored, raced_run.work)

    # The full run's own folder raced (its race tables gone, as in a folder that never raced):
    # the gather list written without a race is named, and -R list_train_jobs races over its
    # folds without training.
    shutil.rmtree(work / "results" / "race")
    warned = run_snakemake(work, raced_run.config, "-n")
    assert "was written by a run without a race" in warned.stdout + warned.stderr
    rerun = run_snakemake(work, raced_run.config, "--cores", "2", "-R", "list_train_jobs")
    counts = job_counts(rerun.stdout + rerun.stderr)
    assert "train" not in counts and counts["race"] == FOLDS - AFTER, counts
    same_race(work, raced_run.work)


def test_each_protocol_races_on_its_own_and_the_comparison_sets_no_partial_mean_beside_a_full_one(tmp_path):
    """cv.race with cv.compare_groups (a groups TSV): results/ and results/compare/ race separately
    (3 folds: one round), each stops the hopeless point and ranks only its completed points; the
    protocol comparison leaves the stopped point out of its difference and says so; `make status`
    follows both races; a dry run after the run plans nothing."""
    from conftest import run_snakemake

    folds = 3
    data = write_image_folder(tmp_path / "data", n_classes=3, per_class=20, size=(40, 40))
    groups = tmp_path / "groups.tsv"  # ten "people", each with two photos of every class
    groups.write_text("file\tgroup\n" + "".join(f"class_{k}/img_{j:03d}.jpg\tp{j // 2}\n"
                                                for k in range(3) for j in range(20)))
    configfile = write_config(tmp_path / "race.yaml",
                              race_config(data, cv={"folds": folds, "compare_groups": str(groups)}))
    work = tmp_path / "work"
    work.mkdir()

    def status():
        run = subprocess.run([sys.executable, str(REPO / "scripts" / "interim_summary.py"), "--workdir", str(work),
                              "--configfile", str(configfile)], capture_output=True, text=True, cwd=work)
        assert run.returncode == 0, run.stderr
        return run.stdout

    # The first protocol's round only: make status follows each protocol's own race.
    run_snakemake(work, configfile, "--cores", "2", "results/race/fold~2.tsv")
    printed = status()
    assert ("results: 6 of 8 training jobs finished, 0 of 3 grid points complete, 1 stopped early by the race;"
            " running") in printed, printed
    assert "results/compare: 0 of 9 training jobs finished, 0 of 3 grid points complete; a later race round" in printed

    run_snakemake(work, configfile, "--cores", "2")
    again = run_snakemake(work, configfile, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    summaries = {}
    for results in ("results", "results/compare"):
        rounds = pd.read_csv(work / results / "race" / "fold~2.tsv", sep="\t").set_index("point")
        assert rounds.loc[HOPELESS, "status"] == "stopped" and rounds.loc[HOPELESS, "stopped_after"] == AFTER, results
        assert set(rounds.index[rounds["status"] == "racing"]) == set(GOOD), results
        assert trained(work, results) == expected(GOOD, range(folds)) | expected([HOPELESS], range(AFTER)), results
        summary = pd.read_csv(work / results / "cv_summary.tsv", sep="\t").set_index("learning_rate")
        assert summary.loc[100.0, "race"] == "stopped early: worse after 2 folds"
        assert pd.isna(summary.loc[100.0, "rank"])
        assert summary.loc[[0.001, 0.0004], "folds"].eq(folds).all() and sorted(summary["rank"].dropna()) == [1, 2]
        summaries[results] = summary
    printed = status()
    for results in ("results", "results/compare"):
        assert (f"{results}: 8 of 8 training jobs finished, 2 of 3 grid points complete, 1 stopped early by the race;"
                " training complete") in printed, printed
    compare_page = (work / "results" / "interim" / "compare" / "summary.interim.md").read_text()
    assert "results/compare/cv_summary.tsv and results/stats/protocol_comparison.tsv" in compare_page
    # The second protocol's folds are its own: no person in the test part and the training part of a fold.
    folds_table = pd.read_csv(work / "results" / "compare" / "data" / "folds.tsv", sep="\t")
    index = pd.read_csv(work / "results" / "data" / "index.tsv", sep="\t")
    people = folds_table.merge(index[["sample", "file"]], on="sample").merge(
        pd.read_csv(groups, sep="\t"), on="file")
    assert people.groupby(["fold", "group"])["role"].nunique().eq(1).all()
    assert not folds_table.equals(pd.read_csv(work / "results" / "data" / "folds.tsv", sep="\t"))

    # The comparison: the stopped point is kept and marked, with no difference and no rank.
    table = pd.read_csv(work / "results" / "stats" / "protocol_comparison.tsv", sep="\t").set_index("learning_rate")
    assert table.index.tolist()[-1] == 100.0
    assert pd.isna(table.loc[100.0, ["difference", "rank_primary", "rank_compared"]]).all()
    assert table.loc[100.0, "race_primary"] == table.loc[100.0, "race_compared"] == "stopped early: worse after 2 folds"
    for lr in (0.001, 0.0004):
        assert table.loc[lr, "difference"] == pytest.approx(
            summaries["results/compare"].loc[lr, "mean_accuracy"] - summaries["results"].loc[lr, "mean_accuracy"])
    facts = json.loads((work / "results" / "stats" / "protocol_comparison.json").read_text())
    assert facts["points_compared"] == 2 and [p["learning_rate"] for p in facts["left_out"]] == [100.0]
    assert facts["mean_difference"] == pytest.approx(table.loc[[0.001, 0.0004], "difference"].mean())
    assert "left out of the comparison: model model_a, batch_size 16, learning_rate 100.0" in (
        work / "logs" / "compare_protocols.log").read_text()
    # What the user reads in the report says so beside the table.
    run_snakemake(work, configfile, "--report", "report.html")
    report = (work / "report.html").read_text()
    assert "are over the points that completed every fold under both" in report
    assert "its mean and spread are over its first k folds only" in report  # cv_summary.tsv's caption


@pytest.mark.parametrize(("race", "cv", "training", "named"), [
    ({"after_folds": 1}, {}, {}, "cv.race.after_folds is 1; it must be at least 2"),
    ({"after_folds": 4}, {}, {}, "less than cv.folds (4)"),
    ({"after_folds": 2}, {"repeats": 2}, {}, "cv.race is set with cv.repeats 2"),
    ({"after_folds": 2}, {}, {"folds_per_job": "all"}, "training.folds_per_job 'all'"),
    ({"after_folds": "3"}, {}, {}, "after_folds"),
    ({"after": 2}, {}, {}, "after_folds"),
], ids=["one-fold", "every-fold", "repeats", "folds-per-job", "text", "misspelt"])
def test_a_race_the_config_cannot_run_fails_before_any_job_naming_the_key(tmp_path, snakemake, image_folder,
                                                                          race, cv, training, named):
    config = race_config(image_folder(n_classes=3, per_class=20), cv={**cv, "race": race}, training=training)
    configfile = write_config(tmp_path / "bad.yaml", config)
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, configfile, "--dry-run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and named in output, output
    assert "Job stats" not in output and not (work / "results").exists()


def test_the_raced_search_plans_the_first_three_folds_of_the_searchs_points(tmp_path, snakemake):
    """config/search-race.yaml over config/search.yaml: the published points' folds 0-2 (the full
    search's own jobs), nothing else before the first round."""
    from conftest import REPO

    stored = [line for line in (REPO / "tests" / "search_points.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    result = snakemake(tmp_path, REPO / "config" / "search.yaml", str(REPO / "config" / "search-race.yaml"), "-n")
    output = result.stdout + result.stderr
    assert job_counts(output)["train"] == 32 * 3
    assert planned_folds(output) == expected(stored, range(3))
