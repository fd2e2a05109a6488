"""Image retrieval on revisited Oxford 5k / Paris 6k with frozen [CLS] descriptors: `run(backbone, cfg)`.

Protocol (iBOT's and DINO's `eval_image_retrieval`; defaults = iBOT's run.sh): every database and query
image is thumbnailed to at most 512 px (`retrieval.data`); queries are NOT cropped to their bbx, as both
papers' numbers assume (`crop_queries=true` follows the official revisitop protocol instead: label such
results as such). The descriptor is the last block's [CLS] after the final LayerNorm; with `multiscale`
the normalised image is also resized by 1/sqrt(2) and 1/2 (bilinear, scale-factor form, floor sizes),
the three raw descriptors are averaged, then L2-normalised once. Trailing rows/columns that do not fill a
patch are dropped, as the authors' stride-p convolution does. The whole database is ranked by cosine
similarity; mAP and mP@k (k = 1, 5, 10) are computed for the Medium and Hard protocols (`retrieval.metrics`).
No whitening, GeM or query expansion.

Published mAP (DINO paper, Table 3; ROx Medium / Hard, RPar Medium / Hard): DINO ViT-S/16 (ImageNet)
41.8 / 13.7 / 63.1 / 34.4; supervised ViT-S/16 33.5 / 8.9 / 63.0 / 37.2. DINO's README ran Oxford at
224 px single-scale and Paris at 512 px multi-scale; iBOT's run.sh uses 512 multi-scale for both. The
iBOT paper's appendix table (ViT-S/16, ViT-B/16) was not available here: fill it in from the PDF.

    python -m retrieval pretrained=backbone.pth data_path=/data/revisitop dataset=roxford5k
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from evalkit import check_recipe, feature_fn, frozen
from plumbing import ConfigError, DatasetError, autocast, get_world_size, resolve_device

from .config import RetrievalConfig
from .data import ThumbnailImages, size_batches
from .gnd import load_ground_truth
from .metrics import revisited_labels, revisited_map

log = logging.getLogger(__name__)

SCALES = (1.0, 1 / math.sqrt(2), 0.5)


def crop_to_patches(images: Tensor, patch: int) -> Tensor:
    """Drop the trailing rows/columns of (B, 3, H, W) that do not fill a patch (the authors' conv does)."""
    h, w = images.shape[-2:]
    if h < patch or w < patch:
        raise DatasetError(f"an image of {w}x{h} px is smaller than one {patch} px patch: raise image_size")
    return images[..., : h - h % patch, : w - w % patch]


def descriptor_fn(backbone: nn.Module, recipe: str, n_last_blocks: int, multiscale: bool) -> Callable[[Tensor], Tensor]:
    """images (B, 3, H, W) normalised -> L2-normalised descriptors (B, F)."""
    check_recipe(recipe)
    pool = feature_fn(backbone, recipe, n_last_blocks)
    patch = backbone.patch_size

    def fn(images: Tensor) -> Tensor:
        if not multiscale:
            return F.normalize(pool(crop_to_patches(images, patch)).float(), dim=-1)
        total = 0
        for s in SCALES:  # raw descriptors summed, one L2 per image at the end
            x = images if s == 1 else F.interpolate(images, scale_factor=s, mode="bilinear", align_corners=False)
            total = total + pool(crop_to_patches(x, patch)).float()  # (B, F)
        return F.normalize(total / len(SCALES), dim=-1)

    return fn


def extract(fn: Callable, dataset: ThumbnailImages, cfg: RetrievalConfig, device: torch.device, desc: str) -> Tensor:
    """Descriptors (N, F) of `dataset` in its order; batches hold images of one size."""
    batches = size_batches(dataset, cfg.batch_size_per_gpu)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    rows: list[Tensor | None] = [None] * len(dataset)
    with torch.inference_mode(), autocast(device, cfg.precision):
        for images, index in tqdm(loader, desc=desc, disable=not cfg.progress, leave=False):
            feats = fn(images.to(device, non_blocking=True)).float().cpu()  # (B, F)
            for row, i in zip(feats, index.tolist(), strict=True):
                rows[i] = row
    return torch.stack(rows)  # (N, F)


def _percent(value: float) -> float | None:
    return None if math.isnan(value) else round(100 * value, 4)


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def run(backbone: nn.Module, cfg: RetrievalConfig) -> dict:
    """Rank the database for every query and score mAP / mP@k (in %) under the Medium and Hard protocols."""
    cfg.check()  # the work's one check of cfg: callers may skip the shell
    if get_world_size() > 1:
        raise ConfigError("retrieval runs in one process: launch it with python -m, not torchrun")
    if cfg.n_last_blocks > backbone.depth:
        raise ConfigError(f"n_last_blocks={cfg.n_last_blocks} exceeds this backbone's {backbone.depth} blocks")
    gt = load_ground_truth(cfg.data_path, cfg.dataset, need_boxes=cfg.crop_queries)
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    backbone.to(device)
    fn = descriptor_fn(backbone, cfg.recipe, cfg.n_last_blocks, cfg.multiscale)
    boxes = [g["bbx"] for g in gt.gnd] if cfg.crop_queries else None
    with frozen(backbone):
        db = extract(fn, ThumbnailImages([gt.image(n) for n in gt.imlist], cfg.image_size), cfg, device, "database")
        queries = ThumbnailImages([gt.image(n) for n in gt.qimlist], cfg.image_size, boxes)
        q = extract(fn, queries, cfg, device, "queries")
    ranking = torch.argsort(q @ db.T, dim=1, descending=True, stable=True).numpy()  # (n_q, n_db), best first
    scores = {p: revisited_map(ranking, revisited_labels(gt.gnd, p), cfg.ks) for p in ("medium", "hard")}
    m, h = (_percent(scores[p]["mAP"]) for p in ("medium", "hard"))
    pk = {p: {str(k): _percent(v) for k, v in s["mP@k"].items()} for p, s in scores.items()}
    log.info(">> %s: mAP M: %s, H: %s", cfg.dataset, _shown(m), _shown(h))
    shown = {p: " ".join(_shown(v) for v in pk[p].values()) for p in pk}
    log.info(">> %s: mP@k%s M: [%s], H: [%s]", cfg.dataset, list(cfg.ks), shown["medium"], shown["hard"])
    return {
        "dataset": cfg.dataset,
        "mAP": {"medium": m, "hard": h},
        "mP@k": pk,
        "queries_evaluated": {p: s["num_queries"] for p, s in scores.items()},
        "ap_per_query": {p: [_percent(a) if a is not None else None for a in s["aps"]] for p, s in scores.items()},
        "setting": {
            "queries": "cropped to bbx (revisitop protocol)" if cfg.crop_queries else "full images (DINO/iBOT)",
            "image_size": cfg.image_size,
            "multiscale": cfg.multiscale,
            "recipe": cfg.recipe,
            "n_last_blocks": cfg.n_last_blocks,
        },
        "num_database": len(gt.imlist),
        "num_queries": len(gt.qimlist),
        "feature_dim": int(db.shape[1]),
        "seconds": round(time.perf_counter() - start, 2),
    }
