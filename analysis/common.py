"""Pieces every analysis tool shares, written once: inputs, preprocessing, thresholding, figures, CLI.

Each tool is `run(backbone, cfg) -> dict` plus `python -m analysis.<tool> key=value`. The config
classes extend `AnalysisConfig`; `cli_main` is the thin shell that parses the config, loads the
backbone and turns the expected failures (bad config, data, checkpoint) into exit code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from pretrain import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageReadError,
    SwinBackbone,
    arch_name,
    list_images,
    load_backbone,
    mask_grid,
    parse_config,
    resolve_device,
    save_config,
    write_results,
)

RESIZE_MODES = ("short_side", "square", "none")


@dataclass
class AnalysisConfig:
    """Fields every analysis tool has; tools subclass it and add their own."""

    images: list[str] = field(default_factory=list)  # folders (searched recursively) and/or image files
    checkpoint: str = ""  # backbone file for the CLI; run() receives the backbone itself
    checkpoint_key: str = "teacher"
    output_dir: str = "output/analysis"
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:N
    max_images: int = 0  # 0 = all
    seed: int = 0


@dataclass(frozen=True)
class ImageItem:
    """An input image and its path relative to the folder it was found in (its name for a file)."""

    path: Path
    rel: str


# ------------------------------------------------------------------------------------- inputs
def collect_images(entries: list[str], max_images: int = 0) -> list[ImageItem]:
    """Resolve folders and files into a sorted, de-duplicated list; raises DatasetError if empty."""
    if not entries:
        raise DatasetError("no input images: set images=[FOLDER or FILE, ...]")
    items: list[ImageItem] = []
    for entry in entries:
        root = Path(entry)
        if root.is_dir():
            found = list_images(root)
            if not found:
                raise DatasetError(f"no images found under {root}")
            items += [ImageItem(p, p.relative_to(root).as_posix()) for p in found]
        elif root.is_file():  # a file given by name is read as an image (ImageReadError if it is not)
            items.append(ImageItem(root, root.name))
        else:
            raise DatasetError(f"input not found: {root}")
    seen: set[Path] = set()
    unique = [it for it in items if not (it.path in seen or seen.add(it.path))]
    return unique[:max_images] if max_images > 0 else unique


def open_image(path: Path, mode: str = "RGB") -> Image.Image:
    """Decoded image in `mode`; ImageReadError names the file when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None


def fit_image(img: Image.Image, patch_size: int, resize: str, size: int, resample: int = Image.BICUBIC) -> Image.Image:
    """Resize (`short_side`: shorter side to `size`, aspect kept; `square`: size x size, as the
    reference's 480x480; `none`) and crop the bottom/right remainder to a multiple of the patch."""
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    w, h = img.size
    if resize == "square":
        img = img.resize((size, size), resample)
    elif resize == "short_side":
        scale = size / min(w, h)
        img = img.resize((max(round(w * scale), 1), max(round(h * scale), 1)), resample)
    w, h = img.size
    w2, h2 = w - w % patch_size, h - h % patch_size
    if w2 == 0 or h2 == 0:
        raise DatasetError(f"image of {w}x{h} px is smaller than one {patch_size}-px patch")
    return img.crop((0, 0, w2, h2))


def normalise(img: Image.Image) -> Tensor:
    """PIL RGB -> ImageNet-normalised tensor (1, 3, H, W)."""
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD).unsqueeze(0)


# ------------------------------------------------------------------------------- model access
@contextlib.contextmanager
def on_device(modules: list[nn.Module], device: str) -> Iterator[torch.device]:
    """Move modules to `device` in eval mode for the block; restore their device and mode after."""
    dev = resolve_device(device)
    before = [(next(m.parameters()).device, m.training) for m in modules]
    for m in modules:
        m.to(dev).eval()
    try:
        with torch.inference_mode():
            yield dev
    finally:
        for m, (d, training) in zip(modules, before, strict=True):
            m.to(d).train(training)


def require_cls_attention(backbone: nn.Module, user: str = "attention maps", hint: str = "") -> None:
    """Raise ConfigError (one line, exit 2 in the CLIs) for a backbone without [CLS] self-attention.

    Swin's attention is local to windows and its [CLS] is a token average; `user` names what needs it,
    `hint` (optional) says how to do without.
    """
    if isinstance(backbone, SwinBackbone):
        tail = f" ({hint})" if hint else ""
        raise ConfigError(f"{arch_name(backbone)} has no [CLS] self-attention: {user} need a ViT backbone{tail}")


