"""Numeric precision, the same rule in every command.

`precision` is `auto`, `fp32` or `bf16`. `auto` is bf16 on CUDA and on CPUs with native bf16 matrix
instructions (AMX or AVX512-BF16), fp32 on other CPUs: there bf16 autocast is emulated and a ViT step
runs about 2.7x slower than in fp32. `bf16` asks for bf16 autocast on any device; `fp32` for none.
The environment variable IBOT_NATIVE_BF16=0/1 overrides the CPU detection (tests pin it).
"""

from __future__ import annotations

import contextlib
import os
import platform
from functools import cache

import torch

from .errors import PrecisionError

PRECISIONS = ("auto", "fp32", "bf16")
_NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@cache
def _cpuinfo_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 matrices natively (x86 AMX / AVX512-BF16; Apple arm64)."""
    forced = os.environ.get("IBOT_NATIVE_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if platform.machine() == "arm64" and platform.system() == "Darwin":
        return True
    return any(flag in _cpuinfo_flags() for flag in _NATIVE_BF16_FLAGS)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """`auto` -> `bf16` on CUDA or a CPU with native bf16, else `fp32`; explicit values pass through."""
    check_precision(precision)
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    return "bf16" if kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16()) else "fp32"


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when `precision` resolves to bf16; nothing otherwise."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
