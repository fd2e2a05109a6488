"""This project's training step against lightly 1.6's iBOT recipe, step by step in one process.

  python bench/vs_lightly.py        # prints one JSON line

Both steps are built on the same inputs and sizes (this project's from bench/pretrain_step.py,
lightly's from ../shared/tools/bench_lightly.py, or the file in env LIGHTLY_TOOL), then timed in
alternation: ours, lightly, lightly, ours, ... for STEPS pairs after one warm-up step each. Drift of
a shared machine then hits both alike, so the ratio of the two medians (and the median of the
per-pair ratios) is steadier than two separate runs. Same env as bench/pretrain_step.py; default
STEPS=10. CPU only: on a GPU use bench/pretrain_step.py and bench/lightly_step.py.
"""

import functools
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("STEPS", "10")
import pretrain_step as ours  # noqa: E402


def lightly_step():
    tool = Path(os.environ.get("LIGHTLY_TOOL", HERE.parents[1] / "shared" / "tools" / "bench_lightly.py"))
    if not tool.is_file():
        sys.exit(f"{tool}: not found; set LIGHTLY_TOOL to the path of bench_lightly.py")
    spec = importlib.util.spec_from_file_location("bench_lightly", tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.lightly_step()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    if torch.cuda.is_available():
        sys.exit("vs_lightly times the CPU; on a GPU run bench/pretrain_step.py and bench/lightly_step.py")
    run, batch = ours.setup()
    step_lightly = lightly_step()

    def step_ours():
        run.train_step(run.student, batch, 0)

    step_ours(), step_lightly(0)  # warm-up
    t_ours, t_lightly = [], []
    for i in range(ours.STEPS):
        theirs = functools.partial(step_lightly, i)
        first, second = (step_ours, theirs) if i % 2 == 0 else (theirs, step_ours)
        a, b = timed(first), timed(second)
        t_ours.append(a if i % 2 == 0 else b)
        t_lightly.append(b if i % 2 == 0 else a)
    med_ours, med_lightly = statistics.median(t_ours), statistics.median(t_lightly)
    pair = statistics.median(lo / us for us, lo in zip(t_ours, t_lightly, strict=True))
    print(json.dumps(dict(
        precision=ours.PRECISION, arch=ours.ARCH, batch=ours.B, local=ours.L, steps=ours.STEPS,
        ours_img_per_s=round(ours.B / med_ours, 3), lightly_img_per_s=round(ours.B / med_lightly, 3),
        ratio=round(med_lightly / med_ours, 3), pair_ratio_median=round(pair, 3),
        threads=torch.get_num_threads(),
    )))  # fmt: skip


if __name__ == "__main__":
    main()
