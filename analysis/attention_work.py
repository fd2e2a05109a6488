"""Self-attention maps of the last block and their agreement with object masks (reference §3.8).

For each image: the [CLS] -> patch attention of every head of the last block, the 60%-mass masks
(the smallest set of patches holding 60% of a head's attention), and two figures: [input | coloured
composite | per-head maps] as the reference lays them out, and an overlay per head.

Pre-processing (`preprocess`) is the authors' `visualize_attention.py` step for step: torchvision
`Resize(image_size)` with its default interpolation (bilinear, antialiased on PIL images) to
image_size x image_size (`resize=square`, their default (480, 480)) or the shorter side to
image_size (`resize=short_side`, their `--image_size N`), `ToTensor`, `Normalize` (ImageNet mean and
std), then the bottom/right remainder cropped to a multiple of the patch size. The maps and masks
are upsampled to pixels by nearest (x patch size), as theirs. fp32 by default, as theirs.

Attention quality (DINO paper, Table 4 protocol): with a folder of binary foreground masks at the
same relative paths as the images, the Jaccard index between each head's thresholded mask and the
object, averaged over images, per head and for the best head. The metric has a ceiling below 1: a
map spread uniformly over the object keeps only ~60% of it, so the ceiling (that map, cut the same
way) is reported beside it, and so is chance (as many patches kept, at random).

ViT only: a Swin backbone (window attention, no [CLS] token) stops with one line, exit code 2.

    python -m analysis.attention pretrained=backbone.pth data_path=FOLDER masks=MASK_FOLDER
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode
from tqdm import tqdm

from plumbing import DatasetError, autocast

from .common import (
    FittedImages,
    ImageItem,
    cls_attention,
    collect_images,
    fit_image,
    image_loader,
    inputs,
    mass_threshold,
    minmax,
    new_figure,
    normalise,
    on_device,
    open_image,
    require_cls_attention,
    save_figure,
    upsample,
)
from .config import AttentionConfig

log = logging.getLogger(__name__)

# Fixed colours of the first six heads in the composite (as the reference, heads 0-5).
HEAD_COLOURS = np.array(
    [[1.0, 0.2, 0.2], [0.2, 0.9, 0.2], [0.25, 0.45, 1.0], [1.0, 0.85, 0.1], [0.9, 0.3, 0.9], [0.1, 0.9, 0.9]]
)


def fit(img: Image.Image, patch_size: int, resize: str, image_size: int) -> Image.Image:
    """The authors' geometry: torchvision `Resize` (bilinear) and a crop to a multiple of the patch."""
    return fit_image(img, patch_size, resize, image_size, InterpolationMode.BILINEAR)


def preprocess(img: Image.Image, patch_size: int, resize: str = "square", image_size: int = 480) -> Tensor:
    """The authors' pre-processing (module doc): RGB PIL image -> normalised (1, 3, H, W), H and W
    multiples of the patch size."""
    return normalise(fit(img, patch_size, resize, image_size))


# ------------------------------------------------------------------------------------ scoring
def jaccard(pred: np.ndarray, target: np.ndarray) -> float:
    """|pred & target| / |pred | target| of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(pred, target).sum()
    return float(np.logical_and(pred, target).sum() / union) if union else 1.0


def coverage(mask: np.ndarray, patch: int) -> np.ndarray:
    """Fraction of each patch covered by a (H, W) boolean mask: (H/p, W/p)."""
    h, w = mask.shape[0] // patch, mask.shape[1] // patch
    return mask[: h * patch, : w * patch].reshape(h, patch, w, patch).mean(axis=(1, 3))


def ceiling_jaccard(mask: np.ndarray, patch: int, threshold: float) -> float:
    """Jaccard of an attention map spread uniformly over the object, thresholded like the heads."""
    cover = torch.from_numpy(coverage(mask, patch))
    if cover.sum() == 0:
        return float("nan")
    kept = mass_threshold(cover.flatten(), threshold).reshape(cover.shape).numpy()
    return jaccard(upsample(kept, patch), mask)


def chance_jaccard(kept: np.ndarray, mask: np.ndarray, patch: int) -> float:
    """Jaccard expected from keeping as many patches as the heads do, at random (mean over heads).

    Approximated by the ratio of expectations: E|A & G| = |A| |G| / |image| for a random A.
    """
    area, obj = mask.size, mask.sum()
    sizes = kept.reshape(len(kept), -1).sum(1) * patch * patch  # (heads,) pixels kept
    inter = sizes * obj / area
    return float(np.mean(inter / np.maximum(sizes + obj - inter, 1)))


def score_heads(kept: np.ndarray, mask: np.ndarray, patch: int) -> list[float]:
    """Per-head Jaccard of kept patches (heads, h, w) against the pixel mask (H, W)."""
    return [jaccard(upsample(k, patch), mask) for k in kept]


def find_mask(masks_root: Path, item: ImageItem) -> Path | None:
    """The mask at the image's relative path (same name, or the same stem as .png)."""
    for cand in (masks_root / item.rel, (masks_root / item.rel).with_suffix(".png")):
        if cand.is_file():
            return cand
    return None


