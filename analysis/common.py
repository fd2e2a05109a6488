"""Pieces every analysis tool shares, written once: inputs, pre-processing, thresholding, figures.

Each tool is `run_<tool>(backbone, cfg) -> dict` (in `analysis/<tool>_work.py`) behind its command
`python -m analysis.<tool> key=value` (`analysis/<tool>.py`, evalkit's shell, which writes config.yaml
and results.json); configs are in `analysis.config`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import InterpolationMode

from plumbing import ConfigError, DatasetError, ImageReadError, resolve_device
from pretrain import IMAGENET_MEAN, IMAGENET_STD, SwinBackbone, arch_name, list_images, mask_grid, open_rgb

from .config import RESIZE_MODES


@dataclass(frozen=True)
class ImageItem:
    """An input image and its path relative to the folder it was found in (its name for a file)."""

    path: Path
    rel: str


# ------------------------------------------------------------------------------------- inputs
def collect_images(entries: list[str], max_images: int = 0) -> list[ImageItem]:
    """Resolve folders and files into a sorted, de-duplicated list; raises DatasetError if empty."""
    if not entries:
        raise DatasetError("no input images: set data_path=FOLDER (or an image file)")
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
    """Decoded image in `mode` (through 8-bit RGB: 16-bit greyscale is scaled, `pretrain.to_rgb`);
    ImageReadError names the file when it cannot be read (a decompression bomb included)."""
    rgb = open_rgb(path)
    return rgb if mode == "RGB" else rgb.convert(mode)


def inputs(cfg: Any) -> list[str]:
    """What a tool analyses: its `images` override when given, else `data_path`."""
    return list(getattr(cfg, "images", None) or ([cfg.data_path] if cfg.data_path else []))


def fit_image(
    img: Image.Image,
    patch_size: int,
    resize: str,
    size: int,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
) -> Image.Image:
    """torchvision's `Resize` on the PIL image, then the bottom/right remainder cropped to a multiple
    of the patch size.

    `square`: `Resize((size, size))` (aspect not kept: the authors' 480 x 480); `short_side`:
    `Resize(size)` (shorter side to `size`, the longer one `int(size * long / short)`); `none`: no
    resize. The default interpolation is `Resize`'s own (bilinear; PIL resizes with antialiasing).
    """
    if resize not in RESIZE_MODES:
        raise ConfigError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if resize == "square":
        img = TF.resize(img, [size, size], interpolation)
    elif resize == "short_side":
        img = TF.resize(img, size, interpolation)
    w, h = img.size
    w2, h2 = w - w % patch_size, h - h % patch_size
    if w2 == 0 or h2 == 0:
        raise DatasetError(f"image of {w}x{h} px is smaller than one {patch_size}-px patch")
    return img.crop((0, 0, w2, h2))


def normalise(img: Image.Image) -> Tensor:
    """PIL RGB -> ImageNet-normalised tensor (1, 3, H, W) (`ToTensor` then `Normalize`)."""
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD).unsqueeze(0)


class FittedImages(Dataset):
    """Items as (normalised image (3, H, W), uint8 RGB (H, W, 3), index), each image passed through
    `fit` (PIL -> PIL); an unreadable image gives its error message instead (see `image_loader`)."""

    def __init__(self, items: list[ImageItem], fit: Callable[[Image.Image], Image.Image]):
        self.items, self.fit = items, fit

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int] | str:
        try:
            img = self.fit(open_image(self.items[i].path))
        except (ImageReadError, DatasetError) as e:  # re-raised in the main process as one line
            return f"{type(e).__name__}: {e}"
        return normalise(img)[0], torch.from_numpy(np.array(img, dtype=np.uint8)), i


def _collate(samples: list) -> Any:
    errors = [s for s in samples if isinstance(s, str)]
    return errors[0] if errors else default_collate(samples)


def image_loader(dataset: Dataset, batch_size: int, num_workers: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Batches (images (B, 3, H, W), rgb (B, H, W, 3) uint8, indices (B,)) in dataset order; an image
    that cannot be read raises ImageReadError / DatasetError here, in the main process (one line)."""
    loader = DataLoader(dataset, batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate)
    for batch in loader:
        if isinstance(batch, str):
            kind, _, message = batch.partition(": ")
            raise (DatasetError if kind == "DatasetError" else ImageReadError)(message)
        yield batch


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
