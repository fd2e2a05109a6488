"""`python -m detection.eval checkpoint=detector.pth [val_images=DIR val_annotations=JSON] ...`

Evaluates a detector written by `python -m detection` (detector.pth or checkpoint.pth) with COCOeval,
bbox and segm; by default on the val split named in the file's config. Writes config.yaml,
{bbox,segm}_results.json and results.json into output_dir. Runs under torchrun too (sharded).
"""

from __future__ import annotations

import sys
from typing import Any

from pretrain import DatasetError

from .config import EvalConfig
from .data import CocoInstances
from .evaluate import evaluate
from .runtime import run_entry, setup, use_bf16
from .store import load_detector


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Load the detector, evaluate it on the val split; returns the results dict."""
    if not cfg.checkpoint:
        raise FileNotFoundError("no detector given: set checkpoint=PATH (detector.pth from python -m detection)")
    _, _, device = setup(cfg.device)
    model, meta = load_detector(cfg.checkpoint, bf16=use_bf16(device, cfg.precision))
    images = cfg.val_images or meta["config"]["val_images"]
    annotations = cfg.val_annotations or meta["config"]["val_annotations"]
    val = CocoInstances(images, annotations, max_images=cfg.max_val_images)
    if list(val.cat_ids) != list(meta["cat_ids"]):
        raise DatasetError(
            f"{annotations}: category ids {val.cat_ids[:10]} differ from the detector's {meta['cat_ids'][:10]}"
        )
    model.to(device)
    metrics = evaluate(model, val, device, cfg.output_dir, cfg.batch_size_per_gpu, cfg.num_workers)
    return {"metrics": metrics, "checkpoint": str(cfg.checkpoint), "epoch": meta.get("epoch"), "arch": meta["arch"]}


def main(argv: list[str] | None = None) -> int:
    return run_entry(EvalConfig, argv, "detection.eval", run_eval)


if __name__ == "__main__":
    sys.exit(main())
