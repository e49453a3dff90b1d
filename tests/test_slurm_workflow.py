"""The workflow on a real SLURM cluster (`snakemake --profile profiles/slurm`).

Needs the single-node cluster of tests/slurm/start.sh (partitions ``cpu`` and ``gpu``, one fake
GPU as ``Gres=gpu:fake:1``, no accounting database); without it these tests skip, with CI=true they
fail (fixture ``slurm_cluster``). Snakemake runs as a user runs it: the cluster's site profile
(tests/slurm/profile) with the workflow profile (profiles/slurm).

- A tiny grid (2 grid points x 2 folds, the shape of config/quick.yaml) runs three times:
  locally (``--cores 2``), on SLURM with one job per fold, and on SLURM with job groups (two
  folds per SLURM job). Every training job records its SLURM job id; the SLURM runs give the
  local run's results file for file and, on the same CPU in fp32 with the same seeds, number
  for number.
- The CPU steps land in the CPU partition and the GPU jobs in the GPU partition, by the site
  profile's partition file alone.
- A training job cancelled with ``scancel`` while it runs is retried by the workflow, resumes
  from its checkpoint, and the run ends with every result whole.
- With ``training.folds_per_job: all`` the tiny grid submits one training job per grid point
  (rule train, one job per grid point) whose folds equal the one-job-per-fold run's bit for bit; the start-up
  seconds of both runs' training jobs (SLURM start to the first fit) are measured and printed.
  Such a job cancelled while it trains its second fold is retried: the first fold is scored from
  its checkpoint without training, the second resumes from the epoch SIGTERM wrote.

All four workflows run at once in one module fixture: the SLURM runs spend most of their time
waiting for the scheduler and for the status checks, and the cluster's one GPU runs one
training job at a time anyway, so together they take little longer than the longest.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, SNAKEFILE, snakemake_exe, tiny_config, write_config, write_image_folder
from slurm_cluster import (  # noqa: F401 (slurm_cluster is a fixture)
    CPU_PARTITION,
    GPU_PARTITION,
    SITE_PROFILE,
    cancel_all,
    scancel,
    scontrol_show_job,
    slurm_cluster,
    slurm_log_job_ids,
    squeue_jobs,
    wait_until_finished,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GRID_KEYS = ["model", "batch_size", "learning_rate", "augmentation"]

# As a user runs it: the site profile of the test cluster (no accounts, no accounting database,
# its partition file) with the workflow profile; nothing about accounts or partitions on the
# command line, only what makes the tests quicker.
SLURM_ARGS = (
    "--profile", str(SITE_PROFILE),
    "--workflow-profile", str(REPO / "profiles" / "slurm"),
    # The plugin's first status check after a submission (40 s by default); then +10 s per check
    # that finds nothing finished: 3, 16, 39 s. The jobs here take 8-20 s.
    "--slurm-init-seconds-before-status-checks", "3",
    "--latency-wait", "5",  # one machine: files appear at once
)
# Two folds per SLURM job, one GPU per group (profiles/slurm/config.yaml, README "Job groups").
GROUP_ARGS = (
    "--groups", "train=train_folds", "--group-components", "train_folds=2",
    "--set-resource-scopes", "gpu=local", "--resources", "gpu=1",
)
TRAIN_LOGS = "group_train_folds_train"  # .snakemake/slurm_logs/<this>/<jobid>.log (rule train has group:)
POINT_LOGS = "rule_train"  # training.folds_per_job: all (rule train, without the fold group)
RUN_TIMEOUT_S = 480
CANCEL_EPOCHS = 30


class Run:
    """One `snakemake` process in the background, in its own working directory."""

    def __init__(self, name: str, workdir: Path, configfile: Path, *args: str, targets: tuple[str, ...] = ()):
        self.name, self.workdir = name, workdir
        workdir.mkdir(parents=True)
        env = dict(os.environ)
        # The rules (and the SLURM jobs, which inherit this environment) call `python`.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("MPLBACKEND", "Agg")
        # Targets first: --configfile and --default-resources take every word after them.
        self.command = [snakemake_exe(), *targets, "-s", str(SNAKEFILE), "-d", str(workdir),
                        "--configfile", str(configfile), *args]
        self.output_file = workdir.parent / f"{name}.out"
        self._out = self.output_file.open("w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(self.command, cwd=workdir, env=env, stdout=self._out,
                                        stderr=subprocess.STDOUT, text=True)
        self.returncode: int | None = None
        self.seconds: float | None = None

    @property
    def output(self) -> str:
        return self.output_file.read_text()

    def poll(self) -> int | None:
        """The exit status once snakemake has ended (and how long it ran), else None."""
        if self.returncode is None and self.process.poll() is not None:
            self.returncode = self.process.returncode
            self.seconds = time.monotonic() - self.started
            self._out.close()
        return self.returncode

    def stop(self) -> None:
        """Stop snakemake (it cancels its SLURM jobs on SIGTERM) and cancel what may be left."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.poll()
        cancel_all(list(slurm_log_job_ids(self.workdir)))

    def assert_ok(self) -> None:
        assert self.returncode == 0, (
            f"{self.name}: snakemake exited with {self.returncode}\n$ {' '.join(self.command)}\n{self.output[-8000:]}"
        )


