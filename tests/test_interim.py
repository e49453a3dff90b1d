"""`make status` (scripts/interim_summary.py): an interim summary of a half-finished run, marked
interim everywhere, verdicts only on complete grid points, and not one of the run's files
touched; no torch (it runs on a SLURM login node beside the controller)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, write_config

SCRIPT = str(REPO / "scripts" / "interim_summary.py")
N_TEST = 100
# The grid's four points (learning rates) and the fold accuracies finished so far, of 3 folds.
FINISHED = {0.001: [0.95, 0.96, 0.94], 0.0004: [0.70, 0.72, 0.69], 0.0001: [0.80], 0.004: []}
CONFIG = {
    "cv": {"folds": 3, "repeats": 1, "seed": 42},
    "models": {"model_a": {}},
    "augmentations": {"none": {}},
    "grid": {"model": ["model_a"], "batch_size": [16], "learning_rate": list(FINISHED), "augmentation": ["none"]},
}


def write_job(folder, learning_rate, fold, accuracy):
    """A finished job's files, as cvgrid.job writes them: predictions.tsv, then metrics.json."""
    folder.mkdir(parents=True)
    true = np.repeat([0, 1], N_TEST // 2)
    predicted = true.copy()
    predicted[: N_TEST - round(accuracy * N_TEST)] = 1
    pd.DataFrame({"sample": range(N_TEST), "file": [f"c{t}/{i}.jpg" for i, t in enumerate(true)], "true": true,
                  "predicted": predicted, "probability": 0.9}).to_csv(folder / "predictions.tsv", sep="\t", index=False)
    (folder / "history.tsv").write_text("epoch\n1\n")
    (folder / "metrics.json").write_text(json.dumps({
        "accuracy": accuracy, "loss": 0.2, "epochs_run": 5, "best_epoch": 4, "n_train": 200, "n_validation": 20,
        "n_test": N_TEST, "seconds": 10.0,
        "config": {"model": "model_a", "batch_size": 16, "learning_rate": learning_rate, "augmentation": "none",
                   "repeat": 0, "fold": fold}}))


@pytest.fixture
def running(tmp_path):
    """A run's working directory in the middle of the grid: two points complete, one with 1 of
    3 folds (a second fold being trained), one not started; Snakemake's lock held."""
    work = tmp_path / "work"
    for learning_rate, accuracies in FINISHED.items():
        point = work / f"results/train/model~model_a/batch_size~16/learning_rate~{learning_rate}/augmentation~none"
        for fold, accuracy in enumerate(accuracies):
            write_job(point / f"repeat~0/fold~{fold}", learning_rate, fold, accuracy)
    training = work / "results/train/model~model_a/batch_size~16/learning_rate~0.0001/augmentation~none/repeat~0/fold~1"
    training.mkdir(parents=True)
    (training / "predictions.tsv").write_text("sample\tfile\n")  # being written: no metrics.json yet
    (work / "results/data").mkdir(parents=True)
    (work / "results/data/folds.tsv").write_text("repeat\tfold\tsample\trole\n")
    (work / ".snakemake/locks").mkdir(parents=True)
    (work / ".snakemake/locks/0.input.lock").write_text(str(work / "results/data/folds.tsv"))
    return work, write_config(tmp_path / "config.yaml", CONFIG)


def snapshot(folder, leave_out):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file() and leave_out not in p.parents}


