"""One self-contained HTML page to explore a backbone on images (`python -m analysis.explore`).

Per image: the input, the [CLS] attention of every head of the chosen blocks with the outline of its
60%-mass mask, the PCA colour map of the patch features (all patches, or the foreground only), and,
for a clicked patch, its cosine similarity over every image with the best match per image and the
top-k nearest patches of the set. The page opens from disk (no server, no network): its script and
style are inlined from `analysis/explore_page/`, its numbers embedded as base64 in one JSON block.

The numbers come from the tools' own functions, on the pixels `analysis.attention` feeds its model
(`attention_work.fit`: torchvision Resize, bilinear, crop to a multiple of the patch):
- attention: `layer_cls_attention` (equals `common.cls_attention`, the attention tool's, bit for bit on
  the last block; other blocks the same way), masks by `common.mass_threshold` as `analysis.attention`;
- PCA colours: `pca_work.colour_maps` on `common.patch_features`, as `analysis.pca` (joint, foreground);
- similarity: the cosine of `analysis.correspondence` (`match(..., "cosine")`) over those features.

What the page stores, and the precision lost (measured on every page: `results["similarity_precision"]`):
- attention: float16 (relative error <= 2^-11 = 4.9e-4 of each value); the masks exactly (bits,
  thresholded in Python from the float32 maps);
- PCA colours: uint8 (absolute error <= 1/510 on the [0, 1] scale);
- features: the unit-length patch features projected on the top `feature_dims` eigenvectors of their
  uncentred second moment, float16; the page's cosine is the dot product of two projections (the best
  rank-k approximation of the cosine matrix; 1 for a patch with itself). Measured against the full float32
  cosine on 256 query patches x every patch, 96 dimensions, 50 scikit-image photos (crops, flips):
  random-init ViT-S/16 at 480 px: max 0.066, p99 0.0042, mean 0.00054 (98.8% of the squared norm kept),
  the best match per image agrees 93.8%, top-10 overlap 85.4%; the reference ViT-T/8 (demo/reference) at
  224 px: max 0.0135, p99 0.0023, mean 0.00044, agreement 98.0%, top-10 95.4%. `feature_dims=0` keeps all
  dimensions (float16 alone: max < 2e-3, tested).
- images: JPEG (`jpeg_quality`), for display only.

Size: 50 images of 480 px with ViT-S/16 (45,000 patches, 6 heads, the last block, 96 dimensions)
measured 15,956,378 bytes (random init, the photos above; JPEG ~49 KB an image): features 11.5 MB, images
3.3 MB, attention 0.7 MB, PCA 0.4 MB after base64 (4/3); `estimate_bytes` is 0.03% off there (1.3% on a
3-image page). That run took 2 min 15 s and 1.9 GB on the 2-core VM; the page loads in 1.3 s in headless Chromium and
answers a click over the 45,000 patches in 0.4 s.

Swin: no [CLS] self-attention (window attention, [CLS] a token average); the page says so and keeps
PCA and similarity, on the final-stage tokens (32 px).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import html
import io
import json
import logging
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from plumbing import ConfigError, atomic_write_text, autocast, command_line, to_plain
from pretrain import SwinBackbone, arch_name, mask_grid, weights_fingerprint

from .attention_work import fit
from .common import (
    FittedImages,
    collect_images,
    image_loader,
    inputs,
    mass_threshold,
    on_device,
    patch_features,
    require_cls_attention,
)
from .config import ExploreConfig, PCAConfig
from .pca_work import colour_maps

log = logging.getLogger(__name__)

PAGE = "explore.html"
ASSETS = Path(__file__).with_name("explore_page")  # page.html, explore.js, explore.css (package data)
DATA_OPEN = '<script type="application/json" id="explore-data">'
QUERIES = 256  # query patches on which the similarity error is measured
COLORMAPS = ("viridis", "inferno")  # attention, similarity


@dataclasses.dataclass
class Extracted:
    """What one pass over the images gives: per image the pixels the model saw, the final-LayerNorm
    patch features on their grid, and the [CLS] attention of the chosen blocks (None for Swin)."""

    rgb: list[np.ndarray]  # (H, W, 3) uint8
    feats: list[np.ndarray]  # (h, w, D) float32
    attn: list[np.ndarray] | None  # (L, heads, h, w) float32


# ------------------------------------------------------------------------------------ model side
def resolve_layers(layers: list[int], depth: int) -> list[int]:
    """Block indices (negative from the last) -> distinct 0-based indices in the given order."""
    bad = [i for i in layers if not -depth <= i < depth]
    if bad:
        raise ConfigError(f"layers must be block indices in [{-depth}, {depth - 1}], got {bad}")
    return list(dict.fromkeys(i % depth for i in layers))


def layer_cls_attention(backbone: torch.nn.Module, x: Tensor, layers: list[int]) -> Tensor:
    """[CLS] -> patch attention per head of the blocks at `layers` (0-based): (B, L, heads, h, w); ViT only.

    The blocks run as `get_last_selfattention` runs them (the last block's maps equal `cls_attention`'s)."""
    require_cls_attention(backbone)
    p = backbone.patch_size
    tokens = backbone.prepare_tokens(x)  # (B, 1+N, D)
    maps = {}
    for i, blk in enumerate(backbone.blocks[: max(layers) + 1]):
        if i in layers:
            maps[i] = blk.attn.attention_weights(blk.norm1(tokens))[:, :, 0, 1:]  # (B, heads, N)
        tokens = blk(tokens) if i < max(layers) else tokens
    stacked = torch.stack([maps[i] for i in layers], 1)  # (B, L, heads, N)
    return stacked.reshape(*stacked.shape[:3], x.shape[-2] // p, x.shape[-1] // p)


def extract(backbone: torch.nn.Module, cfg: ExploreConfig, layers: list[int] | None) -> tuple[Extracted, list[str]]:
    """One forward pass per batch: pixels, patch features and (`layers` given) [CLS] attention; the
    images' names (paths relative to their folder)."""
    items = collect_images(inputs(cfg), cfg.max_images)
    grid = mask_grid(backbone)
    images = FittedImages(items, functools.partial(fit, patch_size=grid, resize=cfg.resize, image_size=cfg.image_size))
    batch = cfg.batch_size_per_gpu if cfg.resize == "square" else 1  # other modes keep each image's own size
    out = Extracted([], [], None if layers is None else [])
    with on_device([backbone], cfg.device) as dev:
        bar = tqdm(total=len(items), desc="explore", unit="img", disable=not cfg.progress)
        for x, rgb8, idx in image_loader(images, batch, cfg.num_workers):
            x = x.to(dev)
            with autocast(dev, cfg.precision):
                out.feats += list(patch_features(backbone, x).float().cpu().numpy())  # (B, h, w, D)
                if out.attn is not None:
                    out.attn += list(layer_cls_attention(backbone, x, layers).float().cpu().numpy())
            out.rgb += list(rgb8.numpy())
            bar.update(len(idx))
        bar.close()
    return out, [it.rel for it in items]


