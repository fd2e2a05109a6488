"""PCA feature maps: the first three principal components of patch features shown as RGB.

Beyond the reference (the figures popularised by DINOv2). Patch features are the final-LayerNorm
patch tokens. With `joint=true` one PCA is fitted over the patches of all images, so the same
colour means the same feature direction across images; otherwise one PCA per image.

Foreground separation (`foreground=true`): the first component is min-max scaled and cut at
`fg_threshold`; its sign is chosen so that the side touching more of the image border is the
background. A second PCA fitted on the foreground patches only then colours the foreground, and
the background is drawn black.

Swin backbones work too: their patch features are the final-stage tokens, one per 32 px.

    python -m analysis.pca pretrained=backbone.pth data_path=FOLDER foreground=true
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from torchvision.transforms import InterpolationMode
from tqdm import tqdm

from plumbing import autocast
from pretrain import mask_grid

from .common import (
    FittedImages,
    collect_images,
    fit_image,
    image_loader,
    inputs,
    new_figure,
    on_device,
    patch_features,
    save_figure,
    upsample,
)
from .config import PCAConfig


def fit_pca(x: np.ndarray, k: int = 3) -> tuple[np.ndarray, list[float]]:
    """Projections of rows of x (n, D) on the first k components, min-max scaled per component to
    [0, 1] over the fitted set, and the components' explained-variance ratios."""
    k = min(k, *x.shape)
    pca = PCA(n_components=k, svd_solver="full")
    z = pca.fit_transform(x)  # (n, k)
    z = (z - z.min(0)) / np.maximum(z.max(0) - z.min(0), 1e-12)
    if k < 3:  # a tiny set: pad to RGB
        z = np.concatenate([z, np.zeros((len(z), 3 - k))], axis=1)
    return z, pca.explained_variance_ratio_.round(4).tolist()


def border_mask(shapes: list[tuple[int, int]]) -> np.ndarray:
    """For the concatenated patches of grids of these shapes: which patches touch a grid border."""
    out = []
    for h, w in shapes:
        b = np.zeros((h, w), dtype=bool)
        b[0], b[-1], b[:, 0], b[:, -1] = True, True, True, True
        out.append(b.ravel())
    return np.concatenate(out)


def foreground_split(x: np.ndarray, shapes: list[tuple[int, int]], threshold: float) -> np.ndarray:
    """Foreground patches (bool, (n,)) from the first principal component, oriented by the border."""
    pc1 = fit_pca(x, 1)[0][:, 0]  # (n,) in [0, 1]
    fg = pc1 > threshold
    border = border_mask(shapes)
    # The background is the side that touches the border more (all-border grids: the larger side).
    flip = fg[border].mean() > fg[~border].mean() if (~border).any() else fg.mean() > 0.5
    return (1.0 - pc1) > threshold if flip else fg


def colour_maps(feats: list[np.ndarray], cfg: PCAConfig) -> tuple[list[np.ndarray], list[np.ndarray | None], dict]:
    """RGB maps (h, w, 3) per image, foreground masks (h, w) or None, and statistics."""
    shapes = [f.shape[:2] for f in feats]
    groups = [list(range(len(feats)))] if cfg.joint else [[i] for i in range(len(feats))]
    rgbs, fgs, ratios = [None] * len(feats), [None] * len(feats), []
    for group in groups:
        x = np.concatenate([feats[i].reshape(-1, feats[i].shape[-1]) for i in group])  # (n, D)
        fg = foreground_split(x, [shapes[i] for i in group], cfg.fg_threshold) if cfg.foreground else None
        rgb = np.zeros((len(x), 3))
        sel = fg if fg is not None and fg.sum() >= 3 else np.ones(len(x), dtype=bool)
        rgb[sel], ratio = fit_pca(x[sel])
        if fg is not None:
            rgb[~fg] = 0.0  # background black
        ratios.append(ratio)
        offsets = np.cumsum([0] + [shapes[i][0] * shapes[i][1] for i in group])
        for j, i in enumerate(group):
            rgbs[i] = rgb[offsets[j] : offsets[j + 1]].reshape(*shapes[i], 3)
            fgs[i] = None if fg is None else fg[offsets[j] : offsets[j + 1]].reshape(shapes[i])
    stats = {"explained_variance_ratio": ratios[0] if cfg.joint else np.mean(ratios, 0).round(4).tolist()}
    if cfg.foreground:
        stats["foreground_fraction"] = round(float(np.mean([f.mean() for f in fgs])), 4)
    return rgbs, fgs, stats


def draw(images: list[np.ndarray], rgbs: list, fgs: list, patch: int, path: Path) -> str:
    """One row per image: input | PCA colours | (foreground mask)."""
    cols = 3 if fgs[0] is not None else 2
    aspect = np.mean([im.shape[1] / im.shape[0] for im in images])
    fig, axes = new_figure(cols, len(images), aspect=float(aspect))
    for r, (im, rgb, fg) in enumerate(zip(images, rgbs, fgs, strict=True)):
        axes[r, 0].imshow(im)
        axes[r, 1].imshow(upsample(rgb, patch))
        if fg is not None:
            axes[r, 2].imshow(upsample(fg.astype(float), patch), cmap="gray", vmin=0, vmax=1)
    for c, title in enumerate(["input", "PCA 1-3 as RGB", "foreground (PC 1)"][:cols]):
        axes[0, c].set_title(title)
    return save_figure(fig, path)


def run_pca(backbone: torch.nn.Module, cfg: PCAConfig) -> dict:
    """Patch-feature PCA maps of the images (ViT or Swin: Swin's tokens are 32 px); draws pca.png in
    cfg.output_dir. Images are resized with bicubic interpolation."""
    items = collect_images(inputs(cfg), cfg.max_images)
    p, feats, shown = mask_grid(backbone), [], []  # pixels per token
    fit = functools.partial(
        fit_image, patch_size=p, resize=cfg.resize, size=cfg.image_size, interpolation=InterpolationMode.BICUBIC
    )
    batch = cfg.batch_size_per_gpu if cfg.resize == "square" else 1  # other modes keep each image's own size
    with on_device([backbone], cfg.device) as dev:
        bar = tqdm(total=len(items), desc="pca", unit="img", disable=not cfg.progress)
        for x, rgb8, idx in image_loader(FittedImages(items, fit), batch, cfg.num_workers):
            with autocast(dev, cfg.precision):
                f = patch_features(backbone, x.to(dev)).float().cpu().numpy()  # (B, h, w, D)
            feats += list(f)
            shown += [im for im, i in zip(rgb8.numpy(), idx.tolist(), strict=True) if i < cfg.max_figures]
            bar.update(len(idx))
        bar.close()
    rgbs, fgs, stats = colour_maps(feats, cfg)
    k = len(shown)
    figure = draw(shown, rgbs[:k], fgs[:k], p, Path(cfg.output_dir) / "pca.png")
    results = {"images": len(items), "joint": cfg.joint, **stats, "figures": [figure]}
    return results
