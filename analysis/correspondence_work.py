"""Sparse patch correspondence between two images (reference §3.8).

Patch features are the final-LayerNorm patch tokens; every patch of image 1 is matched to the patch
of image 2 with the highest similarity (raw dot product as the reference, or cosine). The drawn
pairs are the top-k patches of image 1 ranked by the model's own last-block [CLS] attention
(averaged over heads; the reference borrows a separate DINO model for this).

- `instance`: two random views of one image (random resized crop, flip, colour jitter, greyscale)
  whose crop boxes and flips are tracked, so the true match of each view-1 patch is known: the
  view-2 patch whose centre is nearest in the original image. Accuracy = fraction of view-1 patches
  inside view 2 whose predicted match lies within `eval_radius` grid cells (Chebyshev) of it.
- `class`: two images of one class: consecutive images of the same folder are paired (a class
  folder, or a stereo pair given as two files).

ViT only: a Swin backbone stops with one line (it has no [CLS] attention to rank the patches by).

    python -m analysis.correspondence pretrained=backbone.pth data_path=FOLDER mode=instance
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from plumbing import ConfigError, ImageReadError, autocast

from .common import (
    ImageItem,
    cls_attention,
    collect_images,
    inputs,
    new_figure,
    normalise,
    on_device,
    open_image,
    patch_features,
    require_cls_attention,
    save_figure,
)
from .config import SIMILARITIES, CorrespondenceConfig


@dataclass(frozen=True)
class View:
    """Where a square view of `size` px came from: crop box (original px) and horizontal flip."""

    top: float
    left: float
    height: float
    width: float
    flip: bool
    size: int

    def patch_centres(self, patch: int) -> np.ndarray:
        """Centres of the view's patches in original-image (y, x) coordinates: (N, 2), row-major."""
        g = self.size // patch
        c = (np.arange(g) + 0.5) * patch  # view px
        ys, xs = np.meshgrid(c, c, indexing="ij")
        xs = self.size - xs if self.flip else xs  # a flipped view shows the crop mirrored
        y = self.top + ys * self.height / self.size  # (g, g)
        x = self.left + xs * self.width / self.size
        return np.stack([y, x], -1).reshape(-1, 2)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which (y, x) original-image points fall inside this view's crop box: bool (N,)."""
        y, x = points[:, 0], points[:, 1]
        return (y >= self.top) & (y < self.top + self.height) & (x >= self.left) & (x < self.left + self.width)


def full_view(img: Image.Image, size: int) -> View:
    """The whole image resized to size x size, not flipped (the identity geometry)."""
    return View(0.0, 0.0, float(img.height), float(img.width), False, size)


def render(img: Image.Image, view: View) -> Image.Image:
    """The view's pixels: crop box resized to size x size (bicubic), then mirrored if flipped."""
    box = [round(view.top), round(view.left), round(view.height), round(view.width)]
    out = TF.resized_crop(img, *box, [view.size, view.size], interpolation=T.InterpolationMode.BICUBIC)
    return TF.hflip(out) if view.flip else out


def random_view(img: Image.Image, size: int, scale_min: float) -> tuple[View, Image.Image]:
    """A random view with tracked geometry, colour jitter (p=0.8) and greyscale (p=0.2).

    Draws from torch's global generator; `run_correspondence` forks and seeds it, so results are reproducible.
    """
    top, left, h, w = T.RandomResizedCrop.get_params(img, scale=(scale_min, 1.0), ratio=(3 / 4, 4 / 3))
    view = View(float(top), float(left), float(h), float(w), bool(torch.rand(()) < 0.5), size)
    jitter = T.Compose([T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(p=0.2)])
    return view, jitter(render(img, view))


# ----------------------------------------------------------------------------------- matching
def match(f1: Tensor, f2: Tensor, similarity: str = "dot") -> tuple[Tensor, Tensor]:
    """Best match in image 2 of every patch of image 1, and back: f (N, D) -> (N1,), (N2,) indices."""
    if similarity not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    if similarity == "cosine":
        f1, f2 = F.normalize(f1, dim=-1), F.normalize(f2, dim=-1)
    sim = f1 @ f2.T  # (N1, N2)
    return sim.argmax(1), sim.argmax(0)


