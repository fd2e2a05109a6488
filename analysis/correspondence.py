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

    python -m analysis.correspondence checkpoint=backbone.pth images=FOLDER mode=instance
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from pretrain import ConfigError

from .common import (
    AnalysisConfig,
    ImageItem,
    cli_main,
    cls_attention,
    collect_images,
    finish,
    new_figure,
    normalise,
    on_device,
    open_image,
    patch_features,
    require_cls_attention,
    save_figure,
)

MODES = ("instance", "class")
SIMILARITIES = ("dot", "cosine")


@dataclass
class CorrespondenceConfig(AnalysisConfig):
    output_dir: str = "output/analysis/correspondence"
    mode: str = "instance"  # instance (two views of one image) | class (two images of one folder)
    image_size: int = 224  # views / images are image_size x image_size
    crop_scale_min: float = 0.4  # random resized crop scale range (crop_scale_min, 1)
    views_per_image: int = 1  # instance mode: view pairs drawn per image
    topk: int = 12  # pairs drawn per figure
    eval_radius: int = 0  # grid cells
    similarity: str = "dot"  # dot (reference) | cosine
    max_figures: int = 8
    seed: int = 1


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

    Draws from torch's global generator; `run` forks and seeds it, so results are reproducible.
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
    p = backbone.patch_size
    x = torch.cat([normalise(im) for im in ims]).to(dev)  # (2, 3, S, S)
    feats = patch_features(backbone, x).flatten(1, 2).float()  # (2, N, D)
    fwd, bwd = match(feats[0], feats[1], cfg.similarity)
    attn = cls_attention(backbone, x[:1])[0].mean(0).flatten().float().cpu().numpy()  # (N,) head mean
    rec = {"mutual": mutual_fraction(fwd, bwd), "correct": 0, "evaluated": 0, "pred": fwd.cpu().numpy(), "ok": None}
    rank = np.argsort(-attn, kind="stable")
    if views is not None:
        inside, target = true_matches(views[0], views[1], p)
        rec["ok"] = within_radius(rec["pred"], target, ims[0].width // p, cfg.eval_radius)
        rec["correct"], rec["evaluated"] = int((rec["ok"] & inside).sum()), int(inside.sum())
        rank = rank[inside[rank]]  # only patches visible in both views
    rec["rank"] = rank
    return rec


def _one(
    backbone: torch.nn.Module,
    pair: tuple[ImageItem, ImageItem],
    cfg: CorrespondenceConfig,
    dev: torch.device,
    path: Path | None,
) -> dict:
    """One pair (instance: two random views of pair[0]; class: pair[0] vs pair[1]); drawn if `path`."""
    size, img1 = cfg.image_size, open_image(pair[0].path)
    views = None
    if cfg.mode == "instance":
        (v1, im1), (v2, im2) = (random_view(img1, size, cfg.crop_scale_min) for _ in range(2))
        views = (v1, v2)
    else:
        im1 = img1.resize((size, size), Image.BICUBIC)
        im2 = open_image(pair[1].path).resize((size, size), Image.BICUBIC)
    rec = score_pair(backbone, (im1, im2), dev, cfg, views)
    if path is not None:
        src = rec["rank"][: cfg.topk]
        ok = rec["ok"][src] if rec["ok"] is not None else None
        rec["figure"] = draw_pairs(im1, im2, src, rec["pred"][src], ok, backbone.patch_size, path)
    return rec


def run(backbone: torch.nn.Module, cfg: CorrespondenceConfig) -> dict:
    """Match patches over every pair; instance mode reports matching accuracy. ViT only: the drawn
    pairs are ranked by [CLS] attention, which a Swin does not have (ConfigError)."""
    require_cls_attention(backbone, "correspondence rankings")
    if cfg.mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    if cfg.similarity not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {cfg.similarity!r}")
    if cfg.image_size % backbone.patch_size:
        raise ConfigError(f"image_size {cfg.image_size} is not a multiple of the patch size {backbone.patch_size}")
    items = collect_images(cfg.images, cfg.max_images)
    if cfg.mode == "instance":
        pairs = [(it, it) for it in items for _ in range(cfg.views_per_image)]
    else:
        pairs = _pairs(items)
        if not pairs:
            raise ConfigError("class mode needs two images in one folder (pairs are consecutive images of a folder)")
    out, records = Path(cfg.output_dir), []
    with torch.random.fork_rng(devices=[]), on_device([backbone], cfg.device) as dev:
        torch.manual_seed(cfg.seed)
        for n, pair in enumerate(tqdm(pairs, desc=f"correspondence ({cfg.mode})", unit="pair")):
            stem = Path(pair[0].rel).with_suffix("").as_posix().replace("/", "_")
            path = out / f"corr_{cfg.mode}_{n:03d}_{stem}.png" if n < cfg.max_figures else None
            records.append(_one(backbone, pair, cfg, dev, path))
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
    return finish(cfg, results)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 for bad config, data or checkpoint)."""
    return cli_main(CorrespondenceConfig, run, "analysis.correspondence", argv)


if __name__ == "__main__":
    raise SystemExit(main())
