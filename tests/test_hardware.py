"""The hardware is detected, never assumed: bf16 only where it is native, and no silent CPU fallback
where a GPU was asked for (a SLURM job with GPUs, or training.device: cuda)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
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
    with pytest.raises(ValueError, match="one of auto, fp32, fp16, got 'fp8'"):
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
def test_a_run_told_to_use_cuda_stops_at_the_gpu_check_before_any_training_job(tmp_path, snakemake):
    """The real workflow: training.device cuda on a machine without a usable GPU. The one GPU
    check job (rule check_gpu) fails with the message, and no training job starts."""
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20, size=(32, 32))
    config = write_config(tmp_path / "config.yaml",
                          tiny_config(data, grid={"learning_rate": [0.001]}, training={"device": "cuda"}))
    work = tmp_path / "work"
    work.mkdir()
    result = snakemake(work, config, "--cores", "1", "--keep-going", "--retries", "2",
                       "results/cv_summary.tsv", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error in rule check_gpu" in output and "Error in rule train" not in output
    assert "Trying to restart job" not in output, output  # not retried (rule retries: 0)
    text = (work / "logs" / "results" / "gpu_check.log").read_text()
    # one error, no traceback: the message is the first thing in the log
    assert text.startswith("error: a GPU was asked for (training.device is 'cuda')"), text
    assert "Traceback" not in text and "make env TORCH_INDEX=" in text
    assert not list((work / "logs").rglob("fold~*.log")), "no training job ran"
    assert not list((work / "results").rglob("metrics.json"))


def test_auto_on_a_machine_without_gpu_passes_the_check_on_the_cpu(tmp_path, snakemake):
    """A laptop: training.device auto, no GPU, a local run. The rules' GPU request means nothing
    there (Snakemake ignores `gpu` locally): the check passes on the CPU and says so."""
    data = write_image_folder(tmp_path / "images", n_classes=3, per_class=20, size=(32, 32))
    config = write_config(tmp_path / "config.yaml",
                          tiny_config(data, grid={"learning_rate": [0.001]}, training={"device": "auto"}))
    work = tmp_path / "work"
    work.mkdir()
    snakemake(work, config, "--cores", "1", "results/gpu_check.json")
    record = json.loads((work / "results" / "gpu_check.json").read_text())
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert record["device"] == expected and record["gpus_requested"] == 1
    assert record["data_fits_on_device"] is True and record["images_bytes"] > 0
    assert record["slurm_job_id"] is None
    if expected == "cpu":
        log = (work / "logs" / "results" / "gpu_check.log").read_text()
        assert "training on the CPU" in log


# ------------------------------------------------------------------ precision by GPU generation
# No GPU here: the GPU's compute capability and torch's answers are faked (monkeypatch).
GPU = torch.device("cuda", 0)


def fake_gpu(monkeypatch, capability, native_bf16=None, has_argument=True):
    """A CUDA device of this compute capability; is_bf16_supported(including_emulation=False)
    answers `native_bf16` (default: what torch's own code answers, capability >= 8.0). Without
    the argument (an older torch) the call raises TypeError."""
    native = capability >= (8, 0) if native_bf16 is None else native_bf16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    if has_argument:
        def is_bf16_supported(including_emulation=True):
            return True if including_emulation else native  # emulation counts everything as bf16
    else:
        def is_bf16_supported():
            return True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)


@pytest.mark.parametrize(
    "capability, native, expected",
    [((7, 0), None, "fp16"), ((7, 5), None, "fp16"), ((8, 0), None, "bf16"), ((9, 0), None, "bf16"),
     ((8, 6), False, "fp16")],
    ids=["V100", "T4", "A100", "H100", "no-native-answer"],
)
def test_auto_on_a_gpu_takes_bf16_only_where_it_is_native(monkeypatch, capability, native, expected):
    fake_gpu(monkeypatch, capability, native)
    assert torch.cuda.is_bf16_supported()  # what the old code asked: True on every GPU here
    assert hardware.choose_precision(GPU, "auto") == expected
    assert hardware.choose_precision(GPU, "fp32") == "fp32"
    assert hardware.choose_precision(GPU, "fp16") == "fp16"


def test_a_torch_without_including_emulation_decides_by_the_capability(monkeypatch):
    fake_gpu(monkeypatch, (8, 0), has_argument=False)
    assert hardware.choose_precision(GPU, "auto") == "bf16"
    fake_gpu(monkeypatch, (7, 0), has_argument=False)
    assert hardware.choose_precision(GPU, "auto") == "fp16"


def test_fp16_is_refused_on_the_cpu():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        hardware.choose_precision(CPU, "fp16")


@pytest.fixture
def tf32_restored():
    """configure_tf32 sets torch's global switches: put them back after the test."""
    matmul, conv = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    yield
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = matmul, conv


@pytest.mark.parametrize(
    "capability, precision, expected",
    [((8, 0), "fp32", False), ((8, 0), "bf16", True), ((9, 0), "fp32", False), ((7, 0), "fp16", False),
     ((7, 0), "fp32", False)],
    ids=["A100-fp32", "A100-bf16", "H100-fp32", "V100-fp16", "V100-fp32"],
)
def test_tf32_is_decided_for_cudnn_and_matmul_and_recorded(monkeypatch, tf32_restored, capability, precision,
                                                           expected):
    fake_gpu(monkeypatch, capability)
    # torch's own default: cuDNN convolutions in TF32, i.e. "fp32" that is not IEEE fp32.
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = "none", "tf32"
    assert hardware.configure_tf32(GPU, precision) is expected
    mode = "tf32" if expected else "ieee"
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == (mode, mode)
    assert hardware.tf32_enabled() is expected


def test_tf32_is_left_alone_on_the_cpu(tf32_restored):
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    assert hardware.configure_tf32(CPU, "fp32") is False
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"  # not touched: nothing runs on cuDNN


# ------------------------------------------------------------------ a GPU request that cannot be lost
SLURM_CPU_JOB = {"SLURM_JOB_ID": "42", "SLURM_JOB_PARTITION": "cpu"}


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_slurm_job_whose_rule_asked_for_a_gpu_and_has_none_stops(device):
    with pytest.raises(hardware.CudaUnusable) as caught:
        hardware.training_device(device, environ=SLURM_CPU_JOB, gpus_requested=1)
    first = str(caught.value).splitlines()[0]
    assert first == ("the rule asked for 1 GPU(s) (resources: gpu), but SLURM job 42 (partition cpu) has none: "
                     "SLURM_JOB_GPUS=(unset), SLURM_STEP_GPUS=(unset), SLURM_GPUS_ON_NODE=(unset)")
    assert "Not falling back to the CPU" in str(caught.value)


def test_without_slurm_or_on_purpose_the_cpu_is_kept(caplog):
    with caplog.at_level("INFO", logger="cvgrid.hardware"):
        if not torch.cuda.is_available():  # a laptop: the rule's GPU means nothing outside SLURM
            assert hardware.training_device("auto", environ={}, gpus_requested=1) == CPU
            assert "training on the CPU" in caplog.text
    assert hardware.training_device("cpu", environ=SLURM_CPU_JOB, gpus_requested=1) == CPU
    # a profile that set gpu: 0 on purpose (a CPU cluster): no GPU asked, none needed
    if not torch.cuda.is_available():
        assert hardware.training_device("auto", environ=SLURM_CPU_JOB, gpus_requested=0) == CPU


@no_cuda_here
def test_the_gpu_check_records_the_job_step_and_refuses_a_lost_gpu(tmp_path):
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((10, 8, 8, 3), np.uint8))
    step = {"SLURM_JOB_ID": "7", "SLURM_JOB_PARTITION": "gpu", "SLURM_STEP_GPUS": "0", "CUDA_VISIBLE_DEVICES": "0"}
    record = hardware.gpu_check("cpu", "fp32", 1, images, environ=step)
    assert record["device"] == "cpu" and record["precision"] == "fp32" and record["tf32"] is False
    assert record["slurm_partition"] == "gpu" and record["slurm_gpu_allocation"] == "SLURM_STEP_GPUS=0"
    assert record["slurm_step_gpus"] == "0" and record["cuda_visible_devices"] == "0"
    assert record["images_bytes"] == images.stat().st_size and record["data_fits_on_device"] is True
    assert record["models_at_once"] == 1
    assert hardware.gpu_check("cpu", "fp32", 1, images, environ=step, models=4)["models_at_once"] == 4
    with pytest.raises(hardware.CudaUnusable, match="the rule asked for 1 GPU"):
        hardware.gpu_check("auto", "auto", 1, images, environ=SLURM_CPU_JOB)


