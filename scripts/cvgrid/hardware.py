"""What the training device can do, detected rather than assumed."""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import socket
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


def missing_allocation_message(gpus_requested: int, environ: Mapping[str, str]) -> str:
    variables = ", ".join(f"{name}={environ.get(name, '(unset)')}" for name in SLURM_GPU_VARIABLES)
    return "\n".join([
        f"the rule asked for {gpus_requested} GPU(s) (resources: gpu), but SLURM job "
        f"{environ.get('SLURM_JOB_ID')} (partition {environ.get('SLURM_JOB_PARTITION', '?')}) has none: {variables}",
        "Not falling back to the CPU. What to do:",
        "  - the job was submitted without a GPU: check the sbatch line of the job's SLURM log (--gpus or",
        "    --gres) and the partition file of your site profile (a partition with max_gpu > 0)",
        "  - or train on the CPU on purpose: training.device: cpu",
    ])


def training_device(requested: str = "auto", environ: Mapping[str, str] | None = None,
                    gpus_requested: int = 0) -> torch.device:
    """The device of a training job; never a silent CPU fallback where a GPU was asked for.

    'cpu': the CPU, even inside a GPU allocation (said in the log). 'cuda' or 'cuda:N': that GPU,
    or CudaUnusable. 'auto': inside a SLURM job with GPUs as 'cuda'; elsewhere CUDA when torch
    can use it, else the CPU. A GPU counts as usable once a small operation has run on it: a wheel
    built for a newer driver or without kernels for this GPU fails here, at job start.

    `gpus_requested`: the GPUs the job's rule asked for (its `resources: gpu`). Inside a SLURM
    job that has no GPU, a request > 0 is CudaUnusable (unless training.device is cpu): the
    request was lost on the way (profile, partition), and the job must not train on the CPU
    for hours. Outside SLURM it means nothing: Snakemake ignores `gpu` in local runs, and a
    laptop without a GPU trains on its CPU (said in the log)."""
    if requested != "auto" and not (requested == "cpu" or requested.startswith("cuda")):
        raise ValueError(f"training device must be auto, cpu, cuda or cuda:N, got {requested!r}")
    environ = os.environ if environ is None else environ
    allocation = slurm_gpu_allocation(environ)
    if requested != "cpu" and gpus_requested > 0 and environ.get("SLURM_JOB_ID") and not allocation:
        raise CudaUnusable(missing_allocation_message(gpus_requested, environ))
    if requested == "cpu":
        if allocation:
            log.warning("training on the CPU as configured (training.device: cpu), inside a SLURM "
                        "job with GPUs (%s): the GPU stays idle", allocation)
        return torch.device("cpu")
    if requested == "auto" and not allocation:
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.info("no GPU that torch can use here (training.device: auto, not in a SLURM GPU job): "
                 "training on the CPU")
        return torch.device("cpu")
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


# Compute capability from which a GPU computes bf16 natively (Ampere, sm_80). Older GPUs (V100
# 7.0, T4 7.5) "support" bf16 only by emulation, with slow convolution fallbacks: fp16 there.
NATIVE_BF16_CAPABILITY = (8, 0)
# TF32 (tensor-core fp32 with a 10-bit mantissa) exists from the same generation on.
TF32_CAPABILITY = (8, 0)
PRECISIONS = ("auto", "fp32", "fp16")


def cuda_capability(device: torch.device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))


def native_cuda_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bf16 in hardware, not by emulation (torch.cuda.is_bf16_supported()
    alone says True on a V100 or T4)."""
    if cuda_capability(device) < NATIVE_BF16_CAPABILITY:
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the argument: the capability decides
        return True


def choose_precision(device: torch.device, requested: str = "auto") -> str:
    """'fp32', 'bf16' or 'fp16'. auto: on CUDA bf16 where the GPU has it natively (compute
    capability 8.0 or newer), else fp16 (training then uses the gradient scaler); on the CPU
    bf16 only where it is native (emulated bf16 on AVX2-only CPUs is several times slower than
    fp32), else fp32. fp16 (a CUDA device only) and fp32 are taken as asked."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device, the device is {device}: use auto or fp32")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if native_cuda_bf16(device) else "fp16"
    return "bf16" if cpu_flags() & NATIVE_BF16_CPU_FLAGS else "fp32"


