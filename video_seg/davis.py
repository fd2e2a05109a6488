"""DAVIS-2017 on disk: the video list, frame reading as the protocol does it, first-frame labels and
indexed PNGs with the DAVIS palette.

Layout (`data_path`): `ImageSets/2017/<split>.txt` (one video per line),
`JPEGImages/<resolution>/<video>/<frame>.jpg` and `Annotations/<resolution>/<video>/<frame>.png`
(palette indices: 0 background, 1..K objects, 255 void). Frames sort by name (00000.jpg, ...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from plumbing import DatasetError, ImageReadError

log = logging.getLogger(__name__)

# ImageNet mean; the std's 0.228 (not 0.229) is inherited from UVC via DINO's DAVIS script: kept.
MEAN = (0.485, 0.456, 0.406)
STD = (0.228, 0.224, 0.225)
SIZE_MULTIPLE = 64  # the long side is floored to a multiple of this
VOID = 255


def _voc_palette() -> bytes:
    """The PASCAL-VOC colour map DAVIS uses (index i's bits spread over R, G, B from the high bit)."""
    out = bytearray()
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += bytes((r, g, b))
    return bytes(out)


DAVIS_PALETTE = _voc_palette()  # 768 bytes: (0,0,0), (128,0,0), (0,128,0), (128,128,0), ...


@dataclass
class Video:
    """One sequence: its frames in order and the annotation path of each (which may not exist)."""

    name: str
    frames: list[Path]
    annotations: list[Path]


def list_videos(root: str | Path, split: str, resolution: str, only: list[str] | None, evaluate: bool) -> list[Video]:
    """The split's videos (or `only`, in that order), checked: frames present, first annotation present, and
    every annotation when `evaluate`. Raises DatasetError naming what is missing."""
    root = Path(root)
    listing = root / "ImageSets" / "2017" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"{listing} not found: data_path must be the DAVIS root (holding ImageSets/2017/)")
    names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise DatasetError(f"videos {unknown} are not in {listing}")
        names = list(only)
    if not names:
        raise DatasetError(f"{listing} lists no videos")
    videos = []
    for name in names:
        frames = sorted((root / "JPEGImages" / resolution / name).glob("*.jpg"))
        if not frames:
            raise DatasetError(f"no frames in {root / 'JPEGImages' / resolution / name} (*.jpg)")
        # The annotation of a frame has the frame's stem (never a string replace on the whole path).
        annotations = [root / "Annotations" / resolution / name / f"{f.stem}.png" for f in frames]
        missing = [a for a in (annotations if evaluate else annotations[:1]) if not a.is_file()]
        if missing:
            hint = " (evaluate=false writes masks without them)" if evaluate and missing[0] != annotations[0] else ""
            raise DatasetError(f"annotation missing: {missing[0]} and {len(missing) - 1} more{hint}")
        if evaluate and len(frames) < 3:
            raise DatasetError(f"video {name} has {len(frames)} frames: J&F excludes the first and last, need >= 3")
        videos.append(Video(name, frames, annotations))
    return videos


def target_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(th, tw) of the protocol: the short side -> `short_side`, the long side -> long * short_side / short
    floored to a multiple of 64 (854x480 -> 832x480).

    The authors' frame reader tests `H > W` for portrait, their label reader `W > H` for landscape; they
    disagree on square frames unless `short_side` is a multiple of 64. Such inputs are refused here.
    """

    def rule(portrait: bool) -> tuple[int, int]:
        if portrait:
            return int((short_side * height / width) // SIZE_MULTIPLE * SIZE_MULTIPLE), short_side
        return short_side, int((short_side * width / height) // SIZE_MULTIPLE * SIZE_MULTIPLE)

    size = rule(height > width)
    if size != rule(not width > height):
        raise DatasetError(
            f"square {width}x{height} frames: the protocol's frame and label sizes differ unless short_side is a "
            f"multiple of {SIZE_MULTIPLE} (got {short_side})"
        )
    if min(size) < 1:
        raise DatasetError(f"{width}x{height} frames at short_side={short_side} give an empty {size[1]}x{size[0]} size")
    return size


def read_frame(path: str | Path, size: tuple[int, int], crop: tuple[int, int] | None = None) -> torch.Tensor:
    """A normalised frame (3, th, tw): OpenCV decode (BGR), bilinear resize to `size` = (th, tw) on uint8,
    /255, BGR -> RGB, mean/std above. `crop` = (H, W) keeps the top-left H x W (the patch grid's pixels:
    the authors' stride-p patch conv drops the bottom/right remainder)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # (H0, W0, 3) uint8, BGR
    if img is None:
        raise ImageReadError(f"cannot decode {path}")
    th, tw = size
    img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_LINEAR)  # (th, tw, 3) uint8
    x = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).permute(2, 0, 1).float() / 255.0  # (3, th, tw) RGB
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    if crop is not None:
        x = x[:, : crop[0], : crop[1]]
    return x.contiguous()


