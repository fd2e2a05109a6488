"""The work of `python -m pretrain`: `train(cfg)` runs (or resumes) one pre-training run.

The command (`pretrain/__main__.py`) parses and checks the config first and imports this module (and
so torch) afterwards; Python code calls `pretrain.train(cfg)` directly.
"""

from __future__ import annotations

from plumbing import cpu_threads, shutdown_distributed

from .config import TrainConfig
from .training.loop import Monitor, TrainingRun


def train(cfg: TrainConfig, monitor: Monitor | None = None) -> dict:
    """Run (or resume) pre-training; returns the results dict also written to results.json.

    `monitor` (optional): called on the teacher backbone every `monitor.every` epochs; its top-1 goes to
    `knn.jsonl` and TensorBoard (`monitor/knn_top1`).
    """
    try:
        run = TrainingRun(cfg, monitor)
        with cpu_threads(cfg.threads, cfg.num_workers, str(run.device)):
            return run.run()
    finally:
        shutdown_distributed()