def true_matches(v1: View, v2: View, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """(inside, target): which view-1 patches lie inside view 2, and the view-2 patch nearest each."""
    c1, c2 = v1.patch_centres(patch), v2.patch_centres(patch)
    dist = ((c1[:, None, :] - c2[None, :, :]) ** 2).sum(-1)  # (N1, N2)
    return v2.contains(c1), dist.argmin(1)


def within_radius(pred: np.ndarray, target: np.ndarray, grid: int, radius: int) -> np.ndarray:
    """Per patch: is the predicted match within `radius` grid cells (Chebyshev) of the true one."""
    pr, pc = np.divmod(pred, grid)
    tr, tc = np.divmod(target, grid)
    return (np.abs(pr - tr) <= radius) & (np.abs(pc - tc) <= radius)


def mutual_fraction(fwd: Tensor, bwd: Tensor) -> float:
    """Fraction of image-1 patches whose match maps back to them (mutual nearest neighbours)."""
    return float((bwd[fwd] == torch.arange(len(fwd), device=fwd.device)).float().mean())


# ------------------------------------------------------------------------------------ figures
def draw_pairs(
    im1: Image.Image, im2: Image.Image, src: np.ndarray, dst: np.ndarray, ok: np.ndarray | None, patch: int, path: Path
) -> str:
    """Images side by side, lines from each drawn patch of image 1 to its match in image 2."""
    grid = im1.width // patch
    canvas = np.concatenate([np.asarray(im1), np.asarray(im2)], axis=1)
    fig, axes = new_figure(1, panel=4.0, aspect=2.0)
    ax = axes[0, 0]
    ax.imshow(canvas)
    colours = ["lime" if good else "red" for good in ok] if ok is not None else None
    for i, (s, d) in enumerate(zip(src, dst, strict=True)):
        (y1, x1), (y2, x2) = ((np.array(divmod(int(t), grid)) + 0.5) * patch for t in (s, d))
        colour = colours[i] if colours else f"C{i % 10}"
        ax.plot([x1, x2 + im1.width], [y1, y2], "-o", color=colour, lw=1.2, ms=3)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------- run
def _pairs(items: list[ImageItem]) -> list[tuple[ImageItem, ImageItem]]:
    """Consecutive images of the same folder, two by two: (0, 1), (2, 3), ..."""
    out = []
    for _, group in itertools.groupby(items, key=lambda it: it.path.parent):
        g = list(group)
        out += [(g[i], g[i + 1]) for i in range(0, len(g) - 1, 2)]
    return out


def score_pairs(
    backbone: torch.nn.Module,
    pairs: list[tuple[Image.Image, Image.Image]],
    dev: torch.device,
    cfg: CorrespondenceConfig,
    views: list[tuple[View, View] | None] | None = None,
) -> list[dict]:
    """`score_pair` for several pairs of equal-size images in one forward pass."""
    x = torch.cat([normalise(im) for pair in pairs for im in pair]).to(dev)  # (2P, 3, S, S): pair i at 2i, 2i+1
    with autocast(dev, cfg.precision):
        feats = patch_features(backbone, x).flatten(1, 2).float()  # (2P, N, D)
        attn = cls_attention(backbone, x[0::2]).mean(1).flatten(1).float().cpu().numpy()  # (P, N) head mean
    return [
        _pair_record(feats[2 * i], feats[2 * i + 1], attn[i], backbone.patch_size, pair[0].width, cfg, v)
        for i, (pair, v) in enumerate(zip(pairs, views or [None] * len(pairs), strict=True))
    ]


def _pair_record(f1: Tensor, f2: Tensor, attn: np.ndarray, patch: int, width: int, cfg, views) -> dict:
    """Matches of one pair from its patch features (N, D) and image 1's [CLS] attention (N,); the
    images are `width` px square."""
    fwd, bwd = match(f1, f2, cfg.similarity)
    rec = {"mutual": mutual_fraction(fwd, bwd), "correct": 0, "evaluated": 0, "pred": fwd.cpu().numpy(), "ok": None}
    rank = np.argsort(-attn, kind="stable")
    if views is not None:
        inside, target = true_matches(views[0], views[1], patch)
        rec["ok"] = within_radius(rec["pred"], target, width // patch, cfg.eval_radius)
        rec["correct"], rec["evaluated"] = int((rec["ok"] & inside).sum()), int(inside.sum())
        rank = rank[inside[rank]]  # only patches visible in both views
    rec["rank"] = rank
    return rec


def score_pair(
    backbone: torch.nn.Module,
    ims: tuple[Image.Image, Image.Image],
    dev: torch.device,
    cfg: CorrespondenceConfig,
    views: tuple[View, View] | None = None,
) -> dict:
    """Match image 1's patches in image 2; with the views' geometry also count correct matches.

    Returns mutual (fraction of mutual nearest neighbours), correct / evaluated (0 without views),
    pred (N,) matches, ok (N,) bool or None, and rank: image 1's patches by [CLS] attention, the
    patches outside view 2 dropped. Call under torch.no_grad with the backbone in eval mode.
    """
    return score_pairs(backbone, [ims], dev, cfg, [views])[0]


class _Pairs(Dataset):
    """The decoded images of each pair (PIL, PIL); an unreadable image gives its error message."""

    def __init__(self, pairs: list[tuple[ImageItem, ImageItem]]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Image.Image, Image.Image] | str:
        try:
            return open_image(self.pairs[i][0].path), open_image(self.pairs[i][1].path)
        except ImageReadError as e:
            return str(e)


def _as_is(sample: object) -> object:
    return sample


def _decoded(pairs: list[tuple[ImageItem, ImageItem]], num_workers: int) -> Iterator[tuple[Image.Image, Image.Image]]:
    """The pairs' images in order, decoded by `num_workers` loader processes."""
    loader = DataLoader(_Pairs(pairs), batch_size=None, num_workers=num_workers, collate_fn=_as_is)
    for item in loader:
        if isinstance(item, str):
            raise ImageReadError(item)
        yield item


def _prepare(imgs: tuple[Image.Image, Image.Image], cfg: CorrespondenceConfig):
    """(image 1, image 2, views): two random views of image 1 (instance) or both images resized (class)."""
    if cfg.mode == "instance":
        (v1, im1), (v2, im2) = (random_view(imgs[0], cfg.image_size, cfg.crop_scale_min) for _ in range(2))
        return im1, im2, (v1, v2)
    size = (cfg.image_size, cfg.image_size)
    return imgs[0].resize(size, Image.BICUBIC), imgs[1].resize(size, Image.BICUBIC), None


def _score_chunk(backbone, chunk: list[tuple], cfg: CorrespondenceConfig, dev, names: list[str]) -> list[dict]:
    """Score prepared pairs (im1, im2, views) at once; draw those given a figure name."""
    recs = score_pairs(backbone, [(c[0], c[1]) for c in chunk], dev, cfg, [c[2] for c in chunk])
    for (im1, im2, _), rec, name in zip(chunk, recs, names, strict=True):
        if name:
            src = rec["rank"][: cfg.topk]
            ok = rec["ok"][src] if rec["ok"] is not None else None
            path = Path(cfg.output_dir) / name
            rec["figure"] = draw_pairs(im1, im2, src, rec["pred"][src], ok, backbone.patch_size, path)
    return recs


def _all_pairs(cfg: CorrespondenceConfig) -> list[tuple[ImageItem, ImageItem]]:
    items = collect_images(inputs(cfg), cfg.max_images)
    if cfg.mode == "instance":
        return [(it, it) for it in items for _ in range(cfg.views_per_image)]
    pairs = _pairs(items)
    if not pairs:
        raise ConfigError("class mode needs two images in one folder (pairs are consecutive images of a folder)")
    return pairs


def run_correspondence(backbone: torch.nn.Module, cfg: CorrespondenceConfig) -> dict:
    """Match patches over every pair; instance mode reports matching accuracy. ViT only: the drawn
    pairs are ranked by [CLS] attention, which a Swin does not have (ConfigError)."""
    require_cls_attention(backbone, "correspondence rankings")
    cfg.check()
    if cfg.image_size % backbone.patch_size:
        raise ConfigError(f"image_size {cfg.image_size} is not a multiple of the patch size {backbone.patch_size}")
    pairs = _all_pairs(cfg)
    records: list[dict] = []
    names = [
        f"corr_{cfg.mode}_{n:03d}_{Path(p[0].rel).with_suffix('').as_posix().replace('/', '_')}.png"
        if n < cfg.max_figures else ""
        for n, p in enumerate(pairs)
    ]  # fmt: skip
    with torch.random.fork_rng(devices=[]), on_device([backbone], cfg.device) as dev:
        torch.manual_seed(cfg.seed)  # the views are drawn in pair order, in this process: reproducible
        chunk: list[tuple] = []
        bar = tqdm(total=len(pairs), desc=f"correspondence ({cfg.mode})", unit="pair", disable=not cfg.progress)
        for imgs in _decoded(pairs, cfg.num_workers):
            chunk.append(_prepare(imgs, cfg))
            if len(chunk) == cfg.batch_size_per_gpu or len(records) + len(chunk) == len(pairs):
                records += _score_chunk(backbone, chunk, cfg, dev, names[len(records) : len(records) + len(chunk)])
                bar.update(len(chunk))
                chunk = []
        bar.close()
    correct, evaluated = sum(r["correct"] for r in records), sum(r["evaluated"] for r in records)
    results = {
        "mode": cfg.mode,
        "pairs": len(records),
        "similarity": cfg.similarity,
        "mutual_nn_fraction": round(float(np.mean([r["mutual"] for r in records])), 4),
        "figures": [r["figure"] for r in records if "figure" in r],
    }
    if cfg.mode == "instance":
        results |= {"accuracy": round(correct / max(evaluated, 1), 4), "eval_radius": cfg.eval_radius}
        results["patches_evaluated"] = evaluated
    return results