@contextmanager
def runs_to_the_end(timeout: float) -> Iterator[dict[str, Run]]:
    """A dict for the runs a fixture starts (by name). After the block: wait until every run has
    ended or `timeout` seconds have passed; then, as after an error in the block, stop what still
    runs (recorded as failed) and print how each ended, so that no snakemake process or SLURM job
    outlives the fixture."""
    runs: dict[str, Run] = {}
    try:
        yield runs
        deadline = time.monotonic() + timeout
        while [run for run in runs.values() if run.poll() is None] and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for run in runs.values():
            run.stop()
        for run in runs.values():
            print(f"{run.name}: exit {run.returncode} after {run.seconds:.0f} s")

# ------------------------------------------------------------------ reading results


def metrics_by_fold(workdir: Path) -> dict[str, dict]:
    """Every training job's metrics.json, by its folder relative to results/train/."""
    root = workdir / "results" / "train"
    return {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("metrics.json"))}


def result_files(workdir: Path) -> set[str]:
    """Files under results/ that the runs must share: all but the checkpoints (kept for resumes).
    A TensorBoard event file's name carries its time, host and process: it counts by its folder."""
    root = workdir / "results"
    files = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return {str(f.parent / "events.out.tfevents") if f.name.startswith("events.out.tfevents.") else str(f)
            for f in files if f.parts[0] != "checkpoints"}


def train_job_ids(workdir: Path) -> dict[str, str]:
    """Training job folder -> the SLURM job id its metrics.json records."""
    return {fold: m["slurm_job_id"] for fold, m in metrics_by_fold(workdir).items()}


