"""Run a detector over a COCO split and score it with COCOeval (sharded under torchrun); used after
training (`work.run`) and by `python -m detection.eval` (`eval_work.run_eval`)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from plumbing import get_rank, get_world_size

from .coco_eval import coco_evaluate, to_coco_results, write_coco_results
from .data import CocoInstances, collate

log = logging.getLogger(__name__)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: CocoInstances,
    device: torch.device,
    batch_size: int = 2,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, list[dict]]:
    """COCO results {"bbox": [...], "segm": [...]} for every image of `dataset` (all ranks get all).

    Each rank runs every world-th image; masks are turned into RLE per batch, so memory stays small.
    """
    rank, world = get_rank(), get_world_size()
    model.eval()
    shard = Subset(dataset, list(range(rank, len(dataset), world)))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    results: dict[str, list[dict]] = {"bbox": [], "segm": []}
    for images, targets in tqdm(loader, desc="eval", disable=not progress or rank != 0, leave=False):
        outputs = model([im.to(device, non_blocking=True) for im in images])
        dets = {t["image_id"]: o for t, o in zip(targets, outputs, strict=True)}
        for k, v in to_coco_results(dets, dataset.cat_ids).items():
            results[k].extend(v)
    if world > 1:
        gathered: list = [None] * world
        dist.all_gather_object(gathered, results)
        results = {k: [d for part in gathered for d in part[k]] for k in results}
    return results


def evaluate(
    model: nn.Module,
    dataset: CocoInstances,
    device: torch.device,
    output_dir: str | Path | None = None,
    batch_size: int = 2,
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, float | None]:
    """bbox and segm AP, AP50, AP75, APs/m/l (percent) on `dataset`; writes the result jsons to
    `output_dir` when given (rank 0)."""
    results = predict(model, dataset, device, batch_size, num_workers, progress)
    if output_dir is not None and get_rank() == 0:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        write_coco_results(results, output_dir)
    metrics = coco_evaluate(dataset.coco, results, dataset.ids)
    log.info("COCO: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))
    return metrics
