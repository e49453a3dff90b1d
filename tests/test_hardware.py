"""Precision is chosen by what the hardware has, never assumed: bf16 only where it is native."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cvgrid import hardware

CPU = torch.device("cpu")


def test_the_cpu_flags_are_read_from_proc_cpuinfo():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags_line = next((line for line in text.splitlines() if line.startswith("flags")), None)
    expected = set(flags_line.split(":", 1)[1].split()) if flags_line else set()
    assert hardware.cpu_flags() == expected


def test_auto_on_this_cpu_is_bf16_exactly_when_the_cpu_has_native_bf16():
    native = bool({"avx512_bf16", "amx_bf16"} & hardware.cpu_flags())
    assert hardware.choose_precision(CPU, "auto") == ("bf16" if native else "fp32")


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


def test_describe_names_the_device_and_the_flags_that_decide():
    info = hardware.describe(CPU)
    assert info["device"] == "cpu" and info["threads"] >= 1
    assert set(info["cpu_flags"]) <= set(hardware.REPORTED_CPU_FLAGS)
    assert set(info["cpu_flags"]) == hardware.cpu_flags() & set(hardware.REPORTED_CPU_FLAGS)
