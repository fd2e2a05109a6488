"""`python -m finetune [--config FILE.yaml] key=value ...` and the demo's short fine-tuning run.

Bad input (unknown key, missing folder, unreadable or wrong checkpoint) prints one line
`finetune: error: ...` and exits with status 2. Under `torchrun` every process trains; rank 0 writes
config.yaml, checkpoints, classifier.pth and results.json.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import torch.distributed as dist

from pretrain import (
    ConfigError,
    init_distributed,
    load_backbone,
    load_head,
    parse_config,
    save_config,
    write_results,
)

from .config import FinetuneConfig, check_config
from .run import USER_ERRORS, run

log = logging.getLogger("finetune")


def _init_distributed(device: str) -> int:
    """Join torchrun's process group (NCCL on CUDA, gloo otherwise); returns the rank (0 without torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return init_distributed(device)[0]
    return 0


def _shutdown(wait: bool) -> None:
    """Leave the process group; after success all ranks meet first (gloo aborts at exit otherwise)."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def finetune_from_config(cfg: FinetuneConfig) -> dict:
    """Load the backbone (and head for start_from=head_layer1) named by `cfg`, fine-tune, write files."""
    check_config(cfg)
    if not cfg.pretrained:
        raise ConfigError("pretrained=PATH is required (an exported backbone or a training checkpoint)")
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if rank == 0:
        save_config(cfg, cfg.output_dir)
    backbone, info = load_backbone(cfg.pretrained, cfg.checkpoint_key)
    head = load_head(cfg.pretrained, cfg.checkpoint_key)[0] if cfg.start_from == "head_layer1" else None
    results = {**run(backbone, cfg, head, info["arch"]), "backbone": info}
    if rank == 0:
        write_results(results, cfg.output_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    """The CLI; returns the exit status (0, or 2 on bad input)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    done = False
    try:
        cfg = parse_config(FinetuneConfig, argv, "finetune")
        rank = _init_distributed(cfg.device)
        if rank != 0:  # one log, from rank 0
            logging.getLogger().setLevel(logging.WARNING)
        results = finetune_from_config(cfg)
        done = True
    except USER_ERRORS as e:
        print(f"finetune: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    finally:
        _shutdown(wait=done)
    if rank != 0:
        return 0
    print(f"finetune: best top-1 {results['best_top1']:.2f} (epoch {results['best_epoch']}); "
          f"results in {Path(cfg.output_dir) / 'results.json'}")  # fmt: skip
    return 0


def demo_finetune(backbone_path: str, data_root: str, out_dir: str, minutes: float = 3.0, **overrides) -> dict:
    """A short fine-tuning run for `make demo`; returns the results dict (`best_top1`, ...) in ~`minutes`.

    `data_root` holds train/ and val/ (the demo world's `classification/`). The ViT-S/16 recipe at the
    backbone's own image size with batch 64, lr 1e-3 (4e-3 assumes batch 1024) and no mixup/cutmix
    (a few epochs are too short for them to pay off); `overrides` are FinetuneConfig keys. A first
    1-epoch run times an epoch; the rest of the budget goes to one run with as many epochs as fit
    (up to 100). If fewer than 2 fit, the 1-epoch run's results are returned.
    """
    backbone, info = load_backbone(backbone_path)
    settings = dict(
        pretrained=backbone_path, data_path=data_root, image_size=int(backbone.arch_kwargs()["img_size"]),
        batch_size=64, lr=1e-3, mixup=0.0, cutmix=0.0, num_workers=min(4, os.cpu_count() or 1), progress=False,
    )  # fmt: skip
    settings.update(overrides)
    start = time.time()
    probe = finetune_from_config(
        FinetuneConfig(**{**settings, "epochs": 1, "warmup_epochs": 0, "output_dir": f"{out_dir}/one_epoch"})
    )
    per_epoch = max(time.time() - start, 1e-3)
    epochs = min(100, int(0.9 * (60 * minutes - per_epoch) / per_epoch))
    log.info("demo fine-tuning of %s: %.1f s per epoch -> %d epochs", info["arch"], per_epoch, max(epochs, 1))
    if epochs < 2:
        return probe
    cfg = FinetuneConfig(**{**settings, "epochs": epochs, "warmup_epochs": max(1, epochs // 10), "output_dir": out_dir})
    return finetune_from_config(cfg)
