"""Time one full iBOT training step of this project (student forward + backward on 2 global + L local
crops, teacher forward, loss, optimizer, EMA), on the inputs and sizes of ../shared/tools/bench_lightly.py.

  python bench/pretrain_step.py          # prints one JSON line

Env: ARCH (vit_small), BATCH (4), LOCAL (4), STEPS (5), GSIZE (224), LSIZE (96), OUT_DIM (8192),
PRECISION (fp32 | bf16), COMPILE (0 | 1: torch.compile the backbones). Runs on CUDA when there is a
GPU, and then also reports the step's matrix FLOPs (counted by torch's FlopCounterMode over one step,
forward + backward), the achieved TFLOP/s and MFU against PEAK_TFLOPS (default: the dense peak of an
H100/H200 in that precision, 989 bf16 / 67 fp32), and the peak GPU memory.
Run lightly's recipe right after it for a ratio measured in one session:
  python ../shared/tools/bench_lightly.py lightly     (CPU)
  python bench/lightly_step.py                        (CPU or GPU: the same recipe on the device)
"""

import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pretrain import (  # noqa: E402
    TrainConfig,
    TrainingRun,  # noqa: E402
    ema_pairs,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import device_columns  # noqa: E402

ARCH = os.environ.get("ARCH", "vit_small")
B, L = int(os.environ.get("BATCH", 4)), int(os.environ.get("LOCAL", 4))
STEPS, G, LS = int(os.environ.get("STEPS", 5)), int(os.environ.get("GSIZE", 224)), int(os.environ.get("LSIZE", 96))
OUT_DIM = int(os.environ.get("OUT_DIM", 8192))
PRECISION = os.environ.get("PRECISION", "fp32")
COMPILE = os.environ.get("COMPILE", "0") == "1"


def inputs(grid: int):
    """The same tensors as bench_lightly.py: 2 global crops, L local crops, 2 masks (30% random)."""
    g = torch.Generator().manual_seed(0)
    glob = [torch.randn(B, 3, G, G, generator=g) for _ in range(2)]
    loc = [torch.randn(B, 3, LS, LS, generator=g) for _ in range(L)]
    masks = [torch.rand(B, grid, grid, generator=g) < 0.3 for _ in range(2)]
    return glob + loc, masks


def setup():
    """The run (models, optimizer, schedules) and one batch of fixed tensors."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(B):  # Run checks its data folder; the step itself gets the tensors above
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f"{tmp}/{i}.png")
        cfg = TrainConfig(arch=ARCH, data_path=tmp, output_dir=tmp, batch_size_per_gpu=B, local_crops_number=L,
                          global_crop_size=G, local_crop_size=LS, out_dim=OUT_DIM, patch_out_dim=OUT_DIM,
                          precision=PRECISION, epochs=1, warmup_epochs=0, warmup_teacher_temp_epochs=1,
                          freeze_last_layer=0, num_workers=0, compile=COMPILE)  # fmt: skip
        run = TrainingRun(cfg)
    run.pairs = ema_pairs(run.student, run.teacher)
    crops, masks = inputs(G // cfg.patch_size)  # on the device already, as in bench/lightly_step.py
    return run, ([c.to(run.device) for c in crops], [m.to(run.device) for m in masks])


def main() -> None:
    run, batch = setup()
    cuda = run.device.type == "cuda"
    times = []
    for _ in range(STEPS + (3 if COMPILE else 1)):
        t = time.perf_counter()
        run.train_step(run.student, batch, 0)  # returns host floats: the device is synchronised
        times.append(time.perf_counter() - t)
    dt = statistics.median(times[3 if COMPILE else 1 :])  # warm-up steps (and compilation) excluded
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    impl = "ibot-suite" + ("+compile" if COMPILE else "")
    row = dict(impl=impl, precision=PRECISION, arch=ARCH, batch=B, local=L, img_per_s=round(B / dt, 3),
               step_s_median=round(dt, 3), peak_rss_mb=round(rss), threads=torch.get_num_threads())  # fmt: skip
    row.update(device_columns(lambda: run.train_step(run.student, batch, 0), dt, PRECISION, cuda))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
