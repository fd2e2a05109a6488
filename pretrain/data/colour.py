"""The colour half of the multi-crop augmentation as batched tensor ops (reference §1.1).

The fast loader (`fastaug.py`) crops and flips in uint8 in the data workers and draws every other
random parameter there too, one row of `COLUMNS` per crop. `apply_colour` then runs, on a whole
batch of crops of one size and on the training device, what the reference does per crop in PIL:
colour jitter (p=0.8; brightness, contrast, saturation, hue in the crop's own random order), grey
(p=0.2), invert (an extra, off by default), Gaussian blur, solarisation, normalisation.

The operations follow the PIL definitions the reference pipeline uses, in float instead of uint8:
grey is PIL's "L" (ITU-R 601-2 luma), contrast blends with the grey mean rounded to a level, the hue
shift is quantised to 1/255 of the circle as torchvision's PIL path does, PIL's Gaussian blur
"radius" is the standard deviation, and solarisation inverts what would round to >= 128. So a crop
matches the reference's within rounding (tests/test_loader.py measures it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# One row per crop (float64, on the CPU): the flip is applied in the worker; the rest here.
COLUMNS = ("flip", "jitter", "order0", "order1", "order2", "order3", "brightness", "contrast", "saturation", "hue",
           "grey", "invert", "blur", "sigma", "solarize")  # fmt: skip
COL = {name: i for i, name in enumerate(COLUMNS)}
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # PIL's "L" conversion, which the reference's grey and jitter use
SOLARIZE_AT = 127.5 / 255  # PIL inverts uint8 levels >= 128; a float rounds to 128 from 127.5 on


def grey(x: Tensor) -> Tensor:
    """(N, 3, H, W) in [0, 1] -> luma (N, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (GREY_WEIGHTS[0] * r + GREY_WEIGHTS[1] * g + GREY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(x: Tensor, other: Tensor | float, f: Tensor) -> Tensor:
    """f * x + (1 - f) * other, clamped to [0, 1]; f (N,) per crop (PIL's Image.blend)."""
    f = f.view(-1, 1, 1, 1)
    return (x * f).add_((1 - f) * other).clamp_(0, 1)


def brightness(x: Tensor, f: Tensor) -> Tensor:
    return (x * f.view(-1, 1, 1, 1)).clamp_(0, 1)


def contrast(x: Tensor, f: Tensor) -> Tensor:
    mean = (grey(x).mean(dim=(1, 2, 3), keepdim=True) * 255).round_() / 255  # (N, 1, 1, 1), a whole level
    return _blend(x, mean, f)


def saturation(x: Tensor, f: Tensor) -> Tensor:
    return _blend(x, grey(x), f)


def hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue by `shift` (N,) of the circle, keeping value and saturation.

    The hue h6 in [0, 6) comes from RGB as torchvision's `_rgb2hsv` computes it (times 6); back in RGB,
    each channel is min + chroma * clamp(s * |h6 - c| + o, 0, 1) with (c, s, o) = (3, 1, -1) for red,
    (2, -1, 2) for green, (4, -1, 2) for blue (the HSV->RGB ramps).
    """
    r, g, b = x.unbind(1)  # (N, H, W) each
    vmax = torch.maximum(torch.maximum(r, g), b)
    vmin = torch.minimum(torch.minimum(r, g), b)
    chroma = vmax - vmin
    inv = chroma.clamp_min(1e-12).reciprocal_()  # chroma 0 means r = g = b: every difference below is 0
    # the sector by arithmetic on 0/1 masks (torch.where is ~30x slower than a product on some CPU builds)
    is_r = (vmax == r).to(x.dtype)
    is_g = (vmax == g).to(x.dtype).mul_(1 - is_r)
    is_b = 1 - is_r - is_g
    h6 = (
        (g - b).mul_(is_r).add_((b - r).add_(2 * chroma).mul_(is_g)).add_((r - g).add_(4 * chroma).mul_(is_b)).mul_(inv)
    )
    q = torch.trunc(shift.to(torch.float64) * 255).to(x.device, x.dtype) / 255  # torchvision's PIL hue step
    h6 = h6.add_(6 * q.view(-1, 1, 1)).unsqueeze(1)  # (N, 1, H, W), in (-1.6, 5.6)
    h6 = h6.sub_(torch.floor(h6 * (1 / 6)).mul_(6))  # mod 6 -> [0, 6)
    c, s, o = (torch.tensor(v, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) for v in _HUE_RAMPS)
    ramp = (h6 - c).abs_().mul_(s).add_(o).clamp_(0, 1)  # (N, 3, H, W)
    return ramp.mul_(chroma.unsqueeze(1)).add_(vmin.unsqueeze(1))


_HUE_RAMPS = ((3.0, 2.0, 4.0), (1.0, -1.0, -1.0), (-1.0, 2.0, 2.0))  # centre, slope, offset per channel


def solarize(x: Tensor) -> Tensor:
    """Invert what would round to a level >= 128 (PIL's threshold); masks as products, not torch.where."""
    return x + (x >= SOLARIZE_AT).to(x.dtype) * (1 - 2 * x)


JITTER = (brightness, contrast, saturation, hue)  # ColorJitter's fn_idx numbering


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur, one standard deviation per crop (sigma (N,) on the CPU), edges replicated.

    Each crop's kernel is cut at ceil(3 sigma) taps from the centre, whatever the other crops in the call.
    As a sum of shifted slices (2 x K multiply-adds): 3x faster than a grouped convolution on a CPU.
    """
    n = x.shape[0]
    sig = sigma.to(torch.float64).view(-1, 1)  # (N, 1)
    radius = max(1, math.ceil(3 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)  # (K,)
    k = torch.exp(-(t**2) / (2 * sig**2)) * (t.abs() <= torch.ceil(3 * sig))  # (N, K)
    k = (k / k.sum(1, keepdim=True)).to(x.device, x.dtype).view(n, 1, 1, 1, -1)  # (N, 1, 1, 1, K)
    for dim, pad in ((3, (radius, radius, 0, 0)), (2, (0, 0, radius, radius))):  # rows, then columns
        y = F.pad(x, pad, mode="replicate")  # (N, 3, H(+2r), W(+2r))
        size = x.shape[dim]
        x = y.narrow(dim, 0, size) * k[..., 0]
        for i in range(1, 2 * radius + 1):
            x.addcmul_(y.narrow(dim, i, size), k[..., i])
    return x


def _rows(mask: Tensor, device: torch.device) -> Tensor | None:
    idx = mask.nonzero().flatten()  # on the CPU: no device synchronisation
    return idx.to(device, non_blocking=True) if len(idx) else None


def _on_rows(x: Tensor, rows: Tensor | None, fn, *args) -> None:
    if rows is not None:
        x[rows] = fn(x[rows], *args)


def _grey3(x: Tensor) -> Tensor:
    return grey(x).expand(-1, 3, -1, -1)


def _invert(x: Tensor) -> Tensor:
    return 1 - x


def _factor(table: Tensor, op: int, x: Tensor) -> Tensor:
    f = table[:, COL["brightness"] + op]
    return f if op == 3 else f.to(x.device, x.dtype, non_blocking=True)  # hue quantises its shift in float64


def colour_indexed(x: Tensor, table: Tensor) -> Tensor:
    """Jitter, grey, invert, blur, solarise on float crops x (N, 3, H, W) in [0, 1], in any row order.

    For a GPU: one gather, op and scatter per (order position, op) over the rows that draw it; `table`
    (N, len(COLUMNS)) stays on the CPU, so choosing rows never waits for the device.
    """
    dev = x.device
    jitter = table[:, COL["jitter"]] > 0
    for pos in range(4):  # each crop's own order: at position pos it runs op table[:, order{pos}]
        for op, fn in enumerate(JITTER):
            sel = jitter & (table[:, COL[f"order{pos}"]] == op)
            _on_rows(x, _rows(sel, dev), fn, _factor(table[sel], op, x))
    _on_rows(x, _rows(table[:, COL["grey"]] > 0, dev), _grey3)
    _on_rows(x, _rows(table[:, COL["invert"]] > 0, dev), _invert)
    blur = table[:, COL["blur"]] > 0
    _on_rows(x, _rows(blur, dev), gaussian_blur, table[blur, COL["sigma"]])
    _on_rows(x, _rows(table[:, COL["solarize"]] > 0, dev), solarize)
    return x


def run_key(table: Tensor) -> Tensor:
    """(N,) int64: blurred crops after the others, then by jitter order (-1: no jitter); for `colour_runs`."""
    o = table[:, COL["order0"] : COL["order3"] + 1].long()  # (N, 4)
    order = torch.where(table[:, COL["jitter"]] > 0, o[:, 0] * 64 + o[:, 1] * 16 + o[:, 2] * 4 + o[:, 3], -1)
    return (table[:, COL["blur"]] > 0).long() * 1000 + order


def colour_runs(x: Tensor, table: Tensor) -> Tensor:
    """The same operations as `colour_indexed` for rows sorted by `run_key` (for a CPU: no gathers).

    Rows with one jitter order are a contiguous slice, processed in place; the blurred rows are the last
    slice; grey, invert and solarisation go row by row (few rows draw them).
    """
    key = run_key(table).tolist()
    start = 0
    while start < len(key):
        end = start + 1
        while end < len(key) and key[end] == key[start]:
            end += 1
        if table[start, COL["jitter"]] > 0:
            y, t = x[start:end], table[start:end]
            for pos in range(4):
                op = int(table[start, COL[f"order{pos}"]])
                y = JITTER[op](y, _factor(t, op, x))
            x[start:end] = y
        start = end
    for col, fn in (("grey", _grey3), ("invert", _invert)):
        for i in (table[:, COL[col]] > 0).nonzero().flatten().tolist():
            x[i : i + 1] = fn(x[i : i + 1])
    blur = table[:, COL["blur"]] > 0
    if blur.any():
        first = int(blur.nonzero()[0])
        x[first:] = gaussian_blur(x[first:], table[first:, COL["sigma"]])
    for i in (table[:, COL["solarize"]] > 0).nonzero().flatten().tolist():
        x[i : i + 1] = solarize(x[i : i + 1])
    return x


def apply_colour(crops: Tensor, table: Tensor, mean: Tensor, std: Tensor, chunk: int = 0) -> Tensor:
    """uint8 crops (N, 3, H, W) on any device -> normalised float32 crops (N, 3, H, W) on that device.

    `table` (N, len(COLUMNS)) float64 on the CPU; `mean`/`std` (3,). `chunk` = 0: all crops at once with
    `colour_indexed` (GPUs); `chunk` > 0: that many crops at a time in `run_key` order with `colour_runs`
    (CPUs: a chunk stays in cache, and slices replace gathers). Both give the same numbers.
    """
    n = crops.shape[0]
    mean = mean.to(crops.device, torch.float32).view(1, 3, 1, 1)
    inv_std = 1 / std.to(crops.device, torch.float32).view(1, 3, 1, 1)
    if chunk <= 0:
        x = colour_indexed(crops.float().mul_(1 / 255), table)
        return x.sub_(mean).mul_(inv_std)
    out = torch.empty(crops.shape, dtype=torch.float32, device=crops.device)
    order = torch.argsort(run_key(table), stable=True)
    for s in range(0, n, chunk):
        rows = order[s : s + chunk]
        x = colour_runs(crops.index_select(0, rows).float().mul_(1 / 255), table[rows])
        out.index_copy_(0, rows, x.sub_(mean).mul_(inv_std))
    return out
