"""`main(argv)` of `python -m finetune [--config FILE.yaml] key=value ...` and the demo's short run.

The CLI is the one evaluation shell (`evalkit.run_backbone_cli`): bad input prints one line
`finetune: error: ...` and exits 2; under `torchrun` every process trains and rank 0 writes
config.yaml, checkpoints, classifier.pth and results.json. The work, `finetune.trainer:run`, is
imported after the config parsed (so `--help` imports no torch).
"""

from __future__ import annotations

import logging
import os
import time

from evalkit import run_backbone_cli

from .config import FinetuneConfig

log = logging.getLogger("finetune")


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (0, or 2 on bad input)."""
    return run_backbone_cli(FinetuneConfig, argv, "finetune", "finetune.trainer:run")


def demo_finetune(backbone_path: str, data_root: str, out_dir: str, minutes: float = 3.0, **overrides) -> dict:
    """A short fine-tuning run for `make demo`; returns the results dict (`best_top1`, ...) in ~`minutes`.

    `data_root` holds train/ and val/ (the demo world's `classification/`). The ViT-S/16 recipe at the
    backbone's own image size with batch 64, lr 1e-3 (4e-3 assumes batch 1024) and no mixup/cutmix
    (a few epochs are too short for them to pay off); `overrides` are FinetuneConfig keys. A first
    1-epoch run times an epoch; the rest of the budget goes to one run with as many epochs as fit
    (up to 100). If fewer than 2 fit, the 1-epoch run's results are returned. Each run writes
    config.yaml and results.json into its folder, as the CLI does.
    """
    from pretrain import load_backbone

    backbone, info = load_backbone(backbone_path)
    settings = dict(
        pretrained=backbone_path, data_path=data_root, image_size=int(backbone.arch_kwargs()["img_size"]),
        batch_size_per_gpu=64, lr=1e-3, mixup=0.0, cutmix=0.0, num_workers=min(4, os.cpu_count() or 1),
        progress=False,
    )  # fmt: skip
    settings.update(overrides)
    start = time.time()
    one = FinetuneConfig(**{**settings, "epochs": 1, "warmup_epochs": 0, "output_dir": f"{out_dir}/one_epoch"})
    probe = _run_and_write(backbone, info, one)
    per_epoch = max(time.time() - start, 1e-3)
    epochs = min(100, int(0.9 * (60 * minutes - per_epoch) / per_epoch))
    log.info("demo fine-tuning of %s: %.1f s per epoch -> %d epochs", info["arch"], per_epoch, max(epochs, 1))
    if epochs < 2:
        return probe
    cfg = FinetuneConfig(**{**settings, "epochs": epochs, "warmup_epochs": max(1, epochs // 10), "output_dir": out_dir})
    return _run_and_write(backbone, info, cfg)


def _run_and_write(backbone, info: dict, cfg: FinetuneConfig) -> dict:
    """Fine-tune (the backbone is copied, never changed) and write config.yaml + results.json."""
    from plumbing import save_config, write_results

    from .trainer import run

    results = {**run(backbone, cfg), "backbone": info}
    save_config(cfg, cfg.output_dir)
    write_results(results, cfg.output_dir)
    return results
