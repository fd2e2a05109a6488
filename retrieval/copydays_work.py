"""Copy detection on INRIA Copydays ("strong" subset): `run_copydays(backbone, cfg) -> dict`.

Protocol (iBOT's and DINO's `eval_copy_detection`): images are resized to a square image_size x image_size
(bicubic, aspect not kept; iBOT's default 224, DINO's 320). The descriptor is [CLS || GeM] from the last
block's tokens after the final LayerNorm, GeM with p = 4 over the patch tokens clamped at 1e-6; nothing is
normalised before the concatenation (2D values). The database is `original/` (sorted) plus every image in
`distractors_path`; the queries are the blocks original, strong, jpegqual/<q>, crops/<c> present under
data_path (each *.jpg, sorted). A PCA-whitening (`retrieval.whitening`, DINO's uncentred-covariance quirk
by default) is learned on `whitening_path`'s images (default: the distractors) and applied to database and
queries; then L2 and cosine similarity; only the top 20 database items count. In `strong` the positives
are the originals whose file name shares its first 4 characters with the query's; in every other block
query i's positive is original i (the block's sorted order must match `original/`). AP is the trapezoid
rule (`retrieval.metrics`: one positive at rank 1 scores 0.25). The reported number is the strong block.

Published (DINO paper, Table 4; strong subset, 10k YFCC100M distractors, whitening learned on 20k other
YFCC100M images): DINO ViT-B/16 at 224 px 81.7 mAP; DINO ViT-B/8 at 320 px 85.5; supervised ViT-B/16
76.4; Multigrain RN50 75.1. iBOT published no copy-detection number. The authors' run.sh passes no
distractors and no whitening; say which were used next to any number (results.json records it).

    python -m retrieval.copydays pretrained=backbone.pth data_path=/data/copydays \\
        distractors_path=/data/yfcc_10k whitening_path=/data/yfcc_20k
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evalkit import extract_features, frozen
from plumbing import DatasetError, resolve_device

from .config import CopydaysConfig
from .data import SquareImages, image_files
from .metrics import topk_map
from .whitening import Whitening, learn_whitening
from .work import crop_to_patches

log = logging.getLogger(__name__)

JPEG_QUALITIES = (3, 5, 8, 10, 15, 20, 30, 50, 75)
CROP_LEVELS = (10, 15, 20, 30, 40, 50, 60, 70, 80)
BLOCKS = ("original", "strong", *(f"jpegqual/{q}" for q in JPEG_QUALITIES), *(f"crops/{c}" for c in CROP_LEVELS))
OFFICIAL = {"original": 157, "strong": 229}  # the real Copydays counts (other blocks: 157 each)
GEM_P = 4.0


def copy_descriptor(backbone: nn.Module, images: Tensor) -> Tensor:
    """(B, 3, H, W) -> [CLS || GeM_4(patch tokens)] (B, 2D), both from the final-norm last block."""
    tokens = backbone.get_intermediate_layers(crop_to_patches(images, backbone.patch_size), 1)[0]  # (B, 1+N, D)
    gem = tokens[:, 1:].clamp(min=1e-6).pow(GEM_P).mean(dim=1).pow(1.0 / GEM_P)  # (B, D)
    return torch.cat([tokens[:, 0], gem], dim=-1)


def query_blocks(root: Path, n_originals: int) -> dict[str, list[Path]]:
    """The query blocks present under `root` in protocol order; DatasetError on counts that cannot work."""
    blocks = {}
    for name in BLOCKS:
        if name not in ("original", "strong") and not (root / name).is_dir():
            continue  # the optional jpegqual/crops blocks
        blocks[name] = image_files(root / name, (".jpg",))
        if name != "strong" and len(blocks[name]) != n_originals:
            raise DatasetError(
                f"{root / name}: {len(blocks[name])} images for {n_originals} originals (query i must match original i)"
            )
    return blocks


def strong_positives(originals: list[Path], strong: list[Path]) -> list[list[int]]:
    """For each strong query, the originals whose names share its first 4 characters."""
    out = []
    for q in strong:
        pos = [i for i, o in enumerate(originals) if o.name[:4] == q.name[:4]]
        if not pos:
            raise DatasetError(f"{q}: no original shares the first 4 characters of its name")
        out.append(pos)
    return out


def _features(backbone: nn.Module, paths: list[Path], cfg: CopydaysConfig, device: torch.device, desc: str) -> Tensor:
    dataset = SquareImages(paths, cfg.image_size)
    feats, _ = extract_features(
        lambda x: copy_descriptor(backbone, x), dataset, cfg.batch_size_per_gpu, cfg.num_workers, device,
        progress=cfg.progress, desc=desc, precision=cfg.precision,
    )  # fmt: skip
    return feats  # (N, 2D) float32


def _learn(train: Tensor, cfg: CopydaysConfig, where: str) -> tuple[Whitening, dict]:
    """The whitening learned on `train` (n, 2D) and its summary for results.json."""
    try:
        whitening = learn_whitening(train.numpy(), centred=cfg.whitening_centred)
    except ValueError as e:
        raise DatasetError(f"whitening on {where}: {e}") from None
    summary = {"path": where, "images": len(train), "centred": cfg.whitening_centred}
    return whitening, {**summary, "eigenvalues_floored": whitening.floored}


def run_copydays(backbone: nn.Module, cfg: CopydaysConfig) -> dict:
    """Copydays mAP (in %) of every query block present; `mAP_strong` is the number papers report."""
    cfg.check()  # the work's one check of cfg: callers may skip the shell
    root = Path(cfg.data_path)
    originals = image_files(root / "original", (".jpg",))
    blocks = query_blocks(root, len(originals))
    positives = {"strong": strong_positives(originals, blocks["strong"])}
    distractors = image_files(cfg.distractors_path) if cfg.distractors_path else []
    white_dir = cfg.whitening_path or cfg.distractors_path
    reuse = cfg.whitening and Path(white_dir) == Path(cfg.distractors_path or "")  # whiten on the distractors
    white_files = image_files(white_dir) if cfg.whitening and not reuse else []
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    backbone.to(device)
    with frozen(backbone):
        db = _features(backbone, originals + distractors, cfg, device, "database")
        queries = _features(backbone, [p for b in blocks.values() for p in b], cfg, device, "queries")
        if cfg.whitening:
            train = db[len(originals) :] if reuse else _features(backbone, white_files, cfg, device, "whitening set")
    summary = None
    if cfg.whitening:
        whitening, summary = _learn(train, cfg, white_dir)
        db, queries = (torch.from_numpy(whitening.apply(x.numpy())) for x in (db, queries))
    db, queries = F.normalize(db, dim=1), F.normalize(queries, dim=1)
    k = min(cfg.top_k, len(db))
    topk = torch.topk(queries @ db.T, k, dim=1).indices.numpy()  # (n_queries, k), best first
    maps, offset = {}, 0
    for name, files in blocks.items():
        pos = positives.get(name) or [[i] for i in range(len(files))]
        maps[name] = round(100 * topk_map(topk[offset : offset + len(files)], pos), 4)
        offset += len(files)
        log.info("eval on %s mAP=%.3f", name, maps[name] / 100)
    counts = {name: len(files) for name, files in blocks.items()}
    return {
        "mAP_strong": maps["strong"],
        "mAP": maps,
        "queries": counts,
        "official_counts": all(counts[b] == n for b, n in OFFICIAL.items()),
        "num_database": len(db),
        "distractors": {"path": cfg.distractors_path or None, "images": len(distractors)},
        "whitening": summary,
        "image_size": cfg.image_size,
        "top_k": k,
        "feature_dim": int(db.shape[1]),
        "seconds": round(time.perf_counter() - start, 2),
    }
