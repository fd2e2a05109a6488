"""The work of `python -m detection.eval`: `run_eval(cfg) -> results` loads a detector file and scores it
with COCOeval on a val split (sharded under torchrun)."""

from __future__ import annotations

from typing import Any

from plumbing import DatasetError, init_distributed, resolve_precision

from .config import DetectorEvalConfig
from .data import CocoInstances
from .inference import evaluate
from .store import load_detector


def run_eval(cfg: DetectorEvalConfig) -> dict[str, Any]:
    """Load the detector named by `cfg.detector` and evaluate it on the val split; returns the results dict."""
    _, _, device = init_distributed(cfg.device)
    model, meta = load_detector(cfg.detector, precision=resolve_precision(cfg.precision, device))
    images, annotations = cfg.val_split(meta["config"])
    val = CocoInstances(images, annotations, max_images=cfg.max_val_images)
    if list(val.cat_ids) != list(meta["cat_ids"]):
        raise DatasetError(
            f"{annotations}: category ids {val.cat_ids[:10]} differ from the detector's {meta['cat_ids'][:10]}"
        )
    model.to(device)
    metrics = evaluate(model, val, device, cfg.output_dir, cfg.batch_size_per_gpu, cfg.num_workers, cfg.progress)
    return {"metrics": metrics, "detector": str(cfg.detector), "epoch": meta.get("epoch"), "arch": meta["arch"]}
