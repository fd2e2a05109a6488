"""Inference: whole-image and sliding-window decoding, multi-scale + flip (reference §3.7).

- Single scale: keep-ratio resize to `scale` (2048, 512), sliding 512x512 windows with stride 341
  (overlaps averaged), logits resized back to the original image, argmax.
- Multi-scale (`_ms` configs): for each ratio r, a "SETR resize" sets the short side to
  max(512 r, crop) keeping the ratio; each scale and its horizontal flip is decoded as above; the
  softmax probabilities at the original size are averaged.
Windows (and whole images) whose sides are not multiples of the patch are padded at the bottom/right
for the backbone and the logits cropped back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .data import normalize, rescale_size, resize_pair
from .model import resize

Decode = Callable[[Tensor], Tensor]  # (B, 3, h, w) -> logits (B, K, h, w)


@dataclass
class InferenceSpec:
    """How to predict one image; the defaults are the reference single-scale test."""

    mode: str = "slide"  # slide | whole
    scale: tuple[int, int] = (2048, 512)
    crop: int = 512
    stride: int = 341
    ratios: Sequence[float] = (1.0,)
    flip: bool = False
    setr_resize: bool = False  # short side = max(scaled short side, crop), used with multi-scale
    window_batch: int = 4


def padded(decode: Decode, x: Tensor, multiple: int) -> Tensor:
    """Decode x after zero-padding its sides up to a multiple of the patch; logits cropped to x."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        return decode(F.pad(x, (0, pw, 0, ph)))[..., :h, :w]
    return decode(x)


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window origins along one side: stride apart, the last one flush with the border."""
    n = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(n)]


def slide_logits(decode: Decode, x: Tensor, crop: int, stride: int, multiple: int, window_batch: int = 4) -> Tensor:
    """(B, 3, H, W) -> (B, K, H, W): windows of crop x crop (smaller when the image is), overlaps averaged."""
    B, _, H, W = x.shape
    ch, cw = min(crop, H), min(crop, W)
    boxes = [(y, xx) for y in window_starts(H, crop, stride) for xx in window_starts(W, crop, stride)]
    total, count = None, x.new_zeros(1, 1, H, W)
    for i in range(0, len(boxes), window_batch):
        chunk = boxes[i : i + window_batch]
        crops = torch.cat([x[:, :, y : y + ch, xx : xx + cw] for y, xx in chunk])  # (n*B, 3, ch, cw)
        logits = padded(decode, crops, multiple).float()  # (n*B, K, ch, cw)
        if total is None:
            total = x.new_zeros(B, logits.shape[1], H, W, dtype=torch.float32)
        for j, (y, xx) in enumerate(chunk):
            total[:, :, y : y + ch, xx : xx + cw] += logits[j * B : (j + 1) * B]
            count[:, :, y : y + ch, xx : xx + cw] += 1
    return total / count


def whole_logits(decode: Decode, x: Tensor, multiple: int) -> Tensor:
    """(B, 3, H, W) -> (B, K, H, W) in one pass."""
    return padded(decode, x, multiple).float()


def scaled_size(h: int, w: int, spec: InferenceSpec, ratio: float) -> tuple[int, int]:
    """Size of the image at one test ratio: keep-ratio resize, or the SETR short-side rule."""
    scale = (int(spec.scale[0] * ratio), int(spec.scale[1] * ratio))
    if spec.setr_resize:
        short = max(min(scale), spec.crop)
        return rescale_size(h, w, (short * max(h, w) / min(h, w), short))
    return rescale_size(h, w, scale)


@torch.no_grad()
def predict_probs(decode: Decode, img: Tensor, spec: InferenceSpec, multiple: int) -> Tensor:
    """One image (3, H, W) in 0..255 -> class scores (K, H, W) (softmax averaged over scales/flips)."""
    H, W = img.shape[-2:]
    total = None
    for ratio in spec.ratios:
        scaled, _ = resize_pair(img, None, scaled_size(H, W, spec, ratio))
        x = normalize(scaled)[None]  # (1, 3, h, w)
        for flip in (False, True) if spec.flip else (False,):
            xi = x.flip(-1) if flip else x
            if spec.mode == "slide":
                logits = slide_logits(decode, xi, spec.crop, spec.stride, multiple, spec.window_batch)
            else:
                logits = whole_logits(decode, xi, multiple)
            logits = logits.flip(-1) if flip else logits
            probs = resize(logits, (H, W)).softmax(dim=1)[0]  # (K, H, W)
            total = probs if total is None else total + probs
    return total / (len(spec.ratios) * (2 if spec.flip else 1))


def predict(decode: Decode, img: Tensor, spec: InferenceSpec, multiple: int) -> Tensor:
    """One image (3, H, W) in 0..255 -> label map (H, W), int64."""
    return predict_probs(decode, img, spec, multiple).argmax(dim=0)
