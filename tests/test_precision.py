"""precision=auto: bf16 on CUDA and on CPUs with native bf16 matrix units, fp32 on other CPUs."""

import pytest
import torch

import plumbing.precision as precision_mod
from plumbing import PrecisionError, autocast, cpu_has_native_bf16, resolve_precision


@pytest.fixture
def cpu_flags(monkeypatch):
    """Pretend to run on a CPU with the given /proc/cpuinfo flags (the tests' env pin removed)."""
    monkeypatch.delenv("IBOT_NATIVE_BF16", raising=False)
    monkeypatch.setattr(precision_mod.platform, "system", lambda: "Linux")

    def use(*flags: str) -> None:
        monkeypatch.setattr(precision_mod, "_cpuinfo_flags", lambda: frozenset(["fpu", "sse2", "avx2", *flags]))

    return use


@pytest.mark.parametrize(
    ("flags", "native"),
    [((), False), (("avx512f", "avx512bw"), False), (("avx512_bf16",), True), (("amx_bf16", "amx_tile"), True)],
)
def test_auto_follows_the_cpu(cpu_flags, flags, native):
    cpu_flags(*flags)
    assert cpu_has_native_bf16() is native
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"  # any CUDA device
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"


def test_environment_overrides_the_detection(cpu_flags, monkeypatch):
    cpu_flags("avx512_bf16")
    monkeypatch.setenv("IBOT_NATIVE_BF16", "0")
    assert resolve_precision("auto", "cpu") == "fp32"
    cpu_flags()
    monkeypatch.setenv("IBOT_NATIVE_BF16", "1")
    assert resolve_precision("auto", "cpu") == "bf16"


def test_autocast_runs_in_the_resolved_precision(cpu_flags):
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    cpu_flags("avx512_bf16")
    with autocast("cpu", "auto"):
        assert (a @ b).dtype == torch.bfloat16
    cpu_flags()
    with autocast("cpu", "auto"):
        assert (a @ b).dtype == torch.float32
    with autocast("cpu", "bf16"):  # asked for explicitly: bf16 on any CPU
        assert (a @ b).dtype == torch.bfloat16


def test_unknown_precision_is_refused():
    with pytest.raises(PrecisionError, match="auto, fp32, bf16"):
        resolve_precision("fp16", "cpu")
