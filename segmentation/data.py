"""ADE20K-layout data: file pairs, label rules, the reference train pipeline, and a resumable sampler.

Layout (`ADEChallengeData2016`, also the demo world's `ade/`): `images/{training,validation}/*.jpg`
with `annotations/{training,validation}/<stem>.png` (single-channel label values).
Labels: `reduce_zero_label` maps 0 ("other") -> 255 and v -> v - 1; 255 is always ignored.

Train pipeline (mmseg 0.12 order, reference §3.7): keep-ratio resize to `img_scale` x U(ratio_range),
random crop with `cat_max_ratio` (10 tries), horizontal flip, photometric distortion, normalise,
pad to the crop with 0 (image, after normalising) and 255 (label). Every random draw of a sample comes
from its own generator seeded by (seed, position in the sample stream), so a resumed run sees exactly
the samples and augmentations an uninterrupted one would, whatever the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from plumbing import DatasetError, ImageReadError
from pretrain import IMAGENET_MEAN, IMAGENET_STD, UNREADABLE, list_images, open_rgb

IGNORE = 255
SPLITS = {"train": "training", "val": "validation"}
MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255  # 123.675, 116.28, 103.53
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255  # 58.395, 57.12, 57.375


# ---------------------------------------------------------------------------------- files
def ade_pairs(root: str | os.PathLike, split: str) -> list[tuple[Path, Path]]:
    """(image, annotation) paths of a split ('train' | 'val'), sorted; every image needs its label map."""
    root = Path(root)
    img_dir, ann_dir = root / "images" / SPLITS[split], root / "annotations" / SPLITS[split]
    for d in (img_dir, ann_dir):
        if not d.is_dir():
            raise DatasetError(
                f"{d} not found: expected the ADEChallengeData2016 layout "
                f"images/{{training,validation}}/*.jpg and annotations/{{training,validation}}/*.png under {root}"
            )
    pairs, missing = [], []
    for img in list_images(img_dir):
        ann = (ann_dir / img.relative_to(img_dir)).with_suffix(".png")
        (pairs if ann.is_file() else missing).append((img, ann))
    if missing:
        raise DatasetError(f"{len(missing)} images in {img_dir} have no label map, e.g. {missing[0][1]}")
    if not pairs:
        raise DatasetError(f"no images in {img_dir}")
    return pairs


def read_image(path: Path) -> Tensor:
    """RGB image as float (3, H, W) in 0..255 (`pretrain.open_rgb`: 16-bit greyscale scaled to 8 bits; an
    unreadable file or a decompression bomb is an ImageReadError naming it)."""
    arr = np.asarray(open_rgb(path), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float()


def reduce_labels(label: np.ndarray) -> np.ndarray:
    """ADE20K rule: 0 -> 255 (ignored), v -> v - 1, 255 stays 255."""
    label = label.astype(np.int64)
    out = label - 1
    out[(label == 0) | (label == IGNORE)] = IGNORE
    return out


def read_label(path: Path, num_classes: int, reduce_zero_label: bool) -> Tensor:
    """Label map as int64 (H, W) with values in [0, num_classes) or 255; anything else is an error."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16"):
                raise DatasetError(f"{path}: label maps must be single-channel (mode L or P), got {im.mode}")
            label = np.asarray(im, dtype=np.int64)
    except UNREADABLE as e:
        raise ImageReadError(f"cannot read label map {path}: {e}") from None
    if reduce_zero_label:
        label = reduce_labels(label)
    bad = (label != IGNORE) & ((label < 0) | (label >= num_classes))
    if bad.any():
        raise DatasetError(
            f"{path}: label value {int(label[bad][0])} outside 0..{num_classes - 1} (and 255) "
            f"(num_classes={num_classes}, reduce_zero_label={reduce_zero_label})"
        )
    return torch.from_numpy(label)


# ------------------------------------------------------------------------------- pipeline
def rescale_size(h: int, w: int, scale: tuple[float, float]) -> tuple[int, int]:
    """Keep-ratio size fitting `scale` (long, short edge in either order), as mmcv's `rescale_size`."""
    f = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