# --------------------------------------------------------------------------------- the numbers
def unit_features(feats: list[np.ndarray]) -> np.ndarray:
    """Every image's patches, concatenated in image order, scaled to unit length (as `F.normalize`): (N, D)."""
    x = np.concatenate([f.reshape(-1, f.shape[-1]) for f in feats]).astype(np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def reduce_features(unit: np.ndarray, dims: int) -> tuple[np.ndarray, float]:
    """The page's copy of unit features: projected on the top `dims` eigenvectors of their (uncentred)
    second moment (the best rank-`dims` approximation of every dot product), float16 (N, k); and the
    fraction of the squared norm kept. dims 0 or >= D: all dimensions."""
    dims = min(dims, len(unit))  # more directions than patches hold nothing
    if not 0 < dims < unit.shape[1]:
        return unit.astype(np.float16), 1.0
    vals, vecs = np.linalg.eigh(unit.T.astype(np.float64) @ unit)  # ascending, (D,), (D, D)
    basis = vecs[:, ::-1][:, :dims].astype(np.float32)  # (D, k)
    return (unit @ basis).astype(np.float16), float(vals[::-1][:dims].sum() / vals.sum())


def page_similarity(z16: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The cosine the page's script computes for the query patches (indices (Q,)) against every patch: the dot
    product of the stored projections (float16 -> float32), 1 for a patch with itself: (Q, N)."""
    z = z16.astype(np.float32)
    sims = z[queries] @ z.T
    sims[np.arange(len(queries)), queries] = 1.0
    return sims


def similarity_error(unit: np.ndarray, z16: np.ndarray, sizes: list[int], seed: int = 0) -> dict:
    """The page's cosine against the full float32 cosine, on up to QUERIES query patches x every patch:
    absolute error (max, 99th percentile, mean), how often the best match per image (correspondence's
    argmax) and the top-10 of the set agree."""
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(len(unit), size=min(QUERIES, len(unit)), replace=False))
    exact, approx = unit[q] @ unit.T, page_similarity(z16, q)  # (Q, N)
    err = np.abs(approx - exact)
    bounds = np.cumsum([0, *sizes])
    agree = [exact[:, a:b].argmax(1) == approx[:, a:b].argmax(1) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    k = min(10, len(unit) - 1)
    exact[np.arange(len(q)), q] = approx[np.arange(len(q)), q] = -np.inf  # the query itself is not a neighbour
    top_e, top_a = np.argpartition(-exact, k - 1, 1)[:, :k], np.argpartition(-approx, k - 1, 1)[:, :k]  # as sets
    overlap = np.mean([len(set(a) & set(b)) / max(k, 1) for a, b in zip(top_e, top_a, strict=True)])
    return {
        "queries": len(q),
        "max_abs_error": round(float(err.max()), 5),
        "p99_abs_error": round(float(np.quantile(err, 0.99)), 5),
        "mean_abs_error": round(float(err.mean()), 5),
        "best_match_agreement": round(float(np.mean(agree)), 4),
        "top10_overlap": round(float(overlap), 4),
    }


def pca_maps(feats: list[np.ndarray], cfg: ExploreConfig) -> tuple[list, list, list, dict]:
    """`analysis.pca`'s colour maps with and without foreground separation: rgb, rgb_fg, fg masks, stats."""
    rgb, _, stats = colour_maps(feats, PCAConfig(joint=cfg.joint, fg_threshold=cfg.fg_threshold))
    fg_cfg = PCAConfig(joint=cfg.joint, foreground=True, fg_threshold=cfg.fg_threshold)
    rgb_fg, fgs, fg_stats = colour_maps(feats, fg_cfg)
    return rgb, rgb_fg, fgs, {**stats, "foreground_fraction": fg_stats["foreground_fraction"]}


# --------------------------------------------------------------------------------- the page
def b64(a: np.ndarray) -> str:
    """Raw little-endian bytes of an array as base64."""
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _bits(a: np.ndarray) -> str:
    return b64(np.packbits(a.astype(bool).ravel()))  # big-endian bit order within a byte


def _jpeg(rgb: np.ndarray, quality: int) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _quantise(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def colormap_table(name: str) -> np.ndarray:
    """matplotlib's colour map as 256 uint8 RGB rows (the page colours maps through this table)."""
    return _quantise(matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3])


def image_records(ex: Extracted, names: list[str], cfg: ExploreConfig, pca: tuple) -> list[dict]:
    """Per image: name, sizes, JPEG, attention (float16) and masks (bits), PCA colours (uint8)."""
    rgb, rgb_fg, fgs, _ = pca
    records = []
    for i, name in enumerate(names):
        h, w = ex.feats[i].shape[:2]
        rec = {"name": name, "width": int(ex.rgb[i].shape[1]), "height": int(ex.rgb[i].shape[0]), "h": h, "w": w}
        rec["jpeg"] = _jpeg(ex.rgb[i], cfg.jpeg_quality)
        if ex.attn is not None:
            a = torch.from_numpy(ex.attn[i])  # (L, heads, h, w)
            kept = mass_threshold(a.flatten(2), cfg.threshold).numpy()  # (L, heads, N), as analysis.attention
            rec["attn"], rec["mask"] = b64(ex.attn[i].astype("<f2")), _bits(kept)
        rec["pca"], rec["pca_fg"], rec["fg"] = b64(_quantise(rgb[i])), b64(_quantise(rgb_fg[i])), _bits(fgs[i])
        records.append(rec)
    return records


def render_page(payload: dict) -> str:
    """page.html with explore.css, explore.js and the payload (JSON, `</` escaped) inlined."""
    page = (ASSETS / "page.html").read_text(encoding="utf-8")
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    parts = {
        "TITLE": html.escape(f"explore {payload['meta']['arch']}: {len(payload['images'])} images"),
        "STYLE": (ASSETS / "explore.css").read_text(encoding="utf-8"),
        "SCRIPT": (ASSETS / "explore.js").read_text(encoding="utf-8"),
        "DATA": data,  # last: nothing after it is searched for placeholders
    }
    for key, text in parts.items():
        page = page.replace("{{" + key + "}}", text)
    return page


def estimate_bytes(images: int, patches: int, heads: int, layers: int, dims: int, jpeg_bytes: float) -> float:
    """The page's size in bytes: base64 (4/3) of what it stores per image (JPEG, float16 attention, mask bits,
    two uint8 PCA maps, foreground bits) and of the float16 features, plus the script, style and settings."""
    per_image = jpeg_bytes + patches * (2 * layers * heads + 6) + np.ceil(patches * layers * heads / 8) + patches / 8
    assets = sum(f.stat().st_size for f in ASSETS.iterdir())
    return 4 / 3 * (images * per_image + images * patches * dims * 2) + assets + 4096 + 200 * images


def read_page(path: str | Path) -> dict:
    """The payload of a page with its arrays decoded (what the page's script decodes): per image `attn`
    (L, heads, h, w) float16, `mask` bool like it, `pca` / `pca_fg` (h, w, 3) uint8, `fg` (h, w) bool;
    `features` (N, k) float16 in image order."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.index(DATA_OPEN) + len(DATA_OPEN)
    payload = json.loads(text[start : text.index("</script>", start)])

    def raw(s: str, dtype: str) -> np.ndarray:
        return np.frombuffer(base64.b64decode(s), dtype=dtype)

    def bits(s: str, shape: tuple) -> np.ndarray:
        return np.unpackbits(raw(s, "u1"))[: int(np.prod(shape))].reshape(shape).astype(bool)

    meta = payload["meta"]
    for rec in payload["images"]:
        h, w = rec["h"], rec["w"]
        if "attn" in rec:
            shape = (len(meta["layers"]), meta["num_heads"], h, w)
            rec["attn"], rec["mask"] = raw(rec["attn"], "<f2").reshape(shape), bits(rec["mask"], shape)
        rec["pca"], rec["pca_fg"] = raw(rec["pca"], "u1").reshape(h, w, 3), raw(rec["pca_fg"], "u1").reshape(h, w, 3)
        rec["fg"] = bits(rec["fg"], (h, w))
    payload["features"] = raw(payload["features"], "<f2").reshape(-1, meta["feature_dims"])
    return payload


# ---------------------------------------------------------------------------------------- run
def _no_attention(backbone: torch.nn.Module) -> str:
    """Why the page has no attention views ('' when it has them)."""
    try:
        require_cls_attention(backbone, "the attention views", "similarity and PCA work")
    except ConfigError as e:
        return str(e)
    return ""


def run_explore(backbone: torch.nn.Module, cfg: ExploreConfig) -> dict:
    """Write cfg.output_dir/explore.html for the images of cfg.data_path; returns the results (page size,
    the measured precision of the stored features, the PCA statistics)."""
    swin = isinstance(backbone, SwinBackbone)
    layers = None if swin else resolve_layers(cfg.layers, backbone.depth)
    ex, names = extract(backbone, cfg, layers)
    return write_page(backbone, cfg, ex, names)


def write_page(backbone: torch.nn.Module, cfg: ExploreConfig, ex: Extracted, names: list[str]) -> dict:
    """The page of what `extract` gave (module doc: what is stored, at what precision); returns the results."""
    swin = isinstance(backbone, SwinBackbone)
    layers = None if swin else resolve_layers(cfg.layers, backbone.depth)
    unit = unit_features(ex.feats)
    z16, kept = reduce_features(unit, cfg.feature_dims)
    sizes = [f.shape[0] * f.shape[1] for f in ex.feats]
    precision = {
        "feature_dims": int(z16.shape[1]),
        "full_dims": int(unit.shape[1]),
        "norm_kept": round(kept, 4),
        **similarity_error(unit, z16, sizes, cfg.seed),
    }
    pca = pca_maps(ex.feats, cfg)
    meta = {
        "command": command_line("analysis.explore", cfg),
        "fingerprint": weights_fingerprint(backbone),
        "arch": arch_name(backbone),
        "grid": mask_grid(backbone),
        "num_heads": 0 if swin else int(backbone.num_heads),
        "layers": layers or [],
        "no_attention": _no_attention(backbone),
        "feature_dims": int(z16.shape[1]),
        "topk": cfg.topk,
        "threshold": cfg.threshold,
        "settings": to_plain(cfg),
        "precision": precision,
        "pca": pca[3],
    }
    payload = {
        "meta": meta,
        "colormaps": {name: b64(colormap_table(name)) for name in COLORMAPS},
        "images": image_records(ex, names, cfg, pca),
        "features": b64(z16.astype("<f2")),
    }
    path = Path(cfg.output_dir) / PAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_page(payload))
    size = path.stat().st_size
    log.info("explore: %s (%.1f MB, %d images)", path, size / 2**20, len(names))
    return {
        "images": len(names),
        "page": str(path),
        "page_bytes": size,
        "layers": meta["layers"],
        "attention": not meta["no_attention"],
        "similarity_precision": precision,
        **pca[3],
    }
