"""The SLURM test cluster does what the workflow's SLURM runs need.

Runs against the real cluster from tests/slurm/start.sh. Without one these
tests skip, and with CI=true they fail (fixture ``slurm_cluster``).
"""

from __future__ import annotations

import time

import pytest
import yaml

from slurm_cluster import (  # noqa: F401 (slurm_cluster is a fixture)
    CPU_PARTITION,
    FINISHED_STATES,
    GPU_PARTITION,
    SITE_PROFILE,
    SlurmError,
    cancel_all,
    default_partition,
    gpu_count,
    min_job_age_seconds,
    sbatch,
    scancel,
    scontrol_config,
    scontrol_show_job,
    sinfo_nodes,
    slurm_cluster,
    squeue_jobs,
    wait_for_state,
    wait_until_finished,
)

pytestmark = pytest.mark.slurm

# The plugin only trusts squeue for status checks when finished jobs stay
# visible for a while (it recommends MinJobAge >= 120 s).
MIN_JOB_AGE_S = 120


@pytest.fixture
def jobs():
    """Job ids submitted by a test; cancelled afterwards if still queued."""
    submitted: list[str] = []
    yield submitted
    cancel_all(submitted)


def test_node_offers_one_gpu(slurm_cluster):
    nodes = sinfo_nodes()
    assert nodes, "sinfo lists no node"
    gpu_nodes = [n for n in nodes if gpu_count(n.gres) >= 1]
    assert gpu_nodes, f"no node declares a GPU: {nodes}"
    node = gpu_nodes[0]
    assert node.base_state in {"idle", "mixed", "allocated", "completing"}, node
    assert node.cpus >= 1 and node.memory_mb >= 1000, node
    # The default partition is where the plugin sends jobs without slurm_partition.
    assert default_partition() is not None


def test_cpu_and_gpu_partitions_as_the_site_profile_names_them(slurm_cluster):
    """A CPU partition (the default, as on most clusters) and a GPU partition; the site profile's
    partition file names exactly these, and only the GPU one with GPUs."""
    partitions = {n.partition.rstrip("*") for n in sinfo_nodes()}
    assert {CPU_PARTITION, GPU_PARTITION} <= partitions, partitions
    assert default_partition() == CPU_PARTITION
    profile = yaml.safe_load((SITE_PROFILE / "config.yaml").read_text())
    limits = yaml.safe_load((SITE_PROFILE / profile["slurm-partition-config"]).read_text())["partitions"]
    assert set(limits) == {CPU_PARTITION, GPU_PARTITION}
    assert limits[CPU_PARTITION].get("max_gpu", 0) == 0 and limits[GPU_PARTITION]["max_gpu"] >= 1


def test_config_suits_snakemake_plugin(slurm_cluster):
    config = scontrol_config()
    assert config["SelectType"] == "select/cons_tres", "--gpus needs select/cons_tres"
    assert "gpu" in config["GresTypes"]
    age = min_job_age_seconds()
    assert age is not None and age >= MIN_JOB_AGE_S, (
        f"MinJobAge={age}: squeue forgets finished jobs too early for --slurm-status-command squeue"
    )


def test_gpu_job_runs_and_is_reported(slurm_cluster, jobs, tmp_path):
    out = tmp_path / "job.out"
    job_id = sbatch(
        "-p",
        GPU_PARTITION,
        "--gpus=1",
        "--ntasks=1",
        "--cpus-per-task=1",
        "--mem=100",
        "-t",
        "2",
        "-J",
        "pytest-gpu-job",
        "--comment",
        "rule_pytest",
        "-o",
        str(out),
        wrap='echo "job=$SLURM_JOB_ID cuda=$CUDA_VISIBLE_DEVICES gpus=$SLURM_GPUS"',
    )
    jobs.append(job_id)

    assert wait_until_finished(job_id, timeout=60) == "COMPLETED"

    # squeue still lists the finished job (MinJobAge), with what the plugin reads.
    (queued,) = [j for j in squeue_jobs([job_id]) if j.job_id == job_id]
    assert queued.state == "COMPLETED"
    assert queued.name == "pytest-gpu-job"
    assert queued.comment == "rule_pytest"
    assert queued.tres_per_job == "gres:gpu:1", queued

    job = scontrol_show_job(job_id)
    assert job["JobState"] == "COMPLETED"
    assert job["ExitCode"] == "0:0"
    assert job["TresPerJob"] == "gres:gpu:1", job

    text = out.read_text()
    assert f"job={job_id} " in text
    # SLURM hands the job its (fake) GPU as device 0.
    assert "cuda=0 " in text, text