def resize_pair(img: Tensor, label: Tensor | None, size: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
    """Bilinear image (rounded to integer levels) and nearest label resize to `size` = (h, w)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img, label
    img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0].round().clamp(0, 255)
    if label is not None:
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return img, label


def normalize(img: Tensor) -> Tensor:
    """(..., 3, H, W) in 0..255 -> ImageNet-normalised."""
    return (img - MEAN.to(img.device)) / STD.to(img.device)


def photometric(img: Tensor, rng: np.random.Generator) -> Tensor:
    """mmseg PhotoMetricDistortion on a (3, H, W) 0..255 image: brightness +-32, contrast 0.5-1.5 (before
    or after the colour steps), saturation x 0.5-1.5, hue +-18 (OpenCV units, 180 = full turn); each p=0.5."""
    if rng.integers(2):
        img = (img + rng.uniform(-32, 32)).clamp(0, 255)
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        img = (img * rng.uniform(0.5, 1.5)).clamp(0, 255)
    if rng.integers(2):  # HSV saturation scaled with H and V fixed: channels move linearly towards V
        v = img.amax(0, keepdim=True)
        s = (v - img.amin(0, keepdim=True)) / v.clamp_min(1e-6)  # (1, H, W)
        k = torch.minimum(torch.full_like(s, rng.uniform(0.5, 1.5)), 1 / s.clamp_min(1e-6))
        img = (v - (v - img) * k).clamp(0, 255)
    if rng.integers(2):
        img = TF.adjust_hue(img / 255, int(rng.integers(-18, 19)) / 180) * 255
    if not contrast_first and rng.integers(2):
        img = (img * rng.uniform(0.5, 1.5)).clamp(0, 255)
    return img


def crop_box(label: Tensor, crop: int, cat_max_ratio: float, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a random crop; redrawn (up to 10 times) while one class covers more than
    `cat_max_ratio` of the non-ignored crop pixels or the crop holds a single class."""
    H, W = label.shape

    def draw() -> tuple[int, int]:
        return int(rng.integers(0, max(H - crop, 0) + 1)), int(rng.integers(0, max(W - crop, 0) + 1))

    y, x = draw()
    if cat_max_ratio < 1:
        for _ in range(10):
            patch = label[y : y + crop, x : x + crop]
            counts = torch.bincount(patch[patch != IGNORE].flatten(), minlength=1)
            counts = counts[counts > 0]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            y, x = draw()
    return y, x


@dataclass
class TrainPipeline:
    """The reference training augmentation; sizes configurable (reference: 2048x512, ratios 0.5-2, 512)."""

    img_scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: int = 512
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True

    def __call__(self, img: Tensor, label: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """(3, H, W) 0..255, (H, W) -> normalised (3, c, c), (c, c) with 255 in the padding."""
        r = rng.uniform(*self.ratio_range)
        scale = (int(self.img_scale[0] * r), int(self.img_scale[1] * r))
        img, label = resize_pair(img, label, rescale_size(*img.shape[-2:], scale))
        c = self.crop_size
        y, x = crop_box(label, c, self.cat_max_ratio, rng)
        img, label = img[:, y : y + c, x : x + c], label[y : y + c, x : x + c]
        if rng.uniform() < self.flip_prob:
            img, label = img.flip(-1), label.flip(-1)
        if self.photometric:
            img = photometric(img, rng)
        img = normalize(img)
        ph, pw = c - img.shape[1], c - img.shape[2]
        img = F.pad(img, (0, pw, 0, ph), value=0.0)  # (3, c, c)
        label = F.pad(label, (0, pw, 0, ph), value=IGNORE)  # (c, c)
        return img.contiguous(), label.contiguous()


# ------------------------------------------------------------------------------- datasets
class ADETrainSet(Dataset):
    """Items are indexed by (image index, stream position); the position seeds the augmentation."""

    def __init__(self, pairs, num_classes: int, reduce_zero_label: bool, pipeline: TrainPipeline, seed: int):
        self.pairs, self.num_classes, self.reduce = pairs, num_classes, reduce_zero_label
        self.pipeline, self.seed = pipeline, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, position = item
        img_path, ann_path = self.pairs[index]
        img, label = read_image(img_path), read_label(ann_path, self.num_classes, self.reduce)
        if img.shape[-2:] != label.shape:
            raise DatasetError(f"{img_path} is {tuple(img.shape[-2:])} but {ann_path} is {tuple(label.shape)}")
        rng = np.random.default_rng([self.seed, position])
        return self.pipeline(img, label, rng)


class ADEValSet(Dataset):
    """(image 0..255 (3, H, W), label (H, W), index) at the original resolution."""

    def __init__(self, pairs, num_classes: int, reduce_zero_label: bool):
        self.pairs, self.num_classes, self.reduce = pairs, num_classes, reduce_zero_label

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        img_path, ann_path = self.pairs[index]
        img, label = read_image(img_path), read_label(ann_path, self.num_classes, self.reduce)
        if img.shape[-2:] != label.shape:
            raise DatasetError(f"{img_path} is {tuple(img.shape[-2:])} but {ann_path} is {tuple(label.shape)}")
        return img, label, index


def first_item(batch: list):
    """Collate for batch size 1 with images of different sizes."""
    return batch[0]


class StepBatchSampler(Sampler):
    """Batches of (index, position) for steps [start, total) of this rank.

    The sample stream is an endless sequence of seeded permutations of the dataset; at step s, rank r
    takes positions (s * world + r) * batch + j, j < batch. Nothing depends on where a run started.
    """

    def __init__(self, n: int, batch: int, rank: int, world: int, seed: int, start: int, total: int):
        self.n, self.batch, self.rank, self.world = n, batch, rank, world
        self.seed, self.start, self.total = seed, start, total
        self._perm: tuple[int, np.ndarray] | None = None

    def _index(self, position: int) -> int:
        epoch = position // self.n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 1, epoch]).permutation(self.n))
        return int(self._perm[1][position % self.n])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            first = (step * self.world + self.rank) * self.batch
            yield [(self._index(p), p) for p in range(first, first + self.batch)]

    def __len__(self) -> int:
        return self.total - self.start