# ------------------------------------------------------------------ where the job ran, free memory
def test_where_a_cpu_job_ran(monkeypatch):
    record = hardware.where_run(CPU, environ={"SLURM_JOB_ID": "9", "SLURM_JOB_PARTITION": "cpu"})
    assert record["hostname"] == socket.gethostname() and record["device"] == "cpu"
    assert record["slurm_job_id"] == "9" and record["slurm_partition"] == "cpu"
    assert "gpu" not in record
    assert hardware.where_run(CPU, environ={})["slurm_partition"] is None


def test_where_a_gpu_job_ran(monkeypatch, tmp_path, tf32_restored):
    from types import SimpleNamespace

    properties = SimpleNamespace(name="NVIDIA A100-SXM4-40GB", major=8, minor=0, total_memory=40 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: properties)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 1536 * 2**20)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\necho "550.54.15"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    fake_gpu(monkeypatch, (8, 0))
    hardware.configure_tf32(GPU, "bf16")
    record = hardware.where_run(GPU, environ={"SLURM_JOB_ID": "9", "SLURM_JOB_PARTITION": "gpu"})
    assert record["gpu"] == "NVIDIA A100-SXM4-40GB" and record["gpu_capability"] == "8.0"
    assert record["gpu_memory_mb"] == 40960 and record["peak_gpu_memory_mb"] == 1536.0
    assert record["driver"] == "550.54.15" and record["cudnn"] == 91000 and record["cuda"] == torch.version.cuda
    assert record["tf32"] is True and record["slurm_partition"] == "gpu"


@pytest.mark.parametrize("free_mb, fits", [(8000, True), (2100, False)], ids=["fits", "too-large"])
def test_the_data_array_is_checked_against_free_gpu_memory(monkeypatch, free_mb, fits):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_mb * 2**20, 16000 * 2**20))
    answer, figures = hardware.fits_on_device(1200 * 2**20, GPU)  # 40,000 images at 100 px
    assert answer is fits
    assert figures == (f"1200 MiB of data + 2048 MiB reserve {'fit in' if fits else 'do not fit in'} "
                       f"{free_mb} MiB free of 16000 MiB on cuda:0")
    assert hardware.fits_on_device(10**12, CPU)[0] is True  # in host memory already


def test_each_model_trained_at_once_gets_its_reserve_beside_the_shared_images(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8000 * 2**20, 16000 * 2**20))
    assert hardware.fits_on_device(1200 * 2**20, GPU, models=3)[0] is True  # 1200 + 3 x 2048 <= 8000
    answer, figures = hardware.fits_on_device(1200 * 2**20, GPU, models=4)  # 1200 + 4 x 2048 > 8000
    assert answer is False
    assert figures == ("1200 MiB of data + 8192 MiB reserve (4 models at once) do not fit in 8000 MiB free"
                       " of 16000 MiB on cuda:0")