def test_a_typed_gpu_is_scheduled_and_its_job_step_sees_it(slurm_cluster, jobs, tmp_path):
    """The node's GPU has a GRES type (gpu:fake:1), as on clusters with several GPU models:
    `--gpus=fake:1` (what the plugin writes for gpu_model: fake) and `--gres=gpu:fake:1` are
    scheduled, and a job step started as the jobstep plugin starts each rule (srun --gpus=1)
    sees its GPU."""
    (node,) = [n for n in sinfo_nodes() if n.partition == GPU_PARTITION]
    assert node.gres.startswith("gpu:fake:1"), node
    for request in ("--gpus=fake:1", "--gres=gpu:fake:1"):
        out = tmp_path / f"{request[2:6]}.out"
        job_id = sbatch("-p", GPU_PARTITION, request, "--mem=100", "-t", "1", "-o", str(out),
                        wrap="srun -n1 --gpus=1 bash -c 'echo step_gpus=$SLURM_STEP_GPUS cuda=$CUDA_VISIBLE_DEVICES'")
        jobs.append(job_id)
        assert wait_until_finished(job_id, timeout=60) == "COMPLETED", request
        assert "step_gpus=0 cuda=0" in out.read_text(), (request, out.read_text())


def test_failed_job_is_reported_as_failed(slurm_cluster, jobs, tmp_path):
    job_id = sbatch("-p", GPU_PARTITION, "--gpus=1", "--mem=100", "-t", "1", "-o", str(tmp_path / "fail.out"),
                    wrap="exit 3")
    jobs.append(job_id)
    assert wait_until_finished(job_id, timeout=60) == "FAILED"
    assert scontrol_show_job(job_id)["ExitCode"] == "3:0"


def test_running_job_can_be_cancelled(slurm_cluster, jobs, tmp_path):
    job_id = sbatch("-p", GPU_PARTITION, "--gpus=1", "--mem=100", "-t", "5", "-o", str(tmp_path / "sleep.out"),
                    wrap="sleep 300")
    jobs.append(job_id)
    assert wait_for_state(job_id, {"RUNNING"}, timeout=60) == "RUNNING"
    assert scontrol_show_job(job_id)["JobState"] == "RUNNING"

    scancel(job_id)

    assert wait_until_finished(job_id, timeout=60) == "CANCELLED"
    assert scontrol_show_job(job_id)["JobState"] == "CANCELLED"


def test_one_gpu_means_one_gpu_job_at_a_time(slurm_cluster, jobs, tmp_path):
    """The fake GPU is a consumable resource: a second --gpus=1 job waits."""
    first = sbatch("-p", GPU_PARTITION, "--gpus=1", "--mem=100", "-t", "5", "-o", str(tmp_path / "a.out"),
                   wrap="sleep 300")
    jobs.append(first)
    wait_for_state(first, {"RUNNING"}, timeout=60)
    second = sbatch("-p", GPU_PARTITION, "--gpus=1", "--mem=100", "-t", "5", "-o", str(tmp_path / "b.out"), wrap="true")
    jobs.append(second)

    # The scheduler gives the reason once it has looked at the job (seconds).
    deadline = time.monotonic() + 30
    while True:
        (queued,) = [j for j in squeue_jobs([second]) if j.job_id == second]
        assert queued.state == "PENDING", queued
        if queued.reason != "None" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert queued.reason == "Resources", queued

    scancel(first)
    assert wait_until_finished(second, timeout=60) == "COMPLETED"


def test_more_gpus_than_the_node_has_are_rejected(slurm_cluster, tmp_path):
    """What a job group without `--set-resource-scopes gpu=local` runs into:
    summed group resources ask for more GPUs than a node has."""
    with pytest.raises(SlurmError, match="Requested node configuration is not available"):
        sbatch("-p", GPU_PARTITION, "--gpus=2", "--mem=100", "-t", "1", "-o", str(tmp_path / "x.out"), wrap="true")


def test_finished_states_are_terminal():
    # Not a cluster test: guards the helper that the tests above rely on.
    assert {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY"} <= FINISHED_STATES