def assert_same_results(local: Path, other: Path, whole_workflow: bool = True) -> None:
    """Same files, same summary, same numbers: the form and the count of a local run.
    `whole_workflow=False`: `other` ran only up to results/cv_summary.tsv."""
    if whole_workflow:
        assert result_files(other) == result_files(local)
    else:
        assert result_files(other) <= result_files(local)
        needed = {f for f in result_files(local) if f.startswith(("train/", "data/"))} | {"cv_summary.tsv"}
        assert needed <= result_files(other)

    summary_local = pd.read_csv(local / "results" / "cv_summary.tsv", sep="\t")
    summary_other = pd.read_csv(other / "results" / "cv_summary.tsv", sep="\t")
    assert list(summary_other.columns) == list(summary_local.columns)
    assert len(summary_other) == len(summary_local) == 2
    key = summary_local[GRID_KEYS].to_dict("records")
    assert sorted(map(str, summary_other[GRID_KEYS].to_dict("records"))) == sorted(map(str, key))
    accuracy_columns = ["mean_accuracy", "acc_std_x2", "folds", "mean_epochs"] + [
        c for c in summary_local.columns if c.startswith("acc_r")
    ]
    merged = summary_local.merge(summary_other, on=GRID_KEYS, suffixes=("_local", "_other"))
    for column in accuracy_columns:
        assert list(merged[f"{column}_other"]) == list(merged[f"{column}_local"]), column

    metrics_local, metrics_other = metrics_by_fold(local), metrics_by_fold(other)
    assert sorted(metrics_other) == sorted(metrics_local) and len(metrics_local) == 4
    for fold, mine in metrics_local.items():
        theirs = metrics_other[fold]
        for key in ("accuracy", "loss", "epochs_run", "best_epoch", "n_test", "n_train", "n_validation", "config"):
            assert theirs[key] == mine[key], (fold, key, theirs[key], mine[key])
        folder_local = local / "results" / "train" / fold
        folder_other = other / "results" / "train" / fold
        predictions_local = pd.read_csv(folder_local / "predictions.tsv", sep="\t")
        predictions_other = pd.read_csv(folder_other / "predictions.tsv", sep="\t")
        assert len(predictions_other) == len(predictions_local) == mine["n_test"]
        # CPU, fp32, one thread, same seeds: bit for bit the same training.
        pd.testing.assert_frame_equal(predictions_other, predictions_local, check_exact=True)
        history_local = pd.read_csv(folder_local / "history.tsv", sep="\t").drop(columns="seconds")
        history_other = pd.read_csv(folder_other / "history.tsv", sep="\t").drop(columns="seconds")
        pd.testing.assert_frame_equal(history_other, history_local, check_exact=True)


def assert_ran_on_slurm(workdir: Path) -> dict[str, str]:
    """Every training job has a SLURM job id, with its SLURM log, asking for one GPU."""
    ids = train_job_ids(workdir)
    assert len(ids) == 4
    for fold, job_id in ids.items():
        assert isinstance(job_id, str) and job_id.isdigit(), (fold, job_id)
    logs = slurm_log_job_ids(workdir, TRAIN_LOGS)
    assert set(ids.values()) <= set(logs), (ids, sorted(logs))
    # squeue still shows them for MinJobAge (600 s): finished, training jobs, one GPU each.
    queued = {job.job_id: job for job in squeue_jobs(sorted(set(ids.values())))}
    assert set(queued) == set(ids.values()), (ids, queued)
    for job in queued.values():
        assert job.state == "COMPLETED", job
        assert job.comment == "rule_train_folds_train", job
        assert job.tres_per_job == "gres:gpu:1", job
    return ids


# ------------------------------------------------------------------ the runs


def running_training_job(run: Run) -> dict | None:
    """The run's training job once it runs and has written its first checkpoint:
    {"job_id", "checkpoint"}; None before."""
    checkpoints = run.workdir / "results" / "checkpoints"
    ids = slurm_log_job_ids(run.workdir, TRAIN_LOGS)  # the log appears when the job starts
    written = [p for p in checkpoints.rglob("*.pt")] if checkpoints.is_dir() else []
    if ids and written:
        running = [job for job in squeue_jobs(sorted(ids), all_states=False) if job.state == "RUNNING"]
        # One GPU: one training job at a time, so the one checkpoint is that job's.
        if len(running) == 1 and len(written) == 1:
            return {"job_id": running[0].job_id, "checkpoint": written[0]}
    return None


