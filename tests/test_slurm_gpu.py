"""The GPU request on a real SLURM cluster: it cannot be lost, it can be typed, the job step sees
it, and one check job stands before the grid.

Needs the single-node cluster of tests/slurm/start.sh (one fake GPU of GRES type ``fake``:
``Gres=gpu:fake:1``); without it these tests skip, with CI=true they fail. Four runs at once,
each on a tiny grid (one grid point, two folds, up to results/cv_summary.tsv):

- ``site_alone``: the test site profile alone (no profiles/slurm, no set-resources anywhere): the
  training rules' own `resources: gpu=1` still sends check_gpu and the training jobs to the GPU
  partition with one GPU.
- ``cli_resources``: site profile + workflow profile + a `--set-resources` on the command line,
  which replaces the workflow profile's whole set-resources block: the GPU request survives.
- ``typed``: the workflow profile as a user with typed GPUs edits it (`gpu_model: fake` in its
  four GPU blocks): `sbatch --gpus=fake:1`, and inside the job step the check job sees its GPU
  (SLURM_STEP_GPUS, CUDA_VISIBLE_DEVICES).
- ``unusable``: the same with training.device auto: the fake GPU is one that torch cannot use.
  The check job fails once (not retried, although the profile says retries: 2) with the one
  CudaUnusable message, and no training job is submitted.

The first three train with training.device cpu inside the GPU allocation (the fake GPU has no
CUDA), as tests/test_slurm_workflow.py does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, tiny_config, write_config, write_image_folder
from slurm_cluster import GPU_PARTITION, SITE_PROFILE, slurm_cluster, slurm_log_job_ids, squeue_jobs  # noqa: F401
from test_slurm_workflow import Run, runs_to_the_end

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GPU_TYPE = "fake"  # tests/slurm/start.sh: Gres=gpu:fake:1
QUICK = ("--slurm-init-seconds-before-status-checks", "3", "--latency-wait", "5")
TARGET = ("results/cv_summary.tsv",)
RUN_TIMEOUT_S = 420
GPU_RULES = ("rule_check_gpu", "group_train_folds_train")


def typed_workflow_profile(folder: Path) -> Path:
    """profiles/slurm with `gpu_model: fake` uncommented in its three GPU blocks, as a user with
    typed GPUs (`sinfo -o %G` says gpu:fake:1) edits it."""
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    assert text.count("    # gpu_model: a100\n") == 3
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(text.replace("    # gpu_model: a100\n", f"    gpu_model: {GPU_TYPE}\n"))
    return folder


def jobs_of(run: Run) -> dict[str, list]:
    """The run's SLURM jobs as squeue still lists them, by the plugin's log folder."""
    logs = slurm_log_job_ids(run.workdir)
    folders = {job_id: paths[0].relative_to(run.workdir / ".snakemake" / "slurm_logs").parts[0]
               for job_id, paths in logs.items()}
    by_rule: dict[str, list] = {}
    for job in squeue_jobs(sorted(folders)):
        by_rule.setdefault(folders[job.job_id], []).append(job)
    for folder, jobs in sorted(by_rule.items()):
        for job in jobs:
            print(f"{run.name}: {job.job_id:>5} {folder:26} {job.partition:4} {job.state:10} {job.tres_per_job}")
    return by_rule


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_gpu")
    data = write_image_folder(root / "images", n_classes=3, per_class=20, size=(40, 40))
    on_cpu = write_config(root / "cpu.yaml", tiny_config(data, grid={"learning_rate": [0.001]}))
    auto = write_config(root / "auto.yaml", tiny_config(data, grid={"learning_rate": [0.001]},
                                                        training={"device": "auto"}))
    typed = ("--workflow-profile", str(typed_workflow_profile(root / "typed_profile")))
    site = ("--profile", str(SITE_PROFILE))
    with runs_to_the_end(RUN_TIMEOUT_S) as runs:
        # The site profile alone says neither how many jobs at once nor to keep the SLURM logs of
        # successful jobs (needed here to find the jobs): both on the command line.
        runs["site_alone"] = Run("site_alone", root / "site_alone", on_cpu, *site, *QUICK, "--jobs", "4",
                                 "--slurm-keep-successful-logs", targets=TARGET)
        runs["cli_resources"] = Run("cli_resources", root / "cli_resources", on_cpu, *site,
                                    "--workflow-profile", str(REPO / "profiles" / "slurm"), *QUICK,
                                    "--set-resources", "train:runtime=20m", "check_gpu:runtime=10m",
                                    targets=TARGET)
        runs["typed"] = Run("typed", root / "typed", on_cpu, *site, *typed, *QUICK, targets=TARGET)
        runs["unusable"] = Run("unusable", root / "unusable", auto, *site, *typed, *QUICK, targets=TARGET)
    return runs


@pytest.mark.parametrize("name", ["site_alone", "cli_resources"])
def test_the_gpu_request_survives_without_the_workflow_profiles_resources(runs, name):
    run = runs[name]
    run.assert_ok()
    by_rule = jobs_of(run)
    assert set(GPU_RULES) <= set(by_rule), by_rule
    assert len(by_rule["rule_check_gpu"]) == 1 and len(by_rule["group_train_folds_train"]) == 2
    for folder in GPU_RULES:
        for job in by_rule[folder]:
            assert job.state == "COMPLETED" and job.partition == GPU_PARTITION, job
            assert job.tres_per_job == "gres:gpu:1", job
    metrics = [json.loads(p.read_text()) for p in (run.workdir / "results" / "train").rglob("metrics.json")]
    assert len(metrics) == 2 and all(m["slurm_job_id"] for m in metrics)


def test_a_typed_gpu_is_asked_for_and_seen_inside_the_job_step(runs):
    run = runs["typed"]
    run.assert_ok()
    by_rule = jobs_of(run)
    for folder in GPU_RULES:
        for job in by_rule[folder]:
            assert job.partition == GPU_PARTITION and job.tres_per_job == f"gres:gpu:{GPU_TYPE}:1", job
    # The probe: what check_gpu's process (inside the jobstep plugin's srun step) saw.
    record = json.loads((run.workdir / "results" / "gpu_check.json").read_text())
    print("check_gpu record:", json.dumps(record, indent=1, sort_keys=True))
    assert record["slurm_job_id"] == by_rule["rule_check_gpu"][0].job_id
    assert record["slurm_partition"] == GPU_PARTITION
    assert record["slurm_step_gpus"] == "0" and record["cuda_visible_devices"] == "0"
    assert record["slurm_gpu_allocation"] is not None
    assert record["device"] == "cpu"  # training.device cpu, on purpose (the GPU is fake)


def test_an_unusable_gpu_fails_the_check_once_and_no_training_job_is_queued(runs):
    run = runs["unusable"]
    assert run.returncode not in (0, None), run.output[-4000:]
    by_rule = jobs_of(run)
    assert set(by_rule) == {"rule_prepare_dataset", "rule_make_folds", "rule_check_gpu"} or \
        set(by_rule) == {"rule_prepare_dataset", "rule_check_gpu"}, by_rule
    (check,) = by_rule["rule_check_gpu"]  # one submission: retries: 0 beats the profile's retries: 2
    assert check.state == "FAILED" and check.tres_per_job == f"gres:gpu:{GPU_TYPE}:1", check
    log = (run.workdir / "logs" / "results" / "gpu_check.log").read_text()
    first = log.splitlines()[0]
    print("check_gpu:", first)
    assert first.startswith("error: a GPU was asked for (training.device is 'auto' inside a SLURM job with GPUs (")
    assert "Traceback" not in log
    assert "Error in rule check_gpu" in run.output and "Trying to restart job" not in run.output
    assert not (run.workdir / "results" / "train").exists()
