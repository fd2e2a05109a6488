"""Top-k patterns of the iBOT head's prototypes (reference §3.8, `extract_topk_cluster`).

Every token of a dataset (every patch, or the [CLS] with `type=cls`) is assigned to its argmax
prototype of the iBOT head (raw logits: no centering, no softmax). The (max logit, prototype) pairs
go to a memory bank streamed to disk (`bank_scores.npy`, `bank_ids.npy`, numpy memmaps of shape
(images, tokens)), so large datasets never sit in memory. The most populated prototypes are drawn:

- patch: for each prototype, per image the highest-scoring patch assigned to it; the images ranked
  by that score, the top 2k kept, too-dark crops (HSV value mean <= 40) skipped, and k crops of
  5x5 patches of context around the patch (centre patch outlined) drawn in a ceil(sqrt(k)) grid;
- cls: the top-k images by score among those whose [CLS] is assigned to the prototype.

Swin backbones work too: the patch tokens are the final-stage tokens, one per 32 px.

    python -m analysis.patterns pretrained=backbone_with_head.pth data_path=FOLDER type=patch
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torchvision.transforms as T
from matplotlib.patches import Rectangle
from torch import nn
from tqdm import tqdm

from plumbing import ConfigError, autocast
from pretrain import load_head, mask_grid

from .common import (
    FittedImages,
    ImageItem,
    collect_images,
    grid_shape,
    image_loader,
    inputs,
    new_figure,
    on_device,
    open_image,
    save_figure,
)
from .config import PATTERN_TYPES as TYPES
from .config import PatternsConfig

CHUNK = 1024  # bank rows read at a time


def preprocess(cfg: PatternsConfig) -> T.Compose:
    """Resize the shorter side to resize_size, centre-crop image_size (PIL in, PIL out)."""
    return T.Compose(
        [T.Resize(cfg.resize_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(cfg.image_size)]
    )


# ------------------------------------------------------------------------------- memory bank
def build_bank(backbone: nn.Module, head: nn.Module, items: list[ImageItem], cfg: PatternsConfig, dev) -> Path:
    """Stream (max logit, argmax prototype) of every token to `bank_*.npy` memmaps (images, tokens)."""
    grid = cfg.image_size // mask_grid(backbone)  # tokens a side (Swin: final-stage tokens of 32 px)
    tokens = 1 if cfg.type == "cls" else grid * grid
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = np.lib.format.open_memmap(out / "bank_scores.npy", mode="w+", dtype=np.float32, shape=(len(items), tokens))
    ids = np.lib.format.open_memmap(out / "bank_ids.npy", mode="w+", dtype=np.int32, shape=(len(items), tokens))
    bar = tqdm(total=len(items), desc=f"patterns bank ({cfg.type})", unit="img", disable=not cfg.progress)
    start = 0
    for x, _, _ in image_loader(FittedImages(items, preprocess(cfg)), cfg.batch_size_per_gpu, cfg.num_workers):
        with autocast(dev, cfg.precision):
            cls_logits, patch_logits = head(backbone.forward_features(x.to(dev)))  # (B, K), (B, N, K2)
        logits = cls_logits[:, None] if cfg.type == "cls" else patch_logits  # (B, T, K)
        best, arg = logits.float().max(-1)  # (B, T)
        scores[start : start + len(x)] = best.cpu().numpy()
        ids[start : start + len(x)] = arg.cpu().numpy()
        start += len(x)
        bar.update(len(x))
    bar.close()
    scores.flush()
    ids.flush()
    del scores, ids
    return out


def open_bank(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """The bank as read-only memmaps: scores float32 (images, tokens), ids int32 (images, tokens)."""
    return np.load(out / "bank_scores.npy", mmap_mode="r"), np.load(out / "bank_ids.npy", mmap_mode="r")


def prototype_counts(ids: np.ndarray, num_prototypes: int) -> np.ndarray:
    """Tokens assigned to each prototype, counted chunk by chunk: (num_prototypes,) int64."""
    counts = np.zeros(num_prototypes, dtype=np.int64)
    for start in range(0, len(ids), CHUNK):
        counts += np.bincount(np.asarray(ids[start : start + CHUNK]).ravel(), minlength=num_prototypes)
    return counts


def best_per_image(scores: np.ndarray, ids: np.ndarray, protos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image and prototype: the best score of a token assigned to it (-inf if none) and that token.

    Returns (images, P) float32 scores and (images, P) int64 token indices.
    """
    best = np.full((len(ids), len(protos)), -np.inf, dtype=np.float32)
    token = np.zeros((len(ids), len(protos)), dtype=np.int64)
    for start in range(0, len(ids), CHUNK):
        s, i = np.asarray(scores[start : start + CHUNK]), np.asarray(ids[start : start + CHUNK])  # (c, T)
        for j, p in enumerate(protos):
            masked = np.where(i == p, s, -np.inf)
            token[start : start + len(s), j] = masked.argmax(1)
            best[start : start + len(s), j] = masked.max(1)
    return best, token


