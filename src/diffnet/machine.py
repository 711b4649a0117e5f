"""The machine a measurement ran on: every timing this package reports names it."""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path

# The instruction sets that decide torch's CPU kernel speed (bf16 is emulated without avx512_bf16/amx).
VECTOR_EXTENSIONS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo(key: str) -> str | None:
    """The first value of ``key`` in /proc/cpuinfo (Linux), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def cpu_description() -> str:
    """CPU model, core count and vector extensions, e.g. 'AMD EPYC 7B13 (2 cores; avx2)' (Linux)."""
    flags = cpu_flags()
    extensions = ", ".join(f for f in VECTOR_EXTENSIONS if f in flags) or "no AVX2"
    return f"{cpu_model()} ({os.cpu_count()} cores; {extensions})"


def native_bf16() -> bool:
    """Whether bf16 matrix kernels run natively; elsewhere torch emulates them (slower, and more memory)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def bf16_or_warn(requested: str, what: str) -> str:
    """``requested`` unchanged, with one warning line when it is bfloat16 on a CPU that emulates bf16."""
    if requested == "bfloat16" and not native_bf16():
        warnings.warn(f"{what} bfloat16: this CPU has no native bf16 kernels (avx512_bf16 or AMX), so torch "
                      "emulates them: expect it slower than float32", stacklevel=3)
    return requested