def load_mask(path: Path, cfg: AttentionConfig, patch: int) -> np.ndarray:
    """Binary mask resized and cropped exactly as its image (nearest): bool (H, W)."""
    img = fit_image(open_image(path, "L"), patch, cfg.resize, cfg.image_size, InterpolationMode.NEAREST)
    return np.asarray(img) > 127


# ------------------------------------------------------------------------------------ figures
def composite(rgb: np.ndarray, attn: np.ndarray, kept: np.ndarray, patch: int, alpha: float = 0.6) -> np.ndarray:
    """Reference composite: heads 0-5, masked attention, winner-take-all per pixel, one colour each.

    rgb (H, W, 3) in [0, 1]; attn, kept (heads, h, w). Returns (H, W, 3) in [0, 1].
    """
    k = min(len(attn), len(HEAD_COLOURS))
    sel = attn[:k] * kept[:k]  # (k, h, w)
    winner = sel.argmax(0)  # ties -> first head
    sel = sel * (np.arange(k)[:, None, None] == winner)
    out = np.repeat(rgb.mean(-1, keepdims=True), 3, axis=-1) * 0.5  # darkened greyscale
    for i in range(k):
        m = upsample(minmax(sel[i]), patch)  # (H, W)
        a = (alpha * np.sqrt(m) * (m > 0.2))[..., None]
        out = out * (1 - a) + HEAD_COLOURS[i] * a
    return np.clip(out, 0, 1)


def draw_maps(rgb: np.ndarray, attn: np.ndarray, kept: np.ndarray, patch: int, path: Path) -> str:
    """[input | composite | per-head attention maps] in one row."""
    heads = len(attn)
    fig, axes = new_figure(2 + heads, aspect=rgb.shape[1] / rgb.shape[0])
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title("input")
    axes[0, 1].imshow(composite(rgb, attn, kept, patch))
    axes[0, 1].set_title(f"composite (heads 0-{min(heads, len(HEAD_COLOURS)) - 1})")
    for i in range(heads):
        axes[0, 2 + i].imshow(upsample(attn[i], patch), cmap="viridis")
        axes[0, 2 + i].set_title(f"head {i}")
    return save_figure(fig, path)


