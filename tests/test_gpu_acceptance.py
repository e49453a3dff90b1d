"""scripts/gpu_acceptance.py in its CPU mode: the whole run that a GPU machine gets in one call,
checked here without Snakemake (its import is blocked) and with the network cut (`unshare -n`,
where this machine allows it), on a copy of the data set's folder. It writes one JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import REPO, write_image_folder
from cvgrid.acceptance import fill_defaults, parallel_summary, slug, torch_version_ok


def network_cut() -> list[str]:
    """`unshare -n` where this machine lets us cut the network, else nothing (said in the output)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"]).returncode == 0:
        return ["unshare", "-n"]
    print("unshare -n is not allowed here: the run keeps the network")
    return []


def test_the_cpu_mode_runs_without_snakemake_or_network_and_writes_one_json(tmp_path):
    data = write_image_folder(tmp_path / "copied-data", n_classes=3, per_class=14, size=(40, 40))
    blocker = tmp_path / "blocked" / "snakemake"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("snakemake is not installed here")\n')
    out = tmp_path / "acceptance.json"
    env = dict(os.environ, PYTHONPATH=str(blocker.parent))
    proc = subprocess.run([*network_cut(), sys.executable, str(REPO / "scripts" / "gpu_acceptance.py"),
                           "--data-dir", str(data), "--cpu", "--threads", "1", "--work", str(tmp_path / "work"),
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "without validation" in proc.stderr  # config read without Snakemake, and said
    record = json.loads(out.read_text())
    assert record["mode"] == "cpu check" and record["device_check"]["device"] == "cpu"
    assert set(record["folds"]) == {"auto", "fp32"}
    for summary in record["folds"].values():
        assert summary["folds"] == 5 and len(summary["accuracy_per_fold"]) == 5
        assert summary["epochs_per_fold"] == [1] * 5 and summary["mean_images_per_second"] > 0
    assert record["folds"]["fp32"]["precision"] == ["fp32"]
    assert {"model_a", "model_b"} <= set(json.dumps(record["benchmark"]).split('"'))
    # training.parallel_folds over the same eight folds (1, 2, 4, 8 on a GPU); on the CPU every N
    # means 1 (logged), so the CPU mode checks 1 and 2 only.
    parallel = record["parallel_folds"]
    assert set(parallel["runs"]) == {"1", "2"} and parallel["folds"] == 8
    for n, run in parallel["runs"].items():
        assert run["folds"] == 8 and run["parallel_folds_used"] == [1] and run["wall_seconds"] > 0
        assert run["same_predictions_as_one_at_a_time"] == 8 and run["speed_up"] > 0 and run["peak_gpu_memory_mb"] is None
        assert n == "1" or "means 1 on cpu" in (tmp_path / "work" / "logs" / f"parallel-{n}.log").read_text()
    assert record["seconds_total"] > 0


def test_helpers():
    assert torch_version_ok("2.11.0+cu128") and torch_version_ok("2.14.1") and not torch_version_ok("2.10.1")
    assert slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    schema = {"properties": {"a": {"default": 1}, "b": {"default": {}, "properties": {"c": {"default": "x"}}}}}
    assert fill_defaults({"b": {}}, schema) == {"a": 1, "b": {"c": "x"}}
    assert fill_defaults({}, schema) == {"a": 1, "b": {"c": "x"}}


def test_the_parallel_summary_counts_the_folds_that_kept_their_predictions():
    metrics = [{"accuracy": 0.5, "n_train": 100, "epochs_run": 2, "parallel_folds": 2, "peak_gpu_memory_mb": 30.0},
               {"accuracy": 0.75, "n_train": 100, "epochs_run": 2, "parallel_folds": 2, "peak_gpu_memory_mb": 40.0}]
    summary = parallel_summary(metrics, 20.0, ["a", "b"], {"seconds": 30.0, "predictions": ["a", "c"]})
    assert summary["same_predictions_as_one_at_a_time"] == 1 and summary["speed_up"] == 1.5
    assert summary["images_per_second_together"] == 20.0 and summary["parallel_folds_used"] == [2]
    assert summary["seconds_per_fold"] == 10.0 and summary["peak_gpu_memory_mb"] == 40.0