def test_an_interim_summary_of_a_half_finished_run(running):
    work, config = running
    before = snapshot(work, work / "results" / "interim")
    run = subprocess.run([sys.executable, "-X", "importtime", SCRIPT, "--workdir", str(work), "--configfile",
                          str(config)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "7 of 12 training jobs finished, 2 of 4 grid points complete" in run.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "cvgrid.stats" in imported
    assert not [m for m in imported if m.split(".")[0] in ("torch", "torchvision")], "the status step imported torch"
    # Nothing of the run's was touched: its files, the lock, the job still being written.
    assert snapshot(work, work / "results" / "interim") == before

    out = work / "results" / "interim"
    assert all(".interim." in p.name for p in out.rglob("*") if p.is_file())
    progress = pd.read_csv(out / "progress.interim.tsv", sep="\t")
    assert dict(zip(progress["learning_rate"], progress["state"])) == {
        0.001: "complete", 0.0004: "complete", 0.0001: "1 of 3 folds", 0.004: "not started"}
    # Verdicts on the complete points only, the worse one called worse.
    verdicts = pd.read_csv(out / "compare_to_best.interim.tsv", sep="\t")
    assert sorted(verdicts["learning_rate"]) == [0.0004, 0.001]
    assert verdicts.set_index("learning_rate").loc[0.0004, "verdict"] == "worse"
    assert len(pd.read_csv(out / "cv_folds.interim.tsv", sep="\t")) == 7
    page = (out / "summary.interim.html").read_text()
    assert "INTERIM" in page.split("<body>")[0] and "INTERIM: the run is still going" in page
    assert "learning_rate 0.0001: 1 of 3 folds" in page and "learning_rate 0.004: not started" in page
    assert "7 of 12 training jobs" in page


def test_no_complete_point_no_verdict(tmp_path):
    work = tmp_path / "work"
    write_job(work / "results/train/model~model_a/batch_size~16/learning_rate~0.001/augmentation~none/repeat~0/fold~0",
              0.001, 0, 0.9)
    config = write_config(tmp_path / "config.yaml", CONFIG)
    subprocess.run([sys.executable, SCRIPT, "--workdir", str(work), "--configfile", str(config)], check=True,
                   capture_output=True)
    out = work / "results" / "interim"
    assert "No grid point has all its folds yet: no verdict." in (out / "summary.interim.md").read_text()
    assert not (out / "compare_to_best.interim.tsv").exists()


@pytest.mark.parametrize("out", ["results/stats", "results/train/x", "results"])
def test_the_interim_folder_is_never_one_the_run_writes(running, out):
    work, config = running
    run = subprocess.run([sys.executable, SCRIPT, "--workdir", str(work), "--configfile", str(config),
                          "--out", str(work / out)], capture_output=True, text=True)
    assert run.returncode != 0 and "a folder the run writes" in run.stderr


def test_the_config_is_the_runs_a_bad_key_is_named(running):
    work, config = running
    run = subprocess.run([sys.executable, SCRIPT, "--workdir", str(work), "--configfile", str(config),
                          "--config", "cv={folds: 1}"], capture_output=True, text=True)
    assert run.returncode != 0 and "folds" in run.stderr and "Traceback" not in run.stderr


def test_make_status_writes_it_in_the_runs_folder(running):
    work, config = running
    subprocess.run(["make", "-C", str(REPO), "status", f"CONFIG={config}", f"WORKDIR={work}"], check=True,
                   capture_output=True)
    assert "INTERIM" in (work / "results" / "interim" / "summary.interim.html").read_text()


# ---------------------------------------------------------------------------
# Runs whose rounds change the jobs: cv.race stops points, cv.decide adds repeats
# ---------------------------------------------------------------------------

RACE_FOLDS, RACE_AFTER = 4, 2
# Fold accuracies of a raced grid: two close points and one far below them, worse after 2 folds.
RACED = {0.001: [0.95, 0.96, 0.94, 0.95], 0.0004: [0.96, 0.94, 0.95, 0.96], 100.0: [0.55, 0.52]}
RACE_CONFIG = {**CONFIG, "cv": {"folds": RACE_FOLDS, "repeats": 1, "seed": 42, "race": {"after_folds": RACE_AFTER}},
               "grid": {**CONFIG["grid"], "learning_rate": list(RACED)}}


def raced_point(learning_rate) -> str:
    return f"results/train/model~model_a/batch_size~16/learning_rate~{learning_rate}/augmentation~none"


def race_round(work, config, fold) -> None:
    """results/race/fold~{fold}.tsv as the workflow's checkpoint writes it (scripts/race_round.py
    on the survivors' folds 0..fold-1), at the run's thresholds."""
    from cvgrid.interim import run_config
    from cvgrid.race import survivors

    statistics = run_config(work, [config])["statistics"]
    previous = work / "results" / "race" / f"fold~{fold - 1}.tsv"
    racing = survivors(previous) if previous.exists() else [raced_point(lr).removeprefix("results/train/") for lr in RACED]
    jobs = work / "results" / "race" / f"fold~{fold}_jobs.txt"
    jobs.parent.mkdir(parents=True, exist_ok=True)
    jobs.write_text("".join(f"results/train/{point}/repeat~0/fold~{f}/metrics.json\n" for point in racing
                            for f in range(fold)))
    subprocess.run([sys.executable, str(REPO / "scripts" / "race_round.py"), "--metrics-list", str(jobs),
                    "--axes", "model,batch_size,learning_rate,augmentation",
                    *(["--previous", str(previous)] if previous.exists() else []),
                    "--rope", str(statistics["rope"]), "--probability", str(statistics["probability"]),
                    "--alpha", str(statistics["alpha"]), "--metric", statistics["metric"],
                    "--out", str(work / "results" / "race" / f"fold~{fold}.tsv")], check=True, cwd=work,
                   capture_output=True)


def interim(work, config) -> tuple[str, pd.DataFrame, str]:
    """scripts/interim_summary.py on the run: (what it printed, progress.interim.tsv by learning rate, the page's text)."""
    run = subprocess.run([sys.executable, SCRIPT, "--workdir", str(work), "--configfile", str(config)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    out = work / "results" / "interim"
    progress = pd.read_csv(out / "progress.interim.tsv", sep="\t").set_index("learning_rate")
    return run.stdout, progress, (out / "summary.interim.md").read_text()


def test_a_raced_run_counts_no_job_of_a_stopped_point_and_ends_complete(tmp_path):
    work = tmp_path / "work"
    config = write_config(tmp_path / "race.yaml", RACE_CONFIG)
    for lr, accuracies in RACED.items():
        for fold in range(RACE_AFTER):
            write_job(work / raced_point(lr) / f"repeat~0/fold~{fold}", lr, fold, accuracies[fold])
    # Before the first round every job of the grid is planned, and a round may still stop points.
    printed, progress, text = interim(work, config)
    assert "6 of 12 training jobs finished, 0 of 3 grid points complete; a later race round may stop points" in printed
    assert "no round yet" in text and "fewer jobs than counted here may run" in text

    # Round 2 stops the point at chance: its folds 2 and 3 are no job of the run's, and it is not pending.
    race_round(work, config, 2)
    assert pd.read_csv(work / "results/race/fold~2.tsv", sep="\t").set_index("learning_rate").loc[100.0, "status"] == "stopped"
    write_job(work / raced_point(0.001) / "repeat~0/fold~2", 0.001, 2, RACED[0.001][2])
    printed, progress, text = interim(work, config)
    assert ("7 of 10 training jobs finished, 0 of 3 grid points complete, 1 stopped early by the race;"
            " a later race round may stop points") in printed
    assert dict(progress["state"]) == {0.001: "3 of 4 folds", 0.0004: "2 of 4 folds",
                                       100.0: "stopped early: worse after 2 folds"}
    assert progress.loc[100.0, "folds"] == RACE_AFTER
    assert "learning_rate 100.0: stopped early: worse after 2 folds" in text.split("**Stopped by the race**")[1]
    assert "100.0" not in text.split("**Not complete**")[1]
    assert "The round after 3 folds is still to come" in text

    # The last round keeps both: every planned job finished, the run's training is complete.
    write_job(work / raced_point(0.0004) / "repeat~0/fold~2", 0.0004, 2, RACED[0.0004][2])
    race_round(work, config, 3)
    for lr in (0.001, 0.0004):
        write_job(work / raced_point(lr) / "repeat~0/fold~3", lr, 3, RACED[lr][3])
    printed, progress, text = interim(work, config)
    assert "10 of 10 training jobs finished, 2 of 3 grid points complete, 1 stopped early by the race;" \
           " training complete" in printed
    assert "The race is over" in text and "Not complete" not in text and "the run's training is finished" in text
    verdicts = pd.read_csv(work / "results/interim/compare_to_best.interim.tsv", sep="\t")
    assert sorted(verdicts["learning_rate"]) == [0.0004, 0.001]  # not the stopped point's partial mean
    assert len(pd.read_csv(work / "results/interim/cv_folds.interim.tsv", sep="\t")) == 10


DECIDE_CONFIG = {**CONFIG, "cv": {"folds": 5, "repeats": 1, "seed": 42, "decide": {"max_repeats": 3}}}


def test_a_decide_run_counts_the_added_repeats_once_their_round_is_written(tmp_path):
    from test_decide import BEST, FIRST_REPEAT, GRID, point, stub_job

    from cvgrid.decision import write_round
    from cvgrid.interim import run_config

    work = tmp_path / "work"
    config = write_config(tmp_path / "decide.yaml", {**DECIDE_CONFIG, "grid": GRID})
    statistics = run_config(work, [config])["statistics"]
    for lr, counts in FIRST_REPEAT.items():
        for fold, correct in enumerate(counts):
            stub_job(work, lr, 0, fold, correct)
    printed, _, text = interim(work, config)
    assert "20 of 20 training jobs finished, 4 of 4 grid points complete; a later cv.decide round may add" in printed
    assert "The round for repeat 1 comes" in text and "more jobs than counted here may run" in text

    def decide_round(repeat, points):
        """results/decide/repeat~{repeat}.tsv as the checkpoint writes it (cvgrid.decision.write_round)."""
        jobs = {str(work / "results/train" / point(lr) / f"repeat~{r}/fold~{f}/metrics.json"): point(lr)
                for lr in points for r in range(repeat) for f in range(5)}
        (work / "results/decide").mkdir(parents=True, exist_ok=True)
        write_round(jobs, ["model", "batch_size", "learning_rate", "augmentation"], statistics, repeat, 3,
                    work / f"results/decide/repeat~{repeat}.tsv", tmp_path / f"decide_{repeat}.log")

    # Round 1 gives repeat 1 to the best and the decidable point: 10 more jobs, 7 of them finished.
    decide_round(1, FIRST_REPEAT)
    for fold in range(5):
        stub_job(work, BEST, 1, fold, 11)
    for fold in range(2):
        stub_job(work, 0.0004, 1, fold, 7)
    printed, progress, text = interim(work, config)
    assert "27 of 30 training jobs finished, 3 of 4 grid points complete; a later cv.decide round may add" in printed
    assert dict(progress["state"]) == {0.001: "complete", 0.0004: "7 of 10 folds", 0.0002: "complete",
                                       0.0001: "complete"}
    assert dict(progress["folds"]) == {0.001: 10, 0.0004: 10, 0.0002: 5, 0.0001: 5}
    assert "repeat 1 to 2 grid point(s)" in text and "The round for repeat 2 comes" in text
    assert "**Complete grid points** (3 of 4, all their folds: 5, and 5 more for each repeat cv.decide added)" in text
    assert "learning_rate 0.0004: 7 of 10 folds" in text.split("**Not complete**")[1]
    verdicts = pd.read_csv(work / "results/interim/compare_to_best.interim.tsv", sep="\t")
    assert sorted(verdicts["learning_rate"]) == [0.0001, 0.0002, 0.001]

    # Repeat 1 finished; round 2 repeats nobody: no later round, the training is complete at 30 jobs.
    for fold in range(2, 5):
        stub_job(work, 0.0004, 1, fold, 7)
    decide_round(2, [BEST, 0.0004])
    printed, progress, text = interim(work, config)
    assert "30 of 30 training jobs finished, 4 of 4 grid points complete; training complete" in printed
    assert "repeat 2 to none" in text and "No later round adds a repeat" in text
    assert not (progress["state"] != "complete").any()


def test_a_plain_run_is_complete_when_its_grid_is(tmp_path):
    work = tmp_path / "work"
    for lr in FINISHED:
        point = work / f"results/train/model~model_a/batch_size~16/learning_rate~{lr}/augmentation~none"
        for fold in range(3):
            write_job(point / f"repeat~0/fold~{fold}", lr, fold, 0.9)
    config = write_config(tmp_path / "config.yaml", CONFIG)
    printed, _, text = interim(work, config)
    assert "12 of 12 training jobs finished, 4 of 4 grid points complete; training complete" in printed
    assert "the run's training is finished" in text and "Race" not in text and "cv.decide" not in text


@pytest.mark.slow
def test_make_status_of_a_real_raced_run_follows_the_race_to_its_end(tmp_path):
    """The tiny raced grid of tests/test_race_workflow.py through the real `snakemake`: after
    the first round the hopeless point is stopped, not pending; at the end the status is complete."""
    from conftest import run_snakemake, write_image_folder
    from test_race_workflow import race_config

    data = write_image_folder(tmp_path / "data", n_classes=3, per_class=20, size=(40, 40))
    configfile = write_config(tmp_path / "race.yaml", race_config(data))
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, configfile, "--cores", "2", "results/race/fold~2.tsv")
    printed, progress, _ = interim(work, configfile)
    assert ("6 of 10 training jobs finished, 0 of 3 grid points complete, 1 stopped early by the race;"
            " a later race round may stop points") in printed, printed
    assert progress.loc[100.0, "state"] == "stopped early: worse after 2 folds"

    run_snakemake(work, configfile, "--cores", "2")
    printed, progress, text = interim(work, configfile)
    assert ("10 of 10 training jobs finished, 2 of 3 grid points complete, 1 stopped early by the race;"
            " training complete") in printed, printed
    summary = pd.read_csv(work / "results" / "cv_summary.tsv", sep="\t").set_index("learning_rate")
    assert progress.loc[100.0, "state"] == summary.loc[100.0, "race"]  # the run's own words
    assert "The race is over" in text
