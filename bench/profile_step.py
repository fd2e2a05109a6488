"""Profile one training step of bench/pretrain_step.py's setup (same env); prints the top ops."""

import os
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrain_step as ps  # noqa: E402


def main() -> None:
    run, batch = ps.setup()
    for _ in range(3):
        run.train_step(run.student, batch, 0)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        for _ in range(2):
            run.train_step(run.student, batch, 0)
    rows = int(os.environ.get("ROWS", 30))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=rows))
    if torch.cuda.is_available():  # and by device time
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows))


if __name__ == "__main__":
    main()
