"""COCO-format instance data (json + image folder, read with pycocotools) and the train augmentation.

Train augmentation (reference §3.6, DETR-style): horizontal flip (p 0.5), then one of
(a) resize keeping the aspect ratio, short side drawn from `train_scales` (480, 512, ..., 800), long
    side at most `train_max` (1333);
(b) resize the short side to one of `crop_scales` (400, 500, 600), crop a random rectangle with
    sides in `crop_range` (384-600 px, absolute), then resize as in (a).
Boxes are clipped by the crop; boxes left empty are dropped with their masks and labels. The random
draws of sample i in epoch e come from a generator seeded by (seed, e, i), so an interrupted run
resumes with exactly the same images. Test images are returned unresized: the model resizes them to
the test scale and maps its predictions back to the original size.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from plumbing import DatasetError
from pretrain import open_rgb


class RandomSizeCrop(v2.Transform):
    """mmdet's `RandomCrop(crop_type="absolute_range")`: height and width uniform in [lo, min(side, hi)]."""

    def __init__(self, lo: int, hi: int):
        super().__init__()
        self.lo, self.hi = lo, hi

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        H, W = v2.query_size(flat_inputs)
        h = int(torch.randint(min(H, self.lo), min(H, self.hi) + 1, ()))
        w = int(torch.randint(min(W, self.lo), min(W, self.hi) + 1, ()))
        top, left = int(torch.randint(0, H - h + 1, ())), int(torch.randint(0, W - w + 1, ()))
        return {"top": top, "left": left, "height": h, "width": w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.crop(inpt, **params)


def train_transform(
    scales: list[int], max_size: int, crop_scales: list[int], crop_range: list[int], flip_prob: float = 0.5
) -> v2.Transform:
    """Flip, then (a) multi-scale resize or (b) resize + absolute random crop + multi-scale resize."""
    resize = v2.RandomShortestSize(list(scales), max_size=max_size)
    crop = v2.Compose([v2.RandomShortestSize(list(crop_scales)), RandomSizeCrop(*crop_range), resize])
    return v2.Compose(
        [v2.RandomHorizontalFlip(flip_prob), v2.RandomChoice([resize, crop]), v2.SanitizeBoundingBoxes(min_size=1)]
    )


def load_coco(annotations: str | Path) -> COCO:
    """pycocotools COCO index; missing or malformed files raise `DatasetError`."""
    path = Path(annotations)
    if not path.is_file():
        raise DatasetError(f"COCO annotation file not found: {path}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco = COCO(str(path))
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise DatasetError(f"{path}: not a COCO instances file ({type(e).__name__}: {e})") from None
    for key in ("images", "annotations", "categories"):
        if key not in coco.dataset:
            raise DatasetError(f"{path}: not a COCO instances file (no {key!r} list)")
    if not coco.getCatIds():
        raise DatasetError(f"{path}: no categories")
    known = set(coco.getCatIds())
    stray = [a for a in coco.dataset["annotations"] if a.get("category_id") not in known]
    if stray:
        a = stray[0]
        raise DatasetError(
            f"{path}: {len(stray)} annotation(s) name a category_id that is not in 'categories', e.g. annotation "
            f"{a.get('id')} of image {a.get('image_id')}: category_id {a.get('category_id')!r} "
            f"(categories: {sorted(known)[:20]})"
        )
    return coco


def _valid(ann: dict) -> bool:
    """Annotations used for training: not crowd, a box of positive size."""
    _, _, w, h = ann["bbox"]
    return not ann.get("iscrowd", 0) and w >= 1 and h >= 1


class CocoInstances(Dataset):
    """`(image float (3, H, W) in [0, 1], target)`, target = boxes (N, 4) xyxy float, labels (N,) int64
    in 1..K (contiguous, in category-id order), masks (N, H, W) uint8, image_id int.

    `train=True` drops images without a usable annotation (mmdet's `filter_empty_gt`), and applies
    `transform` (see `train_transform`) with per-sample seeds; `set_epoch` changes the draws.
    """

    def __init__(
        self,
        images: str | Path,
        annotations: str | Path,
        transform: v2.Transform | None = None,
        train: bool = False,
        seed: int = 0,
        max_images: int = 0,
    ):
        self.root = Path(images)
        if not self.root.is_dir():
            raise DatasetError(f"image folder not found: {self.root}")
        self.coco, self.annotations = load_coco(annotations), Path(annotations)
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.cat_ids)}
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if any(_valid(a) for a in self.coco.imgToAnns[i])]
        self.ids = ids[:max_images] if max_images > 0 else ids
        if not self.ids:
            raise DatasetError(f"{annotations}: no images{' with annotations' if train else ''}")
        self.transform, self.train, self.seed, self.epoch = transform, train, seed, 0

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def files(self) -> list[Path]:
        """What the dataset reads: its images and the annotation file (a resume fingerprints them)."""
        return [self.root / self.coco.imgs[i]["file_name"] for i in self.ids] + [self.annotations]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, image_id: int) -> Tensor:
        info = self.coco.imgs[image_id]
        path = self.root / info["file_name"]
        arr = np.asarray(open_rgb(path))  # ImageReadError naming the file (a decompression bomb too)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)  # (3, H, W) uint8

    def load_target(self, image_id: int, size: tuple[int, int]) -> dict[str, Any]:
        anns = [a for a in self.coco.imgToAnns[image_id] if _valid(a)]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, *size), np.uint8)
        return {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size),
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "image_id": image_id,
        }

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Any]]:
        image_id = self.ids[i]
        image = self.load_image(image_id)
        target = self.load_target(image_id, tuple(image.shape[-2:]))
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0]))
                image, target = self.transform(tv_tensors.Image(image), target)
        target = {
            "boxes": target["boxes"].as_subclass(Tensor).float(),
            "labels": target["labels"],
            "masks": target["masks"].as_subclass(Tensor),
            "image_id": image_id,
        }
        return image.as_subclass(Tensor).float() / 255.0, target


def collate(batch: list) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """Lists of images and targets: detectors take images of different sizes."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)
