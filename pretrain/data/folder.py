"""Image folders with clear errors: the one dataset class every module reads images through.

`ImageFolderDataset(root)` reads `root/<class>/<image>` (labels from sorted class folders) or, with
`labelled=False`, every image below `root` (labels -1). `file_list` (text file, one path relative to
`root` per line, optionally followed by anything) selects a subset, as the 1%/10% ImageNet splits do.
An unreadable image raises `ImageReadError` naming the file (`on_error="raise"`), or is skipped
(`on_error="skip"`): the item is then `None`, dropped by `collate_skip`, and counted by the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate

from plumbing import DatasetError, ImageReadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation of every model here (ImageNet statistics)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def list_images(root: Path) -> list[Path]:
    return sorted(Path(d) / f for d, _, files in os.walk(root, followlinks=True) for f in files if _is_image(f))


class ImageFolderDataset(Dataset):
    """(image, label, index) items; see the module docstring."""

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable | None = None,
        labelled: bool = True,
        file_list: str | os.PathLike | None = None,
        on_error: str = "raise",
        classes: list[str] | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder not found: {self.root}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.transform, self.on_error = transform, on_error
        if labelled:
            found = sorted(d.name for d in self.root.iterdir() if d.is_dir())
            if not found:
                raise DatasetError(
                    f"{self.root} has no class sub-folders: expected {self.root}/<class_name>/<image files>"
                )
            if classes is not None and found != list(classes):
                extra, lacking = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
                raise DatasetError(
                    f"{self.root}: class folders differ from the reference set "
                    f"(extra {extra[:10]}, missing {lacking[:10]})"
                )
            self.classes = found
            index = {c: i for i, c in enumerate(found)}
            samples = [(p, index[p.relative_to(self.root).parts[0]]) for c in found for p in list_images(self.root / c)]
        else:
            self.classes = []
            samples = [(p, -1) for p in list_images(self.root)]
        if file_list is not None:
            samples = self._select(samples, Path(file_list))
        if not samples:
            raise DatasetError(f"no images found under {self.root} (extensions: {', '.join(IMG_EXTENSIONS)})")
        self.samples = samples

    def _select(self, samples: list[tuple[Path, int]], file_list: Path) -> list[tuple[Path, int]]:
        if not file_list.is_file():
            raise DatasetError(f"file list not found: {file_list}")
        wanted = [line.split()[0] for line in file_list.read_text().splitlines() if line.strip()]
        by_rel = {p.relative_to(self.root).as_posix(): (p, y) for p, y in samples}
        by_name = {p.name: (p, y) for p, y in samples}
        chosen, unknown = [], []
        for w in wanted:
            hit = by_rel.get(w) or by_name.get(Path(w).name)
            (chosen.append(hit) if hit else unknown.append(w))
        if unknown:
            raise DatasetError(
                f"{file_list}: {len(unknown)} listed files are not under {self.root}, e.g. {unknown[:3]}"
            )
        return chosen

    @property
    def targets(self) -> list[int]:
        return [y for _, y in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> Image.Image:
        path = self.samples[i][0]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise ImageReadError(f"cannot read image {path}: {e}") from None

    def __getitem__(self, i: int) -> Any:
        try:
            img = self.load(i)
        except ImageReadError:
            if self.on_error == "raise":
                raise
            return None
        return (self.transform(img) if self.transform else img), self.samples[i][1], i


def collate_skip(batch: list) -> Any:
    """default_collate over the readable items; adds the number skipped as the last element."""
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return None, skipped
    return default_collate(good), skipped


def seed_worker(worker_id: int) -> None:
    """Distinct, reproducible numpy/random streams per DataLoader worker."""
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
