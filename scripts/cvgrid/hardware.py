"""What the training device can do, detected rather than assumed."""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import torch

# CPU flags that decide the precision; recorded in every metrics.json.
REPORTED_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
NATIVE_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}

log = logging.getLogger(__name__)


def parse_cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of the first CPU in the text of /proc/cpuinfo (x86 Linux; none elsewhere)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_flags() -> set[str]:
    try:
        return parse_cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def select_device(requested: str = "auto") -> torch.device:
    """The device for a measurement (scripts/benchmark.py): CUDA when torch can use it. A training
    job chooses with `training_device`, which refuses to fall back to the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class CudaUnusable(RuntimeError):
    """A GPU was asked for (training.device: cuda, or a SLURM allocation with GPUs) and torch
    cannot use it. Raised at job start, before any data is loaded or any epoch is trained."""


# Set by SLURM in a job (and its steps) that was allocated GPUs: SLURM_JOB_GPUS / SLURM_STEP_GPUS
# are the GPU indices ("0", "0,1"), SLURM_GPUS_ON_NODE their number. CUDA_VISIBLE_DEVICES is not
# used as evidence: sbatch passes the submitting shell's environment on (--export=ALL), so a value
# exported on a login node would reach every CPU job too.
SLURM_GPU_VARIABLES = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")


def slurm_gpu_allocation(environ: Mapping[str, str] | None = None) -> str | None:
    """'NAME=value' of the variable showing that this process runs in a SLURM job with GPUs,
    None outside SLURM or in a job without GPUs."""
    environ = os.environ if environ is None else environ
    if not environ.get("SLURM_JOB_ID"):
        return None
    for name in SLURM_GPU_VARIABLES:
        value = environ.get(name, "").strip()
        if value and not (name == "SLURM_GPUS_ON_NODE" and value == "0"):
            return f"{name}={value}"
    return None


def nvidia_smi() -> str:
    """What nvidia-smi says about the driver and the GPUs, in one line per GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "nvidia-smi: not found on this node (no NVIDIA driver installed, or not on PATH)"
    query = [exe, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"]
    try:
        proc = subprocess.run(query, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nvidia-smi: failed ({error})"
    text = (proc.stdout or proc.stderr).strip() or f"exit status {proc.returncode}, no output"
    report = "nvidia-smi (name, driver, compute capability): " + "; ".join(text.splitlines())
    # The plain table's header names the newest CUDA the driver supports: the wheel to pick.
    try:
        header = subprocess.run([exe], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        header = ""
    supported = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return report + (f"; the driver supports CUDA up to {supported[1]}" if supported else "")


def cuda_unusable_message(requested: str, reason: str, allocation: str | None) -> str:
    why = f"training.device is {requested!r}"
    if allocation:
        why += f" inside a SLURM job with GPUs ({allocation})"
    build = (f"built for CUDA {torch.version.cuda}" if torch.version.cuda
             else "a CPU-only build (torch.version.cuda is None)")
    return "\n".join([
        f"a GPU was asked for ({why}), but torch cannot use it: {reason}",
        f"  torch {torch.__version__}, {build}",
        f"  {nvidia_smi()}",
        f"  CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}",
        "Not falling back to the CPU. What to do:",
        "  - on a GPU node, `nvidia-smi` prints the highest CUDA version its driver supports",
        "    ('CUDA Version: X.Y'); reinstall torch from the PyTorch wheel index for a CUDA",
        "    version not above it: make env TORCH_INDEX=https://download.pytorch.org/whl/cuXYZ",
        "    (README, 'Run on SLURM'); torch's wheels also need a GPU that the build supports",
        "  - or train on the CPU on purpose: training.device: cpu (and no GPU in the SLURM profile)",
    ])


def training_device(requested: str = "auto", environ: Mapping[str, str] | None = None) -> torch.device:
    """The device of a training job; never a silent CPU fallback where a GPU was asked for.

    'cpu': the CPU, even inside a GPU allocation (said in the log). 'cuda' or 'cuda:N': that GPU,
    or CudaUnusable. 'auto': inside a SLURM job with GPUs as 'cuda'; elsewhere CUDA when torch
    can use it, else the CPU. A GPU counts as usable once a small operation has run on it: a wheel
    built for a newer driver or without kernels for this GPU fails here, at job start."""
    if requested != "auto" and not (requested == "cpu" or requested.startswith("cuda")):
        raise ValueError(f"training device must be auto, cpu, cuda or cuda:N, got {requested!r}")
    allocation = slurm_gpu_allocation(environ)
    if requested == "cpu":
        if allocation:
            log.warning("training on the CPU as configured (training.device: cpu), inside a SLURM "
                        "job with GPUs (%s): the GPU stays idle", allocation)
        return torch.device("cpu")
    if requested == "auto" and not allocation:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device("cuda" if requested == "auto" else requested)
    if not torch.cuda.is_available():
        raise CudaUnusable(cuda_unusable_message(requested, "torch.cuda.is_available() is False", allocation))
    index = 0 if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise CudaUnusable(cuda_unusable_message(
            requested, f"{device} asked for, {torch.cuda.device_count()} GPU(s) visible", allocation))
    try:
        torch.ones(1, device=device).add_(1).item()
    except RuntimeError as error:  # e.g. "no kernel image is available for execution on the device"
        name = torch.cuda.get_device_name(index)
        raise CudaUnusable(cuda_unusable_message(
            requested, f"a test operation on {name} failed: {error}", allocation)) from error
    return device


def choose_precision(device: torch.device, requested: str = "auto") -> str:
    """'fp32', 'bf16' or 'fp16' (CUDA without bf16). bf16 on CPU only where it is native:
    emulated bf16 (AVX2-only CPUs) is several times slower than fp32."""
    if requested not in ("auto", "fp32"):
        raise ValueError(f"precision must be 'auto' or 'fp32', got {requested!r}")
    if requested == "fp32":
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_flags() & NATIVE_BF16_CPU_FLAGS else "fp32"


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def describe(device: torch.device) -> dict:
    info = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_flags": sorted(cpu_flags() & set(REPORTED_CPU_FLAGS)),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
