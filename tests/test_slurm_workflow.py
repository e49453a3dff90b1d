"""The workflow on a real SLURM cluster (`snakemake --profile profiles/slurm`).

Needs the single-node cluster of tests/slurm/start.sh (partitions ``cpu`` and ``gpu``, one fake
GPU as ``Gres=gpu:1``, no accounting database); without it these tests skip, with CI=true they
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

All four workflows run at once in one module fixture: the SLURM runs spend most of their time
waiting for the scheduler and for the status checks, and the cluster's one GPU runs one
training job at a time anyway, so together they take little longer than the longest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
# Two folds per SLURM job, one GPU per group (profiles/slurm/config.yaml, README "Many short jobs").
GROUP_ARGS = (
    "--groups", "train=train_folds", "--group-components", "train_folds=2",
    "--set-resource-scopes", "gpu=local", "--resources", "gpu=1",
)
TRAIN_LOGS = "group_train_folds_train"  # .snakemake/slurm_logs/<this>/<jobid>.log (rule train has group:)
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


# ------------------------------------------------------------------ reading results


def metrics_by_fold(workdir: Path) -> dict[str, dict]:
    """Every training job's metrics.json, by its folder relative to results/train/."""
    root = workdir / "results" / "train"
    return {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("metrics.json"))}


def result_files(workdir: Path) -> set[str]:
    """Files under results/ that the runs must share: all but the checkpoints (kept for resumes)."""
    root = workdir / "results"
    files = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return {str(f) for f in files if f.parts[0] != "checkpoints"}


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


def wait_for_running_training_job(run: Run, timeout: float = 240) -> tuple[str, Path]:
    """The first training job that runs and has written its first checkpoint: (SLURM id, checkpoint)."""
    checkpoints = run.workdir / "results" / "checkpoints"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.process.poll() is None, f"the workflow ended before a job could be cancelled:\n{run.output[-6000:]}"
        ids = slurm_log_job_ids(run.workdir, TRAIN_LOGS)  # the log appears when the job starts
        written = [p for p in checkpoints.rglob("*.pt")] if checkpoints.is_dir() else []
        if ids and written:
            running = [job for job in squeue_jobs(sorted(ids), all_states=False) if job.state == "RUNNING"]
            # One GPU: one training job at a time, so the one checkpoint is that job's.
            if len(running) == 1 and len(written) == 1:
                return running[0].job_id, written[0]
        time.sleep(0.2)
    raise AssertionError(f"no training job with a checkpoint ran within {timeout} s:\n{run.output[-6000:]}")


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """Four runs at once (the SLURM runs wait for their jobs most of the time, and the one GPU
    runs one training job at a time anyway):

    - local, slurm, grouped: the tiny grid locally, on SLURM, on SLURM with job groups;
    - scancel: one grid point with longer training on SLURM; its first training job is
      cancelled with scancel once it has written its first checkpoint.

    Returns the runs by name and what happened to the cancelled job
    ({"job_id", "checkpoint", "at"} or {"error"}).
    """
    root = tmp_path_factory.mktemp("slurm_workflow")
    data = write_image_folder(root / "images", n_classes=3, per_class=20, size=(40, 40))
    tiny = write_config(root / "tiny.yaml", tiny_config(data, grid={"learning_rate": [0.0004, 0.001]}))
    # Enough epochs (0.1-0.3 s each here) that the job is still training when it is cancelled;
    # patience as long, so that early stopping does not end it first.
    longer = write_config(root / "longer.yaml", tiny_config(data, grid={"learning_rate": [0.001]},
                                                            training={"max_epochs": CANCEL_EPOCHS,
                                                                      "patience": CANCEL_EPOCHS}))
    runs: dict[str, Run] = {}
    cancelled: dict = {}
    try:
        # The cross-validation only (no refit of the final model: one GPU job less each).
        runs["scancel"] = Run("scancel", root / "scancel", longer, *SLURM_ARGS, targets=("results/cv_summary.tsv",))
        runs["slurm"] = Run("slurm", root / "slurm", tiny, *SLURM_ARGS)
        runs["grouped"] = Run("grouped", root / "grouped", tiny, *SLURM_ARGS, *GROUP_ARGS,
                              targets=("results/cv_summary.tsv",))
        runs["local"] = Run("local", root / "local", tiny, "--cores", "2")
        try:
            job_id, checkpoint = wait_for_running_training_job(runs["scancel"])
            scancel(job_id)
            cancelled.update(job_id=job_id, checkpoint=checkpoint, at=time.monotonic() - runs["scancel"].started)
        except AssertionError as error:
            cancelled["error"] = str(error)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while [run for run in runs.values() if run.poll() is None] and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        for run in runs.values():
            run.stop()  # ends (and records as failed) what is still running at the deadline
    for run in runs.values():
        print(f"{run.name}: exit {run.returncode} after {run.seconds:.0f} s")
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
    assert {"rule_prepare_dataset", "rule_make_folds", "rule_refit_best", TRAIN_LOGS} == rule_dirs
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
    # All submissions: prepare_dataset, make_folds and the training jobs (and refit_best in the
    # ungrouped run, which runs the whole workflow).
    assert len(slurm_log_job_ids(grouped.workdir)) == 4 and len(slurm_log_job_ids(slurm.workdir)) == 7

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
                TRAIN_LOGS: GPU_PARTITION, "rule_refit_best": GPU_PARTITION}
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
    run, cancelled = runs[0]["scancel"], runs[1]
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
    # The retry is attempt 2: twice the memory (profiles/slurm: mem_mb "4000 * attempt").
    assert scontrol_show_job(retried["slurm_job_id"])["MinMemoryNode"] == "8000M"
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