def cls_attention(backbone: nn.Module, x: Tensor) -> Tensor:
    """[CLS] -> patch attention of the last block per head: (B, heads, h, w); ViT only."""
    require_cls_attention(backbone)
    p = backbone.patch_size
    attn = backbone.get_last_selfattention(x)  # (B, heads, 1+N, 1+N)
    B, heads = attn.shape[:2]
    return attn[:, :, 0, 1:].reshape(B, heads, x.shape[-2] // p, x.shape[-1] // p)


def patch_features(backbone: nn.Module, x: Tensor) -> Tensor:
    """Patch tokens after the final LayerNorm, on their grid: (B, h, w, D); h = H / `mask_grid`
    (the ViT patch; 32 px for Swin, whose tokens are the final stage's)."""
    p = mask_grid(backbone)
    tokens = backbone.forward_features(x)[:, 1:]  # (B, N, D)
    return tokens.reshape(x.shape[0], x.shape[-2] // p, x.shape[-1] // p, -1)


# ------------------------------------------------------------------------------ thresholding
def mass_threshold(attn: Tensor, mass: float = 0.6) -> Tensor:
    """Keep the smallest set of positions holding >= `mass` of each map's total (reference §3.8).

    `attn` (..., N) non-negative -> bool (..., N). As the reference: sort ascending, normalise to
    sum 1, cumulative sum, keep positions whose cumsum > 1 - mass. Computed in float64 with a 1e-9
    slack so that a set holding exactly `mass` is not padded by a rounding error. Ties at the cut
    are broken by the (stable) sort order.
    """
    a = attn.detach().double()
    vals, idx = torch.sort(a, dim=-1, stable=True)
    total = vals.sum(-1, keepdim=True).clamp_min(1e-300)
    cum = torch.cumsum(vals / total, dim=-1)
    keep_sorted = cum > (1.0 - mass) + 1e-9
    return torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)


def upsample(grid: np.ndarray, factor: int) -> np.ndarray:
    """Nearest upsampling of the first two axes (a patch grid -> pixels)."""
    return np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)


def minmax(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant array becomes zeros."""
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a, dtype=float)


# ----------------------------------------------------------------------------------- figures
def new_figure(cols: int, rows: int = 1, panel: float = 2.6, aspect: float = 1.0) -> tuple[Figure, np.ndarray]:
    """A figure of rows x cols panels (axes array, axis lines off); `aspect` = width / height."""
    fig = Figure(figsize=(max(cols * panel * aspect, 1.0), max(rows * panel, 1.0)))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).reshape(rows, cols)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def save_figure(fig: Figure, path: Path, dpi: int = 100) -> str:
    """Write a PNG through matplotlib's Agg canvas (no pyplot, no global backend state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return str(path)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of a ceil(sqrt(n))-wide grid holding n panels."""
    cols = max(math.ceil(math.sqrt(n)), 1)
    return max(math.ceil(n / cols), 1), cols


def finish(cfg: Any, results: dict) -> dict:
    """Write config.yaml and results.json into cfg.output_dir; returns the results."""
    save_config(cfg, cfg.output_dir)
    write_results(results, cfg.output_dir)
    return results


# ----------------------------------------------------------------------------------------- CLI
def _list_args(schema: type, argv: list[str]) -> list[str]:
    """Let `images=FOLDER` stand for `images=[FOLDER]` on the command line."""
    lists = {f.name for f in dataclasses.fields(schema) if "list" in str(f.type)}
    out = []
    for arg in argv:
        key, _, value = arg.partition("=")
        out.append(f"{key}=[{value}]" if key in lists and value and not value.startswith("[") else arg)
    return out


def cli_main(schema: type, run: Callable[[nn.Module, Any], dict], prog: str, argv: list[str] | None = None) -> int:
    """Parse `[--config FILE] key=value`, load the backbone, run; expected failures exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = parse_config(schema, _list_args(schema, argv), prog=prog)
        if not cfg.checkpoint:
            raise ConfigError("checkpoint=PATH is required (an exported backbone or a training checkpoint)")
        backbone, _ = load_backbone(cfg.checkpoint, cfg.checkpoint_key)
        results = run(backbone, cfg)
    except (ConfigError, DatasetError, CheckpointError, ImageReadError, FileNotFoundError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in results.items() if isinstance(v, (int, float, str))}
    print(f"{prog}: wrote {cfg.output_dir}/results.json {summary}")
    return 0
