"""Image reading of the two protocols, and batches of same-size images.

Retrieval (revisited Oxford/Paris): decode as RGB (truncated files tolerated), optionally crop to the
query's bbx (the official revisitop protocol; DINO/iBOT skip it), then PIL's `thumbnail` to `image_size`
with LANCZOS (longest side at most image_size, aspect kept, never enlarged), ToTensor and ImageNet
normalisation. No square resize, no centre crop. Images keep their sizes, so a batch only holds images
of one size (`size_batches`).

Copy detection: decode as RGB, resize to a square image_size x image_size (aspect not kept, bicubic),
ToTensor, ImageNet normalisation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T

from plumbing import DatasetError, ImageReadError
from pretrain import IMAGENET_MEAN, IMAGENET_STD, UNREADABLE, to_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def open_rgb(path: str | os.PathLike, tolerate_truncated: bool = False) -> Image.Image:
    """Decode an image as RGB; ImageReadError naming the file if it cannot be read."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = tolerate_truncated or before
    try:
        with Image.open(path) as img:
            return to_rgb(img)  # 16-bit greyscale scaled, as every reader of the suite
    except (UnidentifiedImageError, *UNREADABLE) as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _normalise() -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _round_box(box: Sequence[float]) -> tuple[int, int, int, int]:
    """The pixel box PIL's `crop` uses for float coordinates (each rounded)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return x1, y1, x2, y2


class ThumbnailImages(Dataset):
    """(normalised image (3, h, w), index) of revisited Oxford/Paris images, optionally cropped to a box."""

    def __init__(self, paths: Sequence[Path], image_size: int, boxes: Sequence[Sequence[float]] | None = None):
        self.paths, self.image_size, self.boxes = list(paths), image_size, boxes
        self.to_tensor = _normalise()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = open_rgb(self.paths[i], tolerate_truncated=True)
        if self.boxes is not None:
            img = img.crop(_round_box(self.boxes[i]))
        img.thumbnail((self.image_size, self.image_size), Image.LANCZOS)
        return self.to_tensor(img), i

    def source_size(self, i: int) -> tuple[int, int]:
        """(W, H) before the thumbnail (read from the header): equal sizes give equal thumbnails."""
        if self.boxes is not None:
            x1, y1, x2, y2 = _round_box(self.boxes[i])
            return x2 - x1, y2 - y1
        try:
            with Image.open(self.paths[i]) as img:
                return img.size
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise ImageReadError(f"cannot read image {self.paths[i]}: {e}") from None


def size_batches(dataset: ThumbnailImages, batch_size: int) -> list[list[int]]:
    """Index batches of at most `batch_size` images of one source size, in first-seen order."""
    if batch_size == 1:
        return [[i] for i in range(len(dataset))]
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(len(dataset)):
        groups.setdefault(dataset.source_size(i), []).append(i)
    return [g[s : s + batch_size] for g in groups.values() for s in range(0, len(g), batch_size)]


class SquareImages(Dataset):
    """(normalised image (3, S, S), 0, index) items: Copydays' square bicubic resize."""

    def __init__(self, paths: Sequence[Path], image_size: int):
        self.paths = list(paths)
        self.transform = T.Compose(
            [T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BICUBIC), _normalise()]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.transform(open_rgb(self.paths[i])), 0, i


def image_files(folder: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly in `folder` with one of `extensions`, sorted by name; DatasetError if none."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise DatasetError(f"no images ({', '.join(extensions)}) in {root}")
    return files