def point_job_in_second_fold(run: Run) -> dict | None:
    """The run's (one) grid-point training job once its log shows the first epoch of fold 1: {"job_id",
    "log"}; None before. Fold 0's results are written by then."""
    logs = sorted((run.workdir / "logs" / "results" / "train").rglob("folds.log"))
    ids = slurm_log_job_ids(run.workdir, POINT_LOGS)
    if len(logs) == 1 and ids and re.search(r"fold=1 on cpu.*\n(.*\n)*.*epoch   1 ", logs[0].read_text()):
        running = [job for job in squeue_jobs(sorted(ids), all_states=False) if job.state == "RUNNING"]
        if len(running) == 1:
            return {"job_id": running[0].job_id, "log": logs[0]}
    return None


def cancel_when_ready(runs: dict[str, Run], ready: dict, timeout: float = 240) -> dict[str, dict]:
    """scancel each run's training job as soon as `ready[name](run)` returns it (the runs go on
    at once, so they are watched together). Returns {name: what ready returned, with "at" (seconds
    into the run)} or {name: {"error": ...}}."""
    cancelled: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(cancelled) < len(ready) and time.monotonic() < deadline:
        for name, condition in ready.items():
            run = runs[name]
            if name in cancelled:
                continue
            if run.process.poll() is not None:
                cancelled[name] = {"error": f"{name} ended before a job could be cancelled:\n{run.output[-6000:]}"}
                continue
            found = condition(run)
            if found:
                scancel(found["job_id"])
                cancelled[name] = {**found, "at": time.monotonic() - run.started}
        time.sleep(0.2)
    for name in ready.keys() - cancelled.keys():
        cancelled[name] = {"error": f"{name}: no training job to cancel within {timeout} s:\n{runs[name].output[-6000:]}"}
    return cancelled


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """Four runs at once (the SLURM runs wait for their jobs most of the time, and the one GPU
    runs one training job at a time anyway):

    - local, slurm, grouped: the tiny grid locally, on SLURM, on SLURM with job groups;
    - scancel: one grid point with longer training on SLURM; its first training job is
      cancelled with scancel once it has written its first checkpoint;
    - point, point_scancel: the same two with training.folds_per_job: all; point_scancel's job is
      cancelled once it trains its second fold.

    Returns the runs by name and what happened to the cancelled jobs by run name
    ({"job_id", "checkpoint" or "log", "at"} or {"error"}).
    """
    root = tmp_path_factory.mktemp("slurm_workflow")
    data = write_image_folder(root / "images", n_classes=3, per_class=20, size=(40, 40))
    tiny = write_config(root / "tiny.yaml", tiny_config(data, grid={"learning_rate": [0.0004, 0.001]}))
    tiny_point = write_config(root / "tiny_point.yaml", tiny_config(
        data, grid={"learning_rate": [0.0004, 0.001]}, training={"folds_per_job": "all"}))
    # Enough epochs (0.1-0.3 s each here) that the job is still training when it is cancelled;
    # patience as long, so that early stopping does not end it first. A checkpoint after every
    # epoch, so that there is one to wait for before the cancel.
    longer_training = {"max_epochs": CANCEL_EPOCHS, "patience": CANCEL_EPOCHS}
    longer = write_config(root / "longer.yaml", tiny_config(data, grid={"learning_rate": [0.001]},
                                                            training=longer_training | {"checkpoint_seconds": 0}))
    # One job for both folds; checkpoints every 60 s (the default), so that what the retry
    # resumes from was written by SIGTERM.
    longer_point = write_config(root / "longer_point.yaml", tiny_config(
        data, grid={"learning_rate": [0.001]}, training=longer_training | {"folds_per_job": "all"}))
    with runs_to_the_end(RUN_TIMEOUT_S) as runs:
        # The cross-validation only (no refit of the final model: one GPU job less each).
        runs["scancel"] = Run("scancel", root / "scancel", longer, *SLURM_ARGS, targets=("results/cv_summary.tsv",))
        runs["point_scancel"] = Run("point_scancel", root / "point_scancel", longer_point, *SLURM_ARGS,
                                    targets=("results/cv_summary.tsv",))
        runs["slurm"] = Run("slurm", root / "slurm", tiny, *SLURM_ARGS)
        runs["point"] = Run("point", root / "point", tiny_point, *SLURM_ARGS)
        runs["grouped"] = Run("grouped", root / "grouped", tiny, *SLURM_ARGS, *GROUP_ARGS,
                              targets=("results/cv_summary.tsv",))
        runs["local"] = Run("local", root / "local", tiny, "--cores", "2")
        cancelled = cancel_when_ready(runs, {"scancel": running_training_job,
                                             "point_scancel": point_job_in_second_fold})
    return runs, cancelled


