"""Device, FLOP and MFU columns shared by bench/pretrain_step.py and bench/lightly_step.py."""

import os

import torch

DENSE_PEAK_TFLOPS = {"bf16": 989.4, "fp32": 66.9}  # H100 / H200 SXM datasheet, dense


def step_flops(step) -> float:
    """Matrix FLOPs of one call of `step` (matmuls, convolutions, attention; forward and backward), or the
    env STEP_TFLOP x 1e12 when given (a compiled step is not counted: pass the eager step's count)."""
    given = os.environ.get("STEP_TFLOP")
    if given:
        return float(given) * 1e12
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def device_columns(step, seconds: float, precision: str, cuda: bool) -> dict:
    """On CUDA (or with env FLOPS=1 on the CPU): device name, peak GPU memory, the step's TFLOP, the
    achieved TFLOP/s and MFU against env PEAK_TFLOPS (default: the dense peak in that precision)."""
    if not (cuda or os.environ.get("FLOPS") == "1"):
        return {}
    flops = step_flops(step)
    peak = float(os.environ.get("PEAK_TFLOPS", DENSE_PEAK_TFLOPS[precision]))
    return dict(device=torch.cuda.get_device_name() if cuda else "cpu",
                peak_gpu_mb=round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
                step_tflop=round(flops / 1e12, 3), tflops=round(flops / seconds / 1e12, 1),
                mfu=round(flops / seconds / 1e12 / peak, 4), peak_tflops=peak)  # fmt: skip