def draw_overlays(
    rgb: np.ndarray,
    attn: np.ndarray,
    kept: np.ndarray,
    patch: int,
    gt: np.ndarray | None,
    scores: list[float] | None,
    path: Path,
) -> str:
    """Per head: the image under its attention heat map, the patches outside the 60%-mass mask
    dimmed and the mask outlined (white), the object outlined (dashed cyan)."""
    fig, axes = new_figure(len(attn), aspect=rgb.shape[1] / rgb.shape[0])
    for i, ax in enumerate(axes[0]):
        ax.imshow(rgb)
        ax.imshow(upsample(minmax(attn[i]), patch), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
        dim = np.zeros((*rgb.shape[:2], 4))  # RGBA: black, half transparent outside the mask
        dim[..., 3] = 0.5 * ~upsample(kept[i], patch)
        ax.imshow(dim)
        ax.contour(upsample(kept[i].astype(float), patch), levels=[0.5], colors="white", linewidths=1.2)
        if gt is not None:
            ax.contour(gt.astype(float), levels=[0.5], colors="cyan", linewidths=1.0, linestyles="dashed")
        ax.set_title(f"head {i}" + (f"  J={scores[i]:.2f}" if scores else ""))
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------- run
def _summary(per_image: list[dict]) -> dict:
    """Dataset means of the per-image Jaccard scores (per head, best head, ceiling, background)."""
    if not per_image:
        return {}
    per_head = np.array([r["jaccard"] for r in per_image]).mean(0)  # (heads,)
    best = int(per_head.argmax())
    ceilings = [r["ceiling"] for r in per_image if not np.isnan(r["ceiling"])]
    background = np.array([r["background"] for r in per_image]).mean(0)  # (heads,)
    return {
        "jaccard_per_head": per_head.round(4).tolist(),
        "jaccard_best_head": round(float(per_head[best]), 4),
        "best_head": best,
        "jaccard_mean_over_heads": round(float(per_head.mean()), 4),
        "jaccard_ceiling": round(float(np.mean(ceilings)), 4) if ceilings else float("nan"),
        "jaccard_chance": round(float(np.mean([r["chance"] for r in per_image])), 4),
        # Heads may attend to the background instead (the object then shows as a hole in the map).
        "jaccard_background_best_head": round(float(background.max()), 4),
        "jaccard_images": len(per_image),
    }


def _score(kept: np.ndarray, gt: np.ndarray, patch: int, threshold: float, rel: str) -> dict:
    """One image's record: per-head Jaccard with the object and with the background, and the ceiling."""
    return {
        "image": rel,
        "jaccard": np.round(score_heads(kept, gt, patch), 4).tolist(),
        "background": np.round(score_heads(kept, ~gt, patch), 4).tolist(),
        "ceiling": round(ceiling_jaccard(gt, patch, threshold), 4),
        "chance": round(chance_jaccard(kept, gt, patch), 4),
    }


def _draw(
    rgb8: np.ndarray,
    attn: np.ndarray,
    kept: np.ndarray,
    p: int,
    gt: np.ndarray | None,
    record: dict | None,
    out: Path,
    rel: str,
) -> list[str]:
    """Both figures of one image (uint8 RGB (H, W, 3)); file names from its relative path."""
    rgb = rgb8.astype(np.float32) / 255.0
    stem = Path(rel).with_suffix("").as_posix().replace("/", "_")
    scores = record["jaccard"] if record else None
    return [
        draw_maps(rgb, attn, kept, p, out / f"attn_{stem}.png"),
        draw_overlays(rgb, attn, kept, p, gt, scores, out / f"attn_overlay_{stem}.png"),
    ]


class _Collector:
    """Per-image records, masks and figures of a run."""

    def __init__(self, cfg: AttentionConfig, patch: int):
        self.cfg, self.patch = cfg, patch
        self.masks_root = Path(cfg.masks) if cfg.masks else None
        self.figures: list[str] = []
        self.per_image: list[dict] = []
        self.kept_frac: list[np.ndarray] = []
        self.missing = 0

    def add(self, n: int, item: ImageItem, attn: Tensor, rgb8: np.ndarray) -> None:
        """One image: attn (heads, h, w) float on the CPU, rgb8 (H, W, 3) the pre-processed image."""
        cfg, p = self.cfg, self.patch
        kept = mass_threshold(attn.flatten(1), cfg.threshold).reshape(attn.shape).numpy()  # (heads, h, w)
        self.kept_frac.append(kept.reshape(len(kept), -1).mean(1))
        mask_path = find_mask(self.masks_root, item) if self.masks_root else None
        self.missing += self.masks_root is not None and mask_path is None
        gt = load_mask(mask_path, cfg, p) if mask_path else None
        record = _score(kept, gt, p, cfg.threshold, item.rel) if gt is not None else None
        self.per_image += [record] if record else []
        if n < cfg.max_figures:
            self.figures += _draw(rgb8, attn.numpy(), kept, p, gt, record, Path(cfg.output_dir), item.rel)


def run_attention(backbone: torch.nn.Module, cfg: AttentionConfig) -> dict:
    """Attention maps, figures and (with `cfg.masks`) Jaccard scores; figures go into cfg.output_dir
    (config.yaml and results.json are the shell's: `python -m analysis.attention` or `evalkit.evaluate`)."""
    require_cls_attention(backbone)  # ViT only: a Swin stops here with one line
    items = collect_images(inputs(cfg), cfg.max_images)
    p = backbone.patch_size
    images = FittedImages(items, functools.partial(fit, patch_size=p, resize=cfg.resize, image_size=cfg.image_size))
    batch = cfg.batch_size_per_gpu if cfg.resize == "square" else 1  # other modes keep each image's own size
    found = _Collector(cfg, p)
    with on_device([backbone], cfg.device) as dev:
        bar = tqdm(total=len(items), desc="attention", unit="img", disable=not cfg.progress)
        for x, rgb8, idx in image_loader(images, batch, cfg.num_workers):
            with autocast(dev, cfg.precision):
                attn = cls_attention(backbone, x.to(dev)).float().cpu()  # (B, heads, h, w)
            for a, rgb, i in zip(attn, rgb8.numpy(), idx.tolist(), strict=True):
                found.add(i, items[i], a, rgb)
            bar.update(len(idx))
        bar.close()
    masks_root = found.masks_root
    if masks_root is not None and not found.per_image:
        raise DatasetError(f"no masks found under {masks_root} (expected e.g. {masks_root / items[0].rel})")
    if found.missing:
        log.warning("%d of %d images have no mask under %s", found.missing, len(items), masks_root)
    results = {
        "images": len(items),
        "num_heads": int(backbone.num_heads),
        "threshold": cfg.threshold,
        "resize": cfg.resize,
        "kept_patch_fraction_per_head": np.mean(found.kept_frac, 0).round(4).tolist(),
        **_summary(found.per_image),
        "masks_missing": int(found.missing),
        "figures": found.figures,
        "per_image": found.per_image,
    }
    return results
