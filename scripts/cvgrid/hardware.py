"""What the training device can do, detected rather than assumed."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

# CPU flags that decide the precision; recorded in every metrics.json.
REPORTED_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
NATIVE_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


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
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


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