def test_every_training_job_runs_as_a_slurm_job_with_the_local_results(runs):
    local, slurm = runs[0]["local"], runs[0]["slurm"]
    local.assert_ok()
    slurm.assert_ok()

    ids = assert_ran_on_slurm(slurm.workdir)
    assert len(set(ids.values())) == 4, f"one SLURM job per training job: {ids}"
    assert all(m["slurm_job_id"] is None for m in metrics_by_fold(local.workdir).values())

    # The small jobs went to SLURM too, the light ones stayed with snakemake (localrule).
    rule_dirs = {p.name for p in (slurm.workdir / ".snakemake" / "slurm_logs").iterdir()}
    assert {"rule_prepare_dataset", "rule_make_folds", "rule_check_gpu", "rule_refit_best", TRAIN_LOGS} == rule_dirs
    final = json.loads((slurm.workdir / "results" / "final" / "model_a" / "model.json").read_text())
    assert final["cv_estimate"]["folds"] == 2

    assert_same_results(local.workdir, slurm.workdir)


def test_job_groups_pack_two_folds_into_one_slurm_job(runs):
    local, slurm, grouped = runs[0]["local"], runs[0]["slurm"], runs[0]["grouped"]
    grouped.assert_ok()
    slurm.assert_ok()

    ids = assert_ran_on_slurm(grouped.workdir)
    ungrouped_ids = train_job_ids(slurm.workdir)
    per_job: dict[str, list[str]] = {}
    for fold, job_id in ids.items():
        per_job.setdefault(job_id, []).append(fold)
    print(f"training submissions: {len(set(ungrouped_ids.values()))} without groups, {len(per_job)} with groups")
    print("grouped:", json.dumps(per_job, indent=1))
    assert len(per_job) == 2 < len(set(ungrouped_ids.values())) == 4
    assert all(len(folds) == 2 for folds in per_job.values()), per_job
    # All submissions: prepare_dataset, make_folds, check_gpu and the training jobs (and refit_best
    # in the ungrouped run, which runs the whole workflow).
    assert len(slurm_log_job_ids(grouped.workdir)) == 5 and len(slurm_log_job_ids(slurm.workdir)) == 8

    local.assert_ok()
    assert_same_results(local.workdir, grouped.workdir, whole_workflow=False)


# ------------------------------------------------------------------ partitions


def jobs_by_rule(workdir: Path) -> dict[str, list]:
    """The SLURM jobs of a run as squeue still lists them (MinJobAge), by the plugin's log folder
    (rule_<rule> or group_train_folds_train)."""
    folders = {job_id: logs[0].relative_to(workdir / ".snakemake" / "slurm_logs").parts[0]
               for job_id, logs in slurm_log_job_ids(workdir).items()}
    by_rule: dict[str, list] = {}
    for job in squeue_jobs(sorted(folders)):
        by_rule.setdefault(folders[job.job_id], []).append(job)
    assert sum(map(len, by_rule.values())) == len(folders), (folders, by_rule)
    return by_rule


