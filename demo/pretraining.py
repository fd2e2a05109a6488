"""The live pre-training stage: time the step, size the cosine schedule to the budget, train with the
progress bar and the online k-NN monitor, and export the same architecture at random initialisation.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from evalkit import KNNMonitor
from plumbing import parse_config
from pretrain import TrainConfig, TrainingRun, ema_pairs, export_backbone, train

from .schedule import size_schedule

log = logging.getLogger("demo")
TIMED_STEPS = 8  # steps timed after one untimed warm-up step (past the loader's prefetched batches)
EPOCH_OVERHEAD_S = 0.5  # per epoch beyond the first batch's wait: the checkpoint write, the bar
FINISH_S = 3.0  # the final export and results, kept out of the schedule's budget
SAFETY = 0.95  # the schedule plans for this share of the budget (the machine's speed drifts)


class ProgressMonitor:
    """The online k-NN monitor (evalkit.KNNMonitor) that also prints each point beside random init."""

    def __init__(self, knn: KNNMonitor, every: int, baseline: float, epochs: int):
        self.knn, self.every, self.baseline, self.epochs = knn, every, baseline, epochs
        self.points: list[tuple[int, float]] = []  # (epoch, top-1 %)

    def __call__(self, backbone: nn.Module) -> float:
        top1 = self.knn(backbone)
        epoch = self.every * (len(self.points) + 1)  # the loop calls it after every `every`-th epoch
        self.points.append((epoch, top1))
        tqdm.write(f"epoch {epoch}/{self.epochs}: online k-NN top-1 {top1:.2f}% "
                   f"(random init {self.baseline:.2f}%, {top1 - self.baseline:+.2f})")  # fmt: skip
        return top1


def recipe_config(recipe: Path, world: Path, out: Path, overrides: dict, seed: int, device: str) -> TrainConfig:
    """The live run's TrainConfig: the recipe, the world's training images, the demo's overrides."""
    args = ["--config", str(recipe), f"data_path={world / 'classification' / 'train'}", f"output_dir={out}",
            f"seed={seed}", f"device={device}", "resume=false"]  # fmt: skip
    args += [f"{k}={v}" for k, v in overrides.items()]
    return parse_config(TrainConfig, args)


def time_steps(run: TrainingRun, steps: int = TIMED_STEPS) -> dict[str, float]:
    """Seconds per training step (median of `steps` after a warm-up step, data loading included) and
    the wait for an epoch's first batch (the loader restarts every epoch). Trains `run`'s models."""
    run.pairs = ema_pairs(run.student, run.teacher)  # what the loop sets before its first step
    n = min(steps + 1, run.iters)
    start = time.perf_counter()
    batches = iter(run.loader())
    first_batch_s, times = 0.0, []
    for i in range(n):
        t = time.perf_counter()
        batch, _ = next(batches)
        if i == 0:
            first_batch_s = time.perf_counter() - start
        run.train_step(run.student, batch, i)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times[1:]) if n > 1 else times[0]
    return {"step_s": step_s, "first_batch_s": first_batch_s, "timed_steps": max(n - 1, 1)}


def live_pretraining(cfg: TrainConfig, classification: Path, random_init: Path, minutes: float) -> dict:
    """Pre-train the live model within `minutes` (timing included); returns the run's results, the
    schedule and the monitor's curve. Also exports the live run's own initialisation to `random_init`."""
    start = time.time()
    size = cfg.global_crop_size
    run = TrainingRun(cfg)  # the live run's exact initialisation (same seed), timed here, then dropped
    random_init.parent.mkdir(parents=True, exist_ok=True)
    export_backbone(run.teacher.backbone, random_init, head=run.teacher.head, meta={"epoch": 0, "random_init": True})
    knn = KNNMonitor(str(classification), every=1, image_size=size, device=cfg.device)
    t = time.perf_counter()
    baseline = knn(run.teacher.backbone)
    knn_s = time.perf_counter() - t
    timing = time_steps(run)
    iters = run.iters
    del run
    budget = 60 * minutes - (time.time() - start) - FINISH_S
    if budget <= 0:
        raise RuntimeError(f"minutes={minutes} leaves no time to train after timing the step ({timing})")
    sched = size_schedule(SAFETY * budget, timing["step_s"], iters, timing["first_batch_s"] + EPOCH_OVERHEAD_S, knn_s)
    warmup = min(cfg.warmup_epochs, sched.epochs // 4)
    cfg = dataclasses.replace(cfg, epochs=sched.epochs, warmup_epochs=warmup, time_limit_min=budget / 60,
                              warmup_teacher_temp_epochs=min(cfg.warmup_teacher_temp_epochs, sched.epochs))  # fmt: skip
    print(f"pre-training: {timing['step_s']:.2f} s/step, {iters} steps/epoch, k-NN {knn_s:.1f} s -> "
          f"{sched.epochs} epochs (k-NN every {sched.every}) planned in {sched.planned_s / 60:.1f} of "
          f"{budget / 60:.1f} min; random init k-NN top-1 {baseline:.2f}%", flush=True)  # fmt: skip
    monitor = ProgressMonitor(knn, sched.every, baseline, sched.epochs)
    torch.manual_seed(cfg.seed)
    res = train(cfg, monitor=monitor)
    return {
        **res,
        "schedule": dataclasses.asdict(sched),
        "timing": {**timing, "knn_s": knn_s},
        "knn_random_init": baseline,
        "knn_curve": monitor.points,
        "stage_minutes": (time.time() - start) / 60,
    }
