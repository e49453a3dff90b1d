"""The hardware is detected, never assumed: bf16 only where it is native, and no silent CPU fallback
where a GPU was asked for (a SLURM job with GPUs, or training.device: cuda)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, write_config, write_image_folder
from cvgrid import hardware

CPU = torch.device("cpu")

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16
"""


def test_the_cpu_flags_are_the_flags_line_of_proc_cpuinfo():
    assert hardware.parse_cpu_flags(CPUINFO) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"}
    assert hardware.parse_cpu_flags("processor : 0\nFeatures : fp asimd\n") == set()  # e.g. ARM: no flags line
    assert isinstance(hardware.cpu_flags(), set)  # this machine's, read without error


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "fma"}, "fp32"), ({"avx2", "avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16", "amx_tile"}, "bf16")],
    ids=["avx2-only", "avx512-bf16", "amx"],
)
def test_auto_picks_by_the_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: set(flags))
    assert hardware.choose_precision(CPU, "auto") == expected
    assert hardware.choose_precision(CPU, "fp32") == "fp32"  # the config switch always wins


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="'fp8'"):
        hardware.choose_precision(CPU, "fp8")


def test_describe_names_the_device_and_the_flags_that_decide(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"fpu", "avx2", "amx_bf16", "amx_tile"})
    info = hardware.describe(CPU)
    assert info["device"] == "cpu" and info["threads"] >= 1
    assert info["cpu_flags"] == ["amx_bf16", "amx_tile", "avx2"]  # the ones that decide, sorted


# ------------------------------------------------------------------ no silent CPU fallback
# This machine has no GPU: "inside a SLURM job with GPUs" is simulated with the variables SLURM
# sets there (the values of `sbatch --gpus=1` on the test cluster of tests/slurm/start.sh).
SLURM_GPU_JOB = {"SLURM_JOB_ID": "42", "SLURM_JOB_GPUS": "0", "SLURM_GPUS_ON_NODE": "1"}
no_cuda_here = pytest.mark.skipif(torch.cuda.is_available(), reason="torch can use a GPU on this machine")


@pytest.mark.parametrize(
    "environ, expected",
    [
        (SLURM_GPU_JOB, "SLURM_JOB_GPUS=0"),
        ({"SLURM_JOB_ID": "42", "SLURM_STEP_GPUS": "1,3"}, "SLURM_STEP_GPUS=1,3"),
        ({"SLURM_JOB_ID": "42", "SLURM_GPUS_ON_NODE": "2"}, "SLURM_GPUS_ON_NODE=2"),
        ({"SLURM_JOB_ID": "42", "SLURM_GPUS_ON_NODE": "0"}, None),  # a CPU job
        ({"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0"}, None),  # inherited from the login shell
        ({"SLURM_JOB_GPUS": "0"}, None),  # not in a SLURM job: a leftover variable
        ({}, None),
    ],
    ids=["job-gpus", "step-gpus", "gpus-on-node", "cpu-job", "cuda-visible-only", "no-job", "nothing"],
)
def test_a_slurm_gpu_allocation_is_told_by_slurms_variables(environ, expected):
    assert hardware.slurm_gpu_allocation(environ) == expected


@no_cuda_here
def test_a_gpu_job_without_usable_cuda_stops_with_what_to_do(monkeypatch):
    for name, value in SLURM_GPU_JOB.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(hardware.CudaUnusable) as caught:
        hardware.training_device("auto")
    message = str(caught.value)
    assert "SLURM job with GPUs (SLURM_JOB_GPUS=0)" in message
    assert "torch.cuda.is_available() is False" in message
    assert f"torch {torch.__version__}" in message
    assert (f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build") in message
    assert "nvidia-smi" in message and "Not falling back to the CPU" in message
    assert "make env TORCH_INDEX=https://download.pytorch.org/whl/cu" in message
    # Asked for by name, outside SLURM too.
    monkeypatch.delenv("SLURM_JOB_ID")
    with pytest.raises(hardware.CudaUnusable, match="training.device is 'cuda'"):
        hardware.training_device("cuda")


@no_cuda_here
def test_the_driver_and_the_gpu_that_nvidia_smi_reports_are_named(monkeypatch, tmp_path):
    # nvidia-smi as on a node whose driver is too old for the wheel (the real one is not here).
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n"
                    'if [ $# -gt 0 ]; then echo "Tesla V100-SXM2-32GB, 470.82.01, 7.0"; exit; fi\n'
                    'echo "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(hardware.CudaUnusable) as caught:
        hardware.training_device("cuda", environ={})
    assert ("(name, driver, compute capability): Tesla V100-SXM2-32GB, 470.82.01, 7.0; "
            "the driver supports CUDA up to 11.4") in str(caught.value)
    # Without nvidia-smi the message says so instead.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "nvidia-smi: not found on this node" in hardware.nvidia_smi()


def test_cpu_on_purpose_is_kept_inside_a_gpu_allocation_and_said(caplog):
    with caplog.at_level("WARNING", logger="cvgrid.hardware"):
        assert hardware.training_device("cpu", environ=SLURM_GPU_JOB) == CPU
    assert "training on the CPU as configured (training.device: cpu)" in caplog.text
    assert "SLURM_JOB_GPUS=0" in caplog.text


def test_auto_outside_a_gpu_allocation_takes_cuda_only_where_torch_can_use_it():
    expected = torch.device("cuda") if torch.cuda.is_available() else CPU
    assert hardware.training_device("auto", environ={"SLURM_JOB_ID": "42"}) == expected


def test_an_unknown_device_is_refused():
    with pytest.raises(ValueError, match="'gpu'"):
        hardware.training_device("gpu")


@no_cuda_here
def test_a_training_job_told_to_use_cuda_fails_at_once_with_the_message(tmp_path, snakemake):
    """The real workflow: training.device cuda on a machine without a usable GPU. The training
    job stops before it loads the data or trains an epoch, and its log says what to do."""
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20, size=(32, 32))
    config = write_config(tmp_path / "config.yaml",
                          tiny_config(data, grid={"learning_rate": [0.001]}, training={"device": "cuda"}))
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, config, "--cores", "1", "--keep-going", "results/cv_summary.tsv", check=False)
    assert result.returncode != 0
    assert "Error in rule train" in result.stdout + result.stderr
    logs = sorted((work / "logs").rglob("fold~*.log"))
    assert len(logs) == 2, logs  # both folds ran and stopped
    for log_file in logs:
        text = log_file.read_text()
        # one error, no traceback: the message is the first thing in the log
        assert text.startswith("error: a GPU was asked for (training.device is 'cuda')"), text
        assert "Traceback" not in text
        assert "make env TORCH_INDEX=" in text
        assert " on cuda" not in text and "epoch" not in text.lower(), text  # nothing trained
    assert not (work / "results" / "checkpoints").exists()
    assert not list((work / "results").rglob("metrics.json"))
