"""Precision is chosen by what the hardware has, never assumed: bf16 only where it is native."""

from __future__ import annotations

import pytest
import torch

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