def test_cpu_jobs_go_to_the_cpu_partition_and_training_to_the_gpu_one(runs):
    """Account and partitions come from the site profile alone (tests/slurm/profile: its partition
    file); the workflow profile names none. What squeue recorded of the runs' jobs: the CPU steps
    in `cpu`, the GPU jobs in `gpu`, with one GPU each, and every job named cvgrid_<run id>."""
    expected = {"rule_prepare_dataset": CPU_PARTITION, "rule_make_folds": CPU_PARTITION,
                "rule_check_gpu": GPU_PARTITION, TRAIN_LOGS: GPU_PARTITION, "rule_refit_best": GPU_PARTITION}
    for name in ("slurm", "grouped"):
        run = runs[0][name]
        run.assert_ok()
        by_rule = jobs_by_rule(run.workdir)
        print(f"{name}: {'JobID':>6} {'Partition':9} {'State':9} {'TRES':11} Comment / Name")
        for folder, jobs in sorted(by_rule.items()):
            for job in jobs:
                print(f"{name}: {job.job_id:>6} {job.partition:9} {job.state:9} {job.tres_per_job:11} "
                      f"{job.comment} / {job.name}")
        assert set(by_rule) <= set(expected) and {"rule_prepare_dataset", TRAIN_LOGS} <= set(by_rule), by_rule
        for folder, jobs in by_rule.items():
            for job in jobs:
                assert job.partition == expected[folder], (folder, job)
                assert job.tres_per_job == ("gres:gpu:1" if expected[folder] == GPU_PARTITION else "N/A"), job
        names = {job.name for jobs in by_rule.values() for job in jobs}
        assert len(names) == 1 and names.pop().startswith("cvgrid_"), names


# ------------------------------------------------------------------ scancel


def test_a_cancelled_training_job_is_retried_and_resumes(runs):
    run, cancelled = runs[0]["scancel"], runs[1]["scancel"]
    if "error" in cancelled:
        pytest.fail(cancelled["error"])
    job_id, checkpoint = cancelled["job_id"], cancelled["checkpoint"]
    print(f"cancelled SLURM job {job_id} after {cancelled['at']:.0f} s; run ended after {run.seconds:.0f} s")
    run.assert_ok()
    assert wait_until_finished(job_id, timeout=30) == "CANCELLED"
    # Snakemake saw the job fail (a group job, as every train job: the rule has `group:`).
    slurm_log = run.workdir / ".snakemake" / "slurm_logs" / TRAIN_LOGS / f"{job_id}.log"
    assert f"Error in group train_folds\n    log: {slurm_log}" in run.output

    # The fold of the cancelled job: its checkpoint is results/checkpoints/<point>/<repeat>/<fold>.pt.
    fold = str(checkpoint.relative_to(run.workdir / "results" / "checkpoints").with_suffix(""))
    metrics = metrics_by_fold(run.workdir)
    assert sorted(metrics) == sorted(f"{fold[: fold.rindex('/')]}/fold~{f}" for f in (0, 1))
    retried = metrics[fold]
    assert retried["slurm_job_id"] not in (None, job_id), retried["slurm_job_id"]
    assert len({m["slurm_job_id"] for m in metrics.values()}) == 2
    # The retry is attempt 2: twice the memory (common.smk, train_mem_mb: 4000 MB for model A
    # plus twice images.npy, times the attempt).
    array_mb = math.ceil(2 * (run.workdir / "results" / "data" / "images.npy").stat().st_size / 1e6)
    assert scontrol_show_job(retried["slurm_job_id"])["MinMemoryNode"] == f"{2 * (4000 + array_mb)}M"
    # It went on from the cancelled job's last checkpoint, not from epoch 1.
    print(f"retry {retried['slurm_job_id']} resumed from epoch {retried['resumed_from_epoch']}")
    assert retried["resumed_from_epoch"] >= 1
    assert retried["epochs_run"] == CANCEL_EPOCHS

    # Nothing half-written: no temporary files, every table whole.
    results = run.workdir / "results"
    leftovers = [str(p) for p in results.rglob("*") if ".tmp" in p.name]
    assert not leftovers, leftovers
    for name, m in metrics.items():
        folder = results / "train" / name
        history = pd.read_csv(folder / "history.tsv", sep="\t")
        assert list(history["epoch"]) == list(range(1, m["epochs_run"] + 1)), name
        predictions = pd.read_csv(folder / "predictions.tsv", sep="\t")
        assert len(predictions) == m["n_test"] > 0 and predictions.notna().all().all(), name
    summary = pd.read_csv(results / "cv_summary.tsv", sep="\t")
    assert len(summary) == 1 and summary.loc[0, "folds"] == 2


