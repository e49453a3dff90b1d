"""The controller job (profiles/slurm/controller.sbatch) never downloads: on the test cluster, run
with its network cut (`unshare -n`, as on a compute node without internet), it refuses to start
while a download is missing, naming the one login-node command, and starts once nothing is
missing. The login-node command's plan is checked without a cluster (a dry run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REPO, run_snakemake, tiny_config, write_config, write_image_folder
from slurm_cluster import CPU_PARTITION, SITE_PROFILE, slurm_cluster, wait_until_finished  # noqa: F401

CONTROLLER = REPO / "profiles" / "slurm" / "controller.sbatch"


def controller_job(tmp_path: Path, name: str, *snakemake_args: str) -> tuple[str, str]:
    """sbatch the controller from the repository (its submit directory) inside a network
    namespace of its own; its final state and its log."""
    out = tmp_path / f"{name}.log"
    wrap = f"unshare -n bash {CONTROLLER} " + " ".join(snakemake_args)
    proc = subprocess.run(["sbatch", "--parsable", "-p", CPU_PARTITION, "-t", "10", "-o", str(out), "--wrap", wrap],
                          cwd=REPO, capture_output=True, text=True, timeout=30, check=True)
    state = wait_until_finished(proc.stdout.strip().split(";")[0], timeout=240)
    return state, out.read_text() if out.exists() else ""


@pytest.mark.slurm
def test_the_controller_without_network_refuses_missing_downloads_and_names_the_command(slurm_cluster, tmp_path):
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20, size=(32, 32))
    downloading = write_config(tmp_path / "download.yaml", tiny_config("", grid={"learning_rate": [0.001]}))
    given = write_config(tmp_path / "given.yaml", tiny_config(data, grid={"learning_rate": [0.001]}))
    site = ("--profile", str(SITE_PROFILE))

    state, log = controller_job(tmp_path, "missing", *site, "-d", str(tmp_path / "w1"), "--configfile", str(downloading))
    print(log[-3000:])
    assert state == "FAILED"
    assert "not downloaded yet: resources/sign-language-digits" in log
    assert "snakemake --cores 1 downloads" in log
    assert not (tmp_path / "w1" / "logs" / "fetch_dataset.log").exists()  # no download was tried

    # Nothing to download (data_dir given, no pretrained model): the controller plans the run.
    state, log = controller_job(tmp_path, "present", *site, "-d", str(tmp_path / "w2"), "--configfile", str(given),
                                "-n")
    print(log[-1500:])
    assert state == "COMPLETED", log[-3000:]
    assert "check_gpu" in log and "This was a dry-run" in log


def test_the_login_node_command_plans_every_download_and_nothing_else(tmp_path):
    config = write_config(tmp_path / "config.yaml", tiny_config(
        "", models={"model_a": {}, "model_b": {"pretrained": "imagenet"}},
        grid={"model": ["model_a", "model_b"], "learning_rate": [0.001]}))
    work = tmp_path / "work"
    work.mkdir()
    result = run_snakemake(work, config, "--cores", "1", "downloads", "-n")
    output = result.stdout + result.stderr
    planned = {line.split()[1].rstrip(":") for line in output.splitlines() if line.startswith(("rule ", "localrule "))}
    assert planned == {"fetch_dataset", "fetch_weights", "downloads"}, output
