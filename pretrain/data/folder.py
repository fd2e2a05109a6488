"""Image folders with clear errors: the one dataset class every module reads images through.

`ImageFolderDataset(root)` reads `root/<class>/<image>` (labels from sorted class folders) or, with
`labelled=False`, every image below `root` (labels -1). `file_list` (text file, one path relative to
`root` per line, optionally followed by anything) selects a subset, as the 1%/10% ImageNet splits do.
An unreadable image (a damaged file, or one PIL refuses as a decompression bomb) raises `ImageReadError`
naming the file (`on_error="raise"`), or is skipped (`on_error="skip"`): the item is then `None`, dropped
by `collate_skip`, and counted by the caller.

Links to folders are followed, but never twice into the same real folder (a loop, or a second link to
a folder already listed, is skipped, counted in `skipped_links` and logged). Every image is read through
`to_rgb`: 16-bit greyscale (PNG, TIFF, PGM) is scaled to 8 bits, not clipped to white.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate

from plumbing import DatasetError, ImageReadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation of every model here (ImageNet statistics)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


# what PIL raises on a file it cannot decode (DecompressionBombError: more than 2 x MAX_IMAGE_PIXELS pixels)
UNREADABLE = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)
log = logging.getLogger(__name__)


def walk_images(root: str | os.PathLike, seen: set[str] | None = None) -> tuple[list[Path], int]:
    """(sorted image files below `root`, folder links skipped): links to folders are followed, but never
    into a real folder already walked (`seen`, shared between calls, is updated): a loop ends there."""
    seen = set() if seen is None else seen
    seen.add(os.path.realpath(root))
    found, skipped = [], 0
    for d, dirs, files in os.walk(root, followlinks=True):
        kept = []
        for name in sorted(dirs, key=lambda n: (os.path.islink(os.path.join(d, n)), n)):  # real folders first
            real = os.path.realpath(os.path.join(d, name))
            if real in seen:
                skipped += 1
                continue
            seen.add(real)
            kept.append(name)
        dirs[:] = kept
        found += [Path(d) / f for f in files if _is_image(f)]
    return sorted(found), skipped


def _say_skipped(root: Path, skipped: int) -> None:
    if skipped:
        log.warning("%s: %d folder link(s) skipped: they lead into a folder already listed (a loop or a "
                    "duplicate); each image is listed once", root, skipped)  # fmt: skip


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files below `root`, sorted; links to folders followed once (see `walk_images`)."""
    found, skipped = walk_images(root)
    _say_skipped(Path(root), skipped)
    return found


def to_rgb(img: Image.Image) -> Image.Image:
    """`img` as 8-bit RGB. 16-bit greyscale (modes I;16*) is scaled by 255/65535; modes I and F holding
    values above 255 are read as 16-bit too (clipped to 0..65535), otherwise as 8-bit values."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or values.max(initial=0) > 255:
            values = np.clip(values, 0, 65535) * (255 / 65535)
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    if img.mode != "RGB":
        return img.convert("RGB")
    img.load()  # decoded now: the file may be closed when the caller uses it
    return img


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """The image at `path` as 8-bit RGB (`to_rgb`); ImageReadError naming the file when it cannot be read."""
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except UNREADABLE as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None


MASK_FOLDERS = ("masks", "annotations", "Annotations", "fg_mask")  # label maps or masks, not pictures


def check_image_root(root: str | os.PathLike) -> None:
    """DatasetError when `root` is a dataset's root rather than a folder of training pictures: it holds the
    train/ and val/ splits, or mask folders beside the images; the line names the folder to pass."""
    root = Path(root)
    subs = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    if "train" in subs and "val" in subs:
        raise DatasetError(
            f"data_path={root} holds train/ and val/ (a dataset root): pre-training would read the val split "
            f"and every other folder too; pass the training images: data_path={root / 'train'}"
        )
    masks = [d for d in subs if d in MASK_FOLDERS]
    if masks:
        others = [d for d in subs if d not in MASK_FOLDERS]
        hint = f"data_path={root / others[0]}" if len(others) == 1 else f"one of {', '.join(others) or 'none'}"
        raise DatasetError(
            f"data_path={root} holds {masks[0]}/ (masks or label maps, not pictures to train on); "
            f"pass the folder of images: {hint}"
        )


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
            seen = {os.path.realpath(p) for p in (self.root, *(self.root / c for c in found))}  # never re-entered
            samples, self.skipped_links = [], 0
            for i, c in enumerate(found):
                files, skipped = walk_images(self.root / c, seen)
                samples += [(p, i) for p in files]
                self.skipped_links += skipped
        else:
            self.classes = []
            files, self.skipped_links = walk_images(self.root)
            samples = [(p, -1) for p in files]
        _say_skipped(self.root, self.skipped_links)
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
        return open_rgb(self.samples[i][0])

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