def frame_shape(path: str | Path) -> tuple[int, int]:
    """(H0, W0) of an image file, read from its header."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as e:
        raise ImageReadError(f"cannot read {path}: {e}") from None


class FrameDataset(Dataset):
    """The frames of one video, read as `read_frame` does (for a DataLoader: decoding overlaps the model)."""

    def __init__(self, frames: list[Path], size: tuple[int, int], crop: tuple[int, int]):
        self.frames, self.size, self.crop = frames, size, crop

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> torch.Tensor:
        return read_frame(self.frames[i], self.size, self.crop)


def read_indexed_png(path: str | Path) -> np.ndarray:
    """Palette indices (H, W) uint8 of a P- or L-mode PNG (what DAVIS annotations and results are)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DatasetError(f"{path}: mode {im.mode}, expected an indexed (P) or greyscale (L) PNG")
            return np.array(im, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(f"cannot read {path}: {e}") from None


def write_indexed_png(path: str | Path, labels: np.ndarray) -> None:
    """Write object ids (H, W) uint8 as a palette PNG with the DAVIS colours."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))  # 2-D uint8: mode L
    im.putpalette(DAVIS_PALETTE)  # L -> P: the values stay, the colours come from the palette
    im.save(path, format="PNG")


def object_ids(annotation: np.ndarray, path: str | Path) -> list[int]:
    """The video's objects: the ids present in its first annotation `path` (0 background and 255 void
    excluded; DAVIS semantics: an id absent from the first frame is no object and never scores). DAVIS
    numbers them 1..K; an id outside that range (a gap, e.g. 1, 2, 200) is a stray palette index that
    would be scored as an object: a DatasetError naming the file, the ids and the stray ids' pixels."""
    values, counts = np.unique(annotation, return_counts=True)
    ids = [int(v) for v in values if v not in (0, VOID)]
    stray = [(int(v), int(c)) for v, c in zip(values, counts, strict=True) if v != VOID and v > len(ids)]
    if stray:
        detail = ", ".join(f"{v} ({c} pixel{'s' * (c != 1)})" for v, c in stray)
        raise DatasetError(
            f"{path} holds object ids {ids}, not 1..{len(ids)} as DAVIS numbers a first frame's objects (outside: "
            f"{detail}): a stray palette index? fix the annotation"
        )
    return ids


def first_frame_labels(annotation: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """One-hot labels (C, h, w) at the patch grid: nearest resize straight to `grid` = (h, w) (PIL), void (255)
    -> background, C = the largest id left after the resize + 1 (an object lost at grid resolution is an
    empty channel, or no channel when it had the largest id)."""
    labels = annotation.copy()
    if (labels == VOID).any():
        log.warning("first-frame annotation holds void (255) pixels: counted as background")
        labels[labels == VOID] = 0
    small = np.array(Image.fromarray(labels).resize((grid[1], grid[0]), Image.NEAREST))  # (h, w)
    small = torch.from_numpy(small).long()
    return torch.nn.functional.one_hot(small, int(small.max()) + 1).permute(2, 0, 1).float()  # (C, h, w)