# ------------------------------------------------------------------ one job per grid point


def point_of(fold: str) -> str:
    """'model~.../augmentation~none/repeat~0/fold~1' -> its grid point 'model~.../augmentation~none'."""
    return fold.rsplit("/repeat~", 1)[0]


def training_log(workdir: Path, fold: str, per_point: bool) -> Path:
    """The rule log of the training job that trained `fold`: one per fold, or one per grid point
    (training.folds_per_job: all)."""
    train = workdir / "logs" / "results" / "train"
    return train / point_of(fold) / "folds.log" if per_point else train / f"{fold}.log"


def log_time(line: str) -> float:
    """Seconds since the epoch of a log line's '2026-01-31 12:00:00,123' prefix."""
    from datetime import datetime

    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def startup_seconds(workdir: Path, per_point: bool) -> dict[str, float]:
    """Each training job's start-up: from its SLURM start (StartTime) to its first fit (the log
    line "<fold> on <device>"): the job step's Snakemake, the torch import, the device and the
    data. By SLURM job id."""
    from datetime import datetime

    seconds = {}
    for fold, job_id in train_job_ids(workdir).items():
        if job_id in seconds:
            continue
        start = datetime.strptime(scontrol_show_job(job_id)["StartTime"], "%Y-%m-%dT%H:%M:%S").timestamp()
        first_fit = next(line for line in training_log(workdir, fold, per_point).read_text().splitlines()
                         if " on cpu (" in line)
        seconds[job_id] = log_time(first_fit) - start
    return seconds


def print_jobs(name: str, workdir: Path) -> list:
    """squeue's record of a run's SLURM jobs (MinJobAge; the test cluster has no sacct), printed."""
    jobs = squeue_jobs(sorted(slurm_log_job_ids(workdir)))
    print(f"{name}: {len(jobs)} submissions")
    print(f"{name}: {'JobID':>6} {'Partition':9} {'State':9} {'TRES':11} Comment")
    for job in jobs:
        print(f"{name}: {job.job_id:>6} {job.partition:9} {job.state:9} {job.tres_per_job:11} {job.comment}")
    return jobs


def test_one_job_per_grid_point_gives_the_one_job_per_fold_results(runs):
    """training.folds_per_job: all. Two grid points: two training jobs (not four), each trains
    both folds of its point on the GPU partition, and every fold's files equal those of the run
    with one job per fold (and of the local run) bit for bit."""
    local, slurm, point = runs[0]["local"], runs[0]["slurm"], runs[0]["point"]
    point.assert_ok()
    slurm.assert_ok()
    local.assert_ok()

    ids = train_job_ids(point.workdir)
    per_job: dict[str, list[str]] = {}
    for fold, job_id in ids.items():
        per_job.setdefault(job_id, []).append(fold)
    assert len(ids) == 4 and len(per_job) == 2, per_job
    for folds in per_job.values():  # one grid point's two folds per job
        assert len(folds) == 2 and len({point_of(f) for f in folds}) == 1, per_job
    jobs = {job.job_id: job for job in print_jobs("point", point.workdir)}
    for job_id in per_job:
        assert jobs[job_id].state == "COMPLETED" and jobs[job_id].partition == GPU_PARTITION, jobs[job_id]
        assert jobs[job_id].comment.startswith("rule_train_") and jobs[job_id].tres_per_job == "gres:gpu:1", jobs[job_id]
    # prepare_dataset, make_folds, check_gpu, 2 train (a grid point each), refit_best; one job per
    # fold: 4 train instead.
    assert len(slurm_log_job_ids(point.workdir)) == 6 and len(slurm_log_job_ids(slurm.workdir)) == 8
    assert set(slurm_log_job_ids(point.workdir, POINT_LOGS)) == set(per_job)

    assert_same_results(slurm.workdir, point.workdir)
    assert_same_results(local.workdir, point.workdir)