def _set_tf32(enabled: bool) -> None:
    value = "tf32" if enabled else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9; allow_tf32 is deprecated there
        torch.backends.cuda.matmul.fp32_precision = value
        torch.backends.cudnn.conv.fp32_precision = value
    else:
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def configure_tf32(device: torch.device, precision: str) -> bool:
    """Decide TF32 for the fp32 matmuls and convolutions (cuDNN) of a CUDA job, and return it.

    precision fp32 means IEEE fp32 everywhere: TF32 off (torch's own default would run cuDNN
    convolutions in TF32 on Ampere and newer, fp32 in name only). With bf16 or fp16 autocast the
    heavy operations already run in 16 bits; the few fp32 operations left may use TF32 on GPUs
    that have it. Never on a CPU or a GPU older than Ampere (nothing to decide there)."""
    enabled = (device.type == "cuda" and precision != "fp32"
               and cuda_capability(device) >= TF32_CAPABILITY)
    if device.type == "cuda":
        _set_tf32(enabled)
    return enabled


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
        info["tf32"] = tf32_enabled()
    return info


def tf32_enabled() -> bool:
    """Whether fp32 matmuls or cuDNN convolutions may run in TF32 now (as configure_tf32 left it)."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return "tf32" in (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    return bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)


def nvidia_driver() -> str | None:
    """The NVIDIA driver version (nvidia-smi), None where there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.strip().splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else None


def where_run(device: torch.device, environ: Mapping[str, str] | None = None) -> dict:
    """Where a job ran, for its metrics.json: host, SLURM job and partition, and on a GPU its name,
    compute capability, driver, CUDA and cuDNN versions, TF32 and peak memory (what torch
    allocated since the job started or the last reset_peak_memory)."""
    environ = os.environ if environ is None else environ
    record = {
        "hostname": socket.gethostname(),
        "slurm_job_id": environ.get("SLURM_JOB_ID"),
        "slurm_partition": environ.get("SLURM_JOB_PARTITION"),
        "device": str(device),
        "torch": torch.__version__,
    }
    if device.type != "cuda":
        return record
    properties = torch.cuda.get_device_properties(device)
    return record | {
        "gpu": properties.name,
        "gpu_capability": f"{properties.major}.{properties.minor}",
        "gpu_memory_mb": round(properties.total_memory / 2**20),
        "driver": nvidia_driver(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32": tf32_enabled(),
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
    }


# Left free beside the data array: the model, its activations and cuDNN's workspace. The
# reference models need well under 1 GiB at the default batch sizes.
DEVICE_MEMORY_RESERVE = 2 * 2**30


def fits_on_device(nbytes: int, device: torch.device, models: int = 1) -> tuple[bool, str]:
    """Whether an array of `nbytes` fits in the free memory of `device` with a reserve left for
    each of the `models` that train on it at the same time (parallel folds share the one array),
    and the figures that decided it (for the log). The CPU: always (the array is in host memory
    already)."""
    if device.type != "cuda":
        return True, f"{nbytes / 2**20:.0f} MiB on the CPU"
    free, total = torch.cuda.mem_get_info(device)
    reserve = models * DEVICE_MEMORY_RESERVE
    fits = nbytes + reserve <= free
    each = f" ({models} models at once)" if models > 1 else ""
    return fits, (f"{nbytes / 2**20:.0f} MiB of data + {reserve / 2**20:.0f} MiB reserve{each} "
                  f"{'fit in' if fits else 'do not fit in'} {free / 2**20:.0f} MiB free of "
                  f"{total / 2**20:.0f} MiB on {device}")



def gpu_check(requested: str, precision: str, gpus_requested: int, images_path: Path,
              environ: Mapping[str, str] | None = None, models: int = 1) -> dict:
    """The check that one small job runs before any training job (rule check_gpu): the device a
    training job of this config would get, with its precision, its TF32 and whether the data
    array fits beside training; what torch, nvidia-smi and SLURM say. Raises CudaUnusable, which
    fails the job, and with it the run, before a training job is queued."""
    environ = os.environ if environ is None else environ
    device = training_device(requested, environ, gpus_requested)
    chosen = choose_precision(device, precision)
    tf32 = configure_tf32(device, chosen)
    nbytes = Path(images_path).stat().st_size  # uint8 .npy: the bytes the array takes on the device
    fits, memory = fits_on_device(nbytes, device, models=models)
    record = {
        **where_run(device, environ),
        "precision": chosen,
        "precision_requested": precision,
        "tf32": tf32,
        "gpus_requested": gpus_requested,
        # What the job step sees of its allocation (SLURM sets these in the step).
        "slurm_gpu_allocation": slurm_gpu_allocation(environ),
        "slurm_step_gpus": environ.get("SLURM_STEP_GPUS"),
        "cuda_visible_devices": environ.get("CUDA_VISIBLE_DEVICES"),
        "nvidia_smi": nvidia_smi(),
        "images_bytes": nbytes,
        "models_at_once": models,
        "data_fits_on_device": fits,
        "memory": memory,
    }
    # An array that does not fit is no failure: the training jobs keep it in pinned host memory
    # and move it batch by batch (cvgrid.training.HostBatches); the record and the log say so.
    return record