# ------------------------------------------------------------------------------------- crops
def context_crop(img: np.ndarray, token: int, patch: int, window: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A window x window-patch crop around `token`, shifted to stay inside the image.

    Returns the crop and the (row, col) of the token's patch inside it, in patches.
    """
    gh, gw = img.shape[0] // patch, img.shape[1] // patch
    r, c = divmod(token, gw)
    wh, ww = min(window, gh), min(window, gw)
    r0 = min(max(r - wh // 2, 0), gh - wh)
    c0 = min(max(c - ww // 2, 0), gw - ww)
    crop = img[r0 * patch : (r0 + wh) * patch, c0 * patch : (c0 + ww) * patch]
    return crop, (r - r0, c - c0)


def too_dark(crop: np.ndarray, dark_value: float) -> bool:
    """HSV value is max(R, G, B); a crop whose mean value is <= dark_value (0-255) shows nothing."""
    return float(crop.max(-1).mean()) <= dark_value


def _draw_grid(panels: list[tuple[np.ndarray, tuple[int, int] | None]], patch: int, title: str, path: Path) -> str:
    """Crops (with the centre patch outlined where given) in a ceil(sqrt(n))-wide grid."""
    rows, cols = grid_shape(len(panels))
    fig, axes = new_figure(cols, rows, panel=1.2)
    for ax, (crop, centre) in zip(axes.flat, panels, strict=False):
        ax.imshow(crop)
        if centre is not None:
            rect = Rectangle(
                (centre[1] * patch - 0.5, centre[0] * patch - 0.5), patch, patch, fill=False, ec="red", lw=1.5
            )
            ax.add_patch(rect)
    fig.suptitle(title)
    return save_figure(fig, path)


def _proto_panels(order: np.ndarray, tokens: np.ndarray | None, items, cfg: PatternsConfig, patch: int) -> list:
    """Up to topk (image or crop, centre) panels from the 2k best-ranked images, dark ones skipped."""
    prep, panels = preprocess(cfg), []
    for n in order[: 2 * cfg.topk]:
        img = np.asarray(prep(open_image(items[n].path)))  # (S, S, 3) uint8
        crop, centre = (img, None) if tokens is None else context_crop(img, int(tokens[n]), patch, cfg.window)
        if tokens is not None and too_dark(crop, cfg.dark_value):
            continue
        panels.append((crop, centre))
        if len(panels) == cfg.topk:
            break
    return panels


# ---------------------------------------------------------------------------------------- run
def run_patterns(backbone: nn.Module, cfg: PatternsConfig, head: nn.Module | None = None) -> dict:
    """Bank, prototype counts and one figure per most populated prototype; `head` defaults to
    `load_head(cfg.pretrained, cfg.checkpoint_key)`."""
    if cfg.type not in TYPES:
        raise ConfigError(f"type must be one of {TYPES}, got {cfg.type!r}")
    patch = mask_grid(backbone)  # pixels per token: the ViT patch, 32 for Swin
    if cfg.image_size % patch:
        raise ConfigError(f"image_size {cfg.image_size} is not a multiple of the token size {patch} px")
    if head is None:
        head, _ = load_head(cfg.pretrained, cfg.checkpoint_key)
    items = collect_images(inputs(cfg), cfg.max_images)
    with on_device([backbone, head], cfg.device) as dev:
        out = build_bank(backbone, head, items, cfg, dev)
    scores, ids = open_bank(out)
    K = head.kwargs["out_dim"] if cfg.type == "cls" else head.kwargs["patch_out_dim"]
    counts = prototype_counts(ids, K)
    protos = np.argsort(-counts, kind="stable")[: cfg.num_prototypes]
    protos = protos[counts[protos] > 0]
    best, token = best_per_image(scores, ids, protos)
    figures, shown = [], []
    for j, p in enumerate(tqdm(protos, desc="patterns figures", unit="proto", disable=not cfg.progress)):
        order = np.argsort(-best[:, j], kind="stable")
        order = order[np.isfinite(best[order, j])]
        panels = _proto_panels(order, token[:, j] if cfg.type == "patch" else None, items, cfg, patch)
        shown.append(len(panels))
        if panels:
            title = f"prototype {p}: {counts[p]} {'[CLS]' if cfg.type == 'cls' else 'patch'} tokens"
            figures.append(_draw_grid(panels, patch, title, out / f"pattern_{cfg.type}_{j:02d}_proto{p}.png"))
    results = {
        "type": cfg.type,
        "images": len(items),
        "bank_shape": list(ids.shape),
        "prototypes": int(K),
        "prototypes_used": int((counts > 0).sum()),
        "top_prototypes": [
            {"prototype": int(p), "count": int(counts[p]), "shown": s} for p, s in zip(protos, shown, strict=True)
        ],
        "figures": figures,
    }
    return results