def test_start_up_seconds_with_and_without_one_job_per_grid_point(runs):
    """What one job per grid point saves: every training job pays the start-up (SLURM start to
    its first fit) once. Printed for the record; on this busy two-core test machine the numbers
    are larger than on a cluster node, the ratio is the point."""
    slurm, point = runs[0]["slurm"], runs[0]["point"]
    slurm.assert_ok()
    point.assert_ok()
    per_fold = startup_seconds(slurm.workdir, per_point=False)
    per_point = startup_seconds(point.workdir, per_point=True)
    print_jobs("slurm", slurm.workdir)
    for name, seconds in (("one job per fold", per_fold), ("one job per grid point", per_point)):
        listed = ", ".join(f"{job_id}: {s:.1f} s" for job_id, s in sorted(seconds.items()))
        print(f"start-up, {name}: {len(seconds)} training jobs, total {sum(seconds.values()):.1f} s ({listed})")
    assert len(per_fold) == 4 and len(per_point) == 2
    assert all(s >= 0 for s in [*per_fold.values(), *per_point.values()])
    assert sum(per_point.values()) < sum(per_fold.values())


def test_a_cancelled_job_of_several_folds_resumes_at_its_first_unfinished_fold(runs):
    """scancel while the job trains fold 1: Snakemake deletes the job's outputs (fold 0's too) and
    retries it; the retry scores fold 0 from its checkpoint without training an epoch, and
    resumes fold 1 from the epoch that SIGTERM wrote (checkpoint_seconds 60 had written none)."""
    run, cancelled = runs[0]["point_scancel"], runs[1]["point_scancel"]
    if "error" in cancelled:
        pytest.fail(cancelled["error"])
    job_id = cancelled["job_id"]
    print(f"cancelled SLURM job {job_id} after {cancelled['at']:.0f} s; run ended after {run.seconds:.0f} s")
    run.assert_ok()
    assert wait_until_finished(job_id, timeout=30) == "CANCELLED"

    metrics = metrics_by_fold(run.workdir)
    assert len(metrics) == 2
    (fold0, first), (fold1, second) = sorted(metrics.items())
    retry = first["slurm_job_id"]
    assert retry == second["slurm_job_id"] and retry not in (None, job_id)
    print(f"retry {retry}: fold 0 resumed after epoch {first['resumed_from_epoch']} of {first['epochs_run']}, "
          f"fold 1 after epoch {second['resumed_from_epoch']}")
    # Fold 0 had finished: scored again from its checkpoint, not trained.
    assert first["resumed_from_epoch"] == first["epochs_run"] == CANCEL_EPOCHS
    log = training_log(run.workdir, fold0, per_point=True).read_text()  # the retry's log
    before_fold1 = log[: log.index("fold=1 on cpu")]
    assert "resuming" in before_fold1 and "epoch   " not in before_fold1, before_fold1
    # Fold 1 went on from the epoch that SIGTERM wrote.
    assert 1 <= second["resumed_from_epoch"] < second["epochs_run"] == CANCEL_EPOCHS
    for name, m in metrics.items():
        history = pd.read_csv(run.workdir / "results" / "train" / name / "history.tsv", sep="\t")
        assert list(history["epoch"]) == list(range(1, m["epochs_run"] + 1)), name
    assert not list((run.workdir / "results" / "checkpoints").rglob("*.pt")), "the job removes its checkpoints"
    summary = pd.read_csv(run.workdir / "results" / "cv_summary.tsv", sep="\t")
    assert len(summary) == 1 and summary.loc[0, "folds"] == 2
