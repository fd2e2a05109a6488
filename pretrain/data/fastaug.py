"""The fast multi-crop loader: the reference's random draws, uint8 crops in the workers, colour on the device.

Per image, in a data worker: every random parameter of every crop is drawn first, with the same torch
calls in the same order as the reference transforms (`augment.MultiCropAugmentation`) make them, from
the same per-image seed; so both loaders draw identical crop boxes, flips, jitter factors and orders,
grey, blur radii, solarisations and masks. Then the image is decoded once (JPEG: reduced in the DCT
domain when every crop box stays at or above its output size after the reduction, `draft_factor`), each
crop is cut and resized in uint8 (torch's antialiased bicubic, PIL's filter) and flipped. The colour
operations and the normalisation (`colour.apply_colour`) run on the whole batch: on the training device
in the training step, or in the collate when training on the CPU.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision.transforms import RandomResizedCrop, RandomRotation

from .augment import MultiCropAugmentation, MultiCropDataset
from .colour import COL, COLUMNS, apply_colour
from .folder import IMAGENET_MEAN, IMAGENET_STD, UNREADABLE, to_rgb

LOADERS = ("fast", "reference")


def cpu_chunk(side: int) -> int:
    """Crops of this side per colour pass on a CPU: about 200k pixels, so that a pass stays in cache."""
    return max(1, 200_000 // (side * side))


def draw_params(aug: MultiCropAugmentation, width: int, height: int):
    """Every crop's random parameters, drawn from torch's default generator exactly as the reference does.

    Returns (boxes [(top, left, h, w)], angles [degrees], table (G+L, len(COLUMNS)) float64).
    """
    shape_only = torch.empty(1, 1, 1, dtype=torch.uint8).expand(1, height, width)  # get_params reads the size
    boxes, angles = [], []
    table = torch.zeros(len(aug.specs), len(COLUMNS), dtype=torch.float64)
    lo, hi = aug.blur_radius
    for c, spec in enumerate(aug.specs):
        row = table[c]
        deg = aug.rotate_deg
        angles.append(RandomRotation.get_params([-deg, deg]) if deg else 0.0)
        boxes.append(RandomResizedCrop.get_params(shape_only, list(spec.scale), list(aug.ratio)))
        row[COL["flip"]] = float(torch.rand(1) < aug.flip_p)
        if not aug.jitter_p < torch.rand(1):  # RandomApply: applied unless p < u
            j = aug.jitter
            order, b, con, s, h = j.get_params(j.brightness, j.contrast, j.saturation, j.hue)
            row[COL["jitter"]] = 1.0
            row[COL["order0"] : COL["order3"] + 1] = order.to(torch.float64)
            row[COL["brightness"] : COL["hue"] + 1] = torch.tensor([b, con, s, h], dtype=torch.float64)
        row[COL["grey"]] = float(torch.rand(1) < aug.grayscale_p)
        if aug.invert_p > 0:
            row[COL["invert"]] = float(torch.rand(1).item() < aug.invert_p)
        if not torch.rand(()).item() > spec.blur_p:  # RandomPILBlur: skipped when u > p
            row[COL["blur"]] = 1.0
            row[COL["sigma"]] = lo + (hi - lo) * torch.rand(()).item()
        if spec.solarize_p > 0:
            row[COL["solarize"]] = float(torch.rand(1).item() < spec.solarize_p)
    return boxes, angles, table


def draft_factor(boxes: list, sizes: list[int]) -> int:
    """The largest JPEG reduction (1, 2 or 4) that keeps every crop box >= its output side.

    Not 8: libjpeg's 1/8 decode keeps only each block's mean, 5-9 levels off a full decode's crop
    (1/2 and 1/4: 0.1-1 level).
    """
    slack = min(min(h, w) / s for (_, _, h, w), s in zip(boxes, sizes, strict=True))
    f = 1
    while f < 4 and 2 * f <= slack:
        f *= 2
    return f


def decode(im: Image.Image, factor: int) -> tuple[Image.Image, float, float]:
    """The opened image `im` decoded to 8-bit RGB (`to_rgb`) and the scale (H'/H, W'/W); a JPEG is reduced
    by `factor` in the DCT domain. Unreadable files raise as PIL does (OSError, ValueError)."""
    width, height = im.size
    if im.format == "JPEG" and factor > 1:
        im.draft("RGB", (width // factor, height // factor))
    rgb = to_rgb(im)
    rgb.load()
    return rgb, rgb.height / height, rgb.width / width


def as_tensor(img: Image.Image) -> Tensor:
    """PIL RGB -> (3, H, W) uint8, a channels-last view of one copy of the pixels."""
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)


def rotated_box(img: Image.Image, angle: float, box: tuple) -> Tensor:
    """The box (top, left, h, w) of `img` rotated by `angle` degrees about its centre (bilinear, black
    outside, no expansion: torchvision's RandomRotation on PIL), computed for the box's pixels only.

    PIL's rotate is an affine map of output to input pixels; shifting it by the box's corner gives the
    same samples as rotating the whole image and cropping, at the box's cost.
    """
    top, left, h, w = box
    rad = -math.radians(angle)
    a, b = round(math.cos(rad), 15), round(math.sin(rad), 15)  # PIL's rounding
    cx, cy = img.width / 2, img.height / 2
    c = a * -cx + b * -cy + cx
    f = -b * -cx + a * -cy + cy
    matrix = (a, b, a * left + b * top + c, -b, a, -b * left + a * top + f)
    out = img.transform((w, h), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    return as_tensor(out)


@contextmanager
def one_thread():
    """One torch thread for the loader's many small ops (as in a DataLoader worker), also in the main process
    (num_workers=0): a second thread only waits on them, badly so on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cut(pixels: Tensor, box: tuple, sy: float, sx: float, size: int, flip: bool) -> Tensor:
    """The box (top, left, h, w) of the full-size image, resized to (3, size, size) uint8, flipped if asked."""
    top, left, h, w = box
    if sy != 1.0 or sx != 1.0:  # a reduced decode: the same box in its coordinates (to the nearest pixel)
        t, b = round(top * sy), max(round((top + h) * sy), round(top * sy) + 1)
        le, r = round(left * sx), max(round((left + w) * sx), round(left * sx) + 1)
        top, h, left, w = t, b - t, le, r - le
    region = pixels[None, :, top : top + h, left : left + w]  # (1, 3, h, w), a view
    out = F.interpolate(region, size=(size, size), mode="bicubic", antialias=True)[0]
    return out.flip(-1) if flip else out


class RawCrops:
    """A collated batch before its colour operations: uint8 crops, their parameters, masks.

    `globals_` (G*B, 3, S, S) and `locals_` (L*B, 3, s, s) or None are crop-major (crop g of image b at
    g*B + b); `tables` the matching (N, len(COLUMNS)) parameters (CPU); `masks` G x (B, h, w) bool.
    """

    def __init__(self, globals_: Tensor, locals_: Tensor | None, tables: tuple, masks: list[Tensor]):
        self.globals_, self.locals_, self.tables, self.masks = globals_, locals_, tables, masks

    def pin_memory(self) -> RawCrops:
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return RawCrops(pin(self.globals_), pin(self.locals_), self.tables, [m.pin_memory() for m in self.masks])

    def finish(self, device: torch.device) -> tuple[Tensor, Tensor | None, list[Tensor]]:
        """Colour operations on `device`: (global crops (G*B, 3, S, S), local crops or None, masks)."""
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        outs = []
        for crops, table in zip((self.globals_, self.locals_), self.tables, strict=True):
            if crops is None:
                outs.append(None)
                continue
            chunk = 0 if device.type == "cuda" else cpu_chunk(crops.shape[-1])
            outs.append(apply_colour(crops.to(device, non_blocking=True), table, mean, std, chunk))
        return outs[0], outs[1], [m.to(device, non_blocking=True) for m in self.masks]


class FastCollate:
    """Collate of `FastMultiCropDataset` items: `(RawCrops, skipped)`, or `((crops, masks), skipped)` with
    the colour done here when `colour_here` (training on the CPU: the workers do it)."""

    def __init__(self, n_global: int, colour_here: bool):
        self.n_global, self.colour_here = n_global, colour_here

    def __call__(self, batch: list):
        with one_thread():
            return self._collate(batch)

    def _collate(self, batch: list):
        good = [b for b in batch if b is not None]
        skipped = len(batch) - len(good)
        if not good:
            return None, skipped
        G = self.n_global
        glob = torch.stack([b[0] for b in good], 1).flatten(0, 1)  # (G, B, 3, S, S) -> (G*B, 3, S, S)
        loc = torch.stack([b[1] for b in good], 1).flatten(0, 1) if good[0][1] is not None else None
        table = torch.stack([b[2] for b in good], 1)  # (G+L, B, K)
        tables = (table[:G].flatten(0, 1), table[G:].flatten(0, 1))
        masks = [torch.stack([b[3][g] for b in good]) for g in range(G)]  # G x (B, h, w)
        raw = RawCrops(glob, loc, tables, masks)
        if not self.colour_here:
            return raw, skipped
        glob, loc, masks = raw.finish(torch.device("cpu"))
        B = len(good)
        crops = list(glob.split(B)) + (list(loc.split(B)) if loc is not None else [])
        return (crops, masks), skipped


class FastMultiCropDataset(MultiCropDataset):
    """`MultiCropDataset` with the same draws and masks; items are uint8 crops and their parameter table:
    (globals (G, 3, S, S), locals (L, 3, s, s) or None, table (G+L, K), masks), `None` when unreadable."""

    def __getitem__(self, index: int):
        with one_thread():
            return self._item(index)

    def _item(self, index: int):
        path = self.images.samples[index][0]
        seed = self.item_seed(index)
        aug = self.aug
        try:
            with Image.open(path) as im:
                with torch.random.fork_rng(devices=[]):  # as the reference: the caller's stream stays untouched
                    torch.default_generator.manual_seed(seed)
                    boxes, angles, table = draw_params(aug, *im.size)
                sizes = [spec.size for spec in aug.specs]
                factor = 1 if aug.rotate_deg else draft_factor(boxes, sizes)
                rgb, sy, sx = decode(im, factor)
        except (*UNREADABLE, RuntimeError):
            return None  # counted by the collate, as the reference loader does
        pixels = None if aug.rotate_deg else as_tensor(rgb)
        crops = []
        for c, (box, angle, size) in enumerate(zip(boxes, angles, sizes, strict=True)):
            flip = bool(table[c, COL["flip"]])
            if aug.rotate_deg:  # the reference rotates the whole image per crop (an extra, off in the paper)
                region = rotated_box(rgb, angle, box)
                crops.append(cut(region, (0, 0, box[2], box[3]), 1.0, 1.0, size, flip))
            else:
                crops.append(cut(pixels, box, sy, sx, size, flip))
        G = self.n_global
        glob = torch.stack(crops[:G])
        loc = torch.stack(crops[G:]) if len(crops) > G else None
        return glob, loc, table, self.masks(seed, [(s, s) for s in sizes[:G]])

    def collate_fn(self, device: torch.device) -> FastCollate:
        """Colour on the device in the step (CUDA), or here in the workers' collate (CPU)."""
        return FastCollate(self.n_global, colour_here=device.type != "cuda")


def prepare_batch(batch, n_global: int, device: torch.device) -> tuple[Tensor, Tensor | None, list[Tensor]]:
    """A loader batch -> (global crops (G*B, 3, S, S), local crops (L*B, 3, s, s) or None, G masks (B, h, w))
    on `device`, crop-major; a `RawCrops` batch gets its colour operations there."""
    if isinstance(batch, RawCrops):
        return batch.finish(device)
    crops, masks = batch
    crops = [c.to(device, non_blocking=True) for c in crops]  # copied one by one, joined on the device
    local = torch.cat(crops[n_global:]) if len(crops) > n_global else None
    return torch.cat(crops[:n_global]), local, [m.to(device, non_blocking=True) for m in masks]
