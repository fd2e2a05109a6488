"""Backgrounds challenge: ImageNet-9 variants, BG-gap and % vulnerable foregrounds (reference §3.8).

`data_path` holds one folder per variant (IN-9: `<root>/<variant>/val/<class>/...`; the demo world:
`<world>/backgrounds/<variant>/<class>/...`); every variant folder except `fg_mask` is evaluated
unless `variants` names some. Images are read as they are (IN-9 images are 224 x 224; other sizes
are resized to `image_size`) and ImageNet-normalised. The classifier's argmax output is mapped to a
variant class through `class_map`: by default `in_to_in9`, the challenge's own map shipped in
`analysis/robustness/data/` ({"<ImageNet index>": IN-9 class or -1}, the 630 classes outside the
nine map to -1: an output mapped to -1 is wrong); or `names`, `identity`, a map file (see
`common.load_output_map`).
BG-gap = top-1(mixed_same) - top-1(mixed_rand).

Challenge (`challenge=true`): every foreground (an image of `fg_dir` times its mask from `mask_dir`,
same relative path with a .npy (IN-9) or image file, nonzero = object) is pasted on every background
of `bg_dir` (combined = bg * (1 - mask) + mask * fg); a foreground is vulnerable if any combination
is misclassified. Defaults follow IN-9: original/val, fg_mask/val, only_bg_t/val. The demo world has
no only_bg_t; use its `no_fg` variant and `classification/masks/val` there.

A world without backgrounds (objects on one uniform colour, as the demo's silhouette world) makes
every variant that swaps or removes the background (only_fg, mixed_same, mixed_rand, mixed_next)
the same pictures as `original`: every variant would score the same top-1, a row that says nothing.
When the files show it, nothing is evaluated and the results hold `skipped` (one line why), logged.

    python -m analysis.robustness.backgrounds classifier=... pretrained=... data_path=/data/bg_challenge \
        challenge=true
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchvision import transforms as T

from plumbing import ConfigError, DatasetError, autocast
from pretrain import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataset, list_images

from ..common import on_device, open_image
from .common import (
    accuracy,
    batches,
    classifier_info,
    correct,
    image_size,
    load_output_map,
    make_loader,
    plot_curves,
    subset,
)
from .config import BackgroundsConfig

log = logging.getLogger(__name__)
SKIPPED = ("fg_mask",)
SWAPPED = ("only_fg", "mixed_same", "mixed_rand", "mixed_next")  # variants that change original's background
MASK_SUFFIXES = (".npy", ".png", ".PNG", ".jpg", ".JPEG", ".jpeg")


def variant_dir(root: Path, variant: str) -> Path:
    """`root/variant/val` when it exists (IN-9), else `root/variant` (demo world)."""
    return root / variant / "val" if (root / variant / "val").is_dir() else root / variant


def find_variants(root: Path, requested: list[str]) -> list[str]:
    """The requested variants, or every sub-folder of `root` except fg_mask (sorted)."""
    if not root.is_dir():
        raise DatasetError(f"data_path={str(root)!r} is not a folder of background variants")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in SKIPPED)
    missing = [v for v in requested if v not in found]
    if missing:
        raise DatasetError(f"variants {missing} not found under {root}; found {found}")
    if not found:
        raise DatasetError(
            f"data_path={str(root)!r} holds no variant folders: expected <root>/<variant>/[val/]<class>/<images> "
            "(IN-9: original, only_fg, mixed_same, mixed_rand, ...)"
        )
    return list(requested) or found


def to_input(size: int, normalise: bool = True) -> T.Compose:
    """ToTensor (+ resize when the image is not `size` x `size`) (+ ImageNet normalisation)."""
    steps = [T.Resize((size, size), antialias=True), T.ToTensor()]
    return T.Compose(steps + ([T.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalise else []))


def bg_gap(top1: dict[str, float]) -> float | None:
    """mixed_same - mixed_rand (None when either was not evaluated)."""
    if "mixed_same" in top1 and "mixed_rand" in top1:
        return top1["mixed_same"] - top1["mixed_rand"]
    return None


def same_picture(a: Path, b: Path) -> bool:
    """Two image files show the same picture: same size, mean absolute difference under one grey level."""
    x, y = (np.asarray(open_image(p), dtype=np.int16) for p in (a, b))
    return x.shape == y.shape and float(np.abs(x - y).mean()) < 1.0


def no_backgrounds(root: Path, variants: list[str]) -> str | None:
    """Why the variants cannot measure a background's effect, or None: every variant that swaps or
    removes the background holds, file for file, `original`'s pictures (the images have no background
    to change). Stops at the first picture that differs (real backgrounds: after one file)."""
    swapped = [v for v in variants if v in SWAPPED]
    if "original" not in variants or not swapped:
        return None
    orig = variant_dir(root, "original")
    files = [p.relative_to(orig) for p in list_images(orig)]
    pairs = [(orig / rel, variant_dir(root, v) / rel) for v in swapped for rel in files]
    if not files or not all(b.is_file() and same_picture(a, b) for a, b in pairs):
        return None
    return (
        f"no backgrounds to change: every image of {', '.join(swapped)} equals its original "
        f"({len(files)} images; objects on one uniform background), so every variant would score the same"
    )


def _variant_top1(model: nn.Module, folder: Path, cfg, size: int, info: dict, dev) -> tuple[float, int]:
    ds = ImageFolderDataset(folder, to_input(size))
    out_map = load_output_map(cfg.class_map, info["num_classes"], ds.classes, info.get("classes"))
    hits, n = 0, 0
    for x, y in batches(make_loader(subset(ds, cfg.max_images, cfg.seed), cfg), dev, folder.name, cfg.progress):
        with autocast(dev, cfg.precision):
            hits += correct(model(x), y, out_map)
        n += len(y)
    return accuracy(hits, n), n


def read_mask(mask_dir: Path, rel: Path, size: int) -> Tensor:
    """(1, size, size) float mask of the foreground at `rel` (nonzero = object), nearest-resized."""
    stem = str(mask_dir / rel.with_suffix(""))
    hits = [Path(stem + ext) for ext in MASK_SUFFIXES if Path(stem + ext).is_file()]
    if not hits:
        raise DatasetError(f"no mask for {rel} under {mask_dir} (expected {stem}.npy or .png)")
    arr = np.load(hits[0]) if hits[0].suffix == ".npy" else np.asarray(open_image(hits[0], "L"))
    mask = torch.from_numpy((np.asarray(arr) > 0).astype(np.float32))[None, None]  # (1, 1, h, w)
    return torch.nn.functional.interpolate(mask, size=(size, size), mode="nearest")[0]


def _challenge_dirs(cfg: BackgroundsConfig) -> tuple[Path, Path, Path]:
    root = Path(cfg.data_path)
    return (
        Path(cfg.fg_dir) if cfg.fg_dir else variant_dir(root, "original"),
        Path(cfg.mask_dir) if cfg.mask_dir else variant_dir(root, "fg_mask"),
        Path(cfg.bg_dir) if cfg.bg_dir else variant_dir(root, "only_bg_t"),
    )


def vulnerable_foregrounds(model: nn.Module, cfg: BackgroundsConfig, size: int, info: dict, dev) -> dict:
    """% of foregrounds misclassified on at least one background of bg_dir (the challenge)."""
    fg_dir, mask_dir, bg_dir = _challenge_dirs(cfg)
    fgs = ImageFolderDataset(fg_dir, to_input(size, normalise=False))
    out_map = load_output_map(cfg.class_map, info["num_classes"], fgs.classes, info.get("classes")).to(dev)
    bgs = subset(ImageFolderDataset(bg_dir, to_input(size, normalise=False)), cfg.max_backgrounds, cfg.seed)
    # (M, 3, S, S) uint8: all backgrounds stay on the device (IN-9's 4050 at 224 px: 0.6 GB)
    bg = torch.stack([(bgs[i][0] * 255).round().to(torch.uint8) for i in range(len(bgs))]).to(dev)
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    chosen = subset(fgs, cfg.max_foregrounds, cfg.seed)
    vulnerable = 0
    for j in range(len(chosen)):
        fg, label, i = chosen[j]
        mask = read_mask(mask_dir, fgs.samples[i][0].relative_to(fg_dir), size).to(dev)  # (1, S, S)
        for start in range(0, len(bg), cfg.batch_size_per_gpu):
            back = bg[start : start + cfg.batch_size_per_gpu].float() / 255
            combined = back * (1 - mask) + mask * fg.to(dev)  # (b, 3, S, S)
            with autocast(dev, cfg.precision):
                pred = out_map[model(norm(combined.clamp(0, 1))).argmax(dim=1)]
            if (pred != label).any():
                vulnerable += 1
                break
    n = len(chosen)
    return {"vulnerable_percent": accuracy(vulnerable, n), "challenge_top1": 100.0 - accuracy(vulnerable, n),
            "num_foregrounds": n, "num_backgrounds": len(bg)}  # fmt: skip


def run_backgrounds(classifier: nn.Module, cfg: BackgroundsConfig, info: dict | None = None) -> dict:
    """Top-1 on every variant, BG-gap and (with challenge=true) % vulnerable foregrounds; on images
    without backgrounds (`no_backgrounds`) only `skipped`, `image_size` and `variants`."""
    info = classifier_info(classifier, info)
    size = image_size(cfg, info)
    if not cfg.data_path:
        raise ConfigError("data_path=FOLDER of background variants is required")
    root = Path(cfg.data_path)
    variants = find_variants(root, cfg.variants)
    reason = no_backgrounds(root, variants)
    if reason is not None:
        log.warning("backgrounds skipped: %s", reason)
        return {"skipped": reason, "image_size": size, "variants": variants}
    top1, counts = {}, {}
    with on_device([classifier], cfg.device) as dev:
        for v in variants:
            top1[v], counts[v] = _variant_top1(classifier, variant_dir(root, v), cfg, size, info, dev)
        challenge = vulnerable_foregrounds(classifier, cfg, size, info, dev) if cfg.challenge else None
    out = {"image_size": size, "top1": top1, "num_images": counts, "bg_gap": bg_gap(top1)}
    if challenge is not None:
        out["challenge"] = challenge
    curve = {"top-1": (range(len(variants)), [top1[v] for v in variants])}
    path = Path(cfg.output_dir) / "backgrounds.png"
    out["figure"] = plot_curves(path, curve, "variant", "top-1 %", "background variants", variants)
    return out
