"""COCO run-length encoding of binary masks, compressed string form, without pycocotools.

The layout is the one pycocotools reads (`pycocotools.mask.decode`, `COCO.annToMask`): the mask is
scanned in column-major (Fortran) order, the runs alternate 0s and 1s starting with 0s (so the first
count may be 0), and the counts are written as a string: each count (from the fourth on, minus the
count two places before it) in little-endian groups of 5 bits with a continuation bit (0x20), the
sign taken from bit 0x10 of the last group, each group offset by 48 into printable ASCII.
"""

from __future__ import annotations

import numpy as np


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """Alternating run lengths (0s first) of `mask` in column-major order."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]]))
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return counts.astype(np.int64)


def counts_to_string(counts: np.ndarray) -> str:
    """Compress run lengths into COCO's string form."""
    values = [int(c) for c in counts]
    chars = []
    for i, value in enumerate(values):
        x = value - values[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def string_to_counts(s: str | bytes) -> np.ndarray:
    """Inverse of `counts_to_string`."""
    text = s.decode("ascii") if isinstance(s, bytes) else s
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return np.asarray(counts, dtype=np.int64)


def encode(mask: np.ndarray) -> dict:
    """Binary HxW mask -> {"size": [h, w], "counts": str} (compressed COCO RLE)."""
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(run_lengths(mask))}


def decode(rle: dict) -> np.ndarray:
    """Compressed COCO RLE -> bool HxW mask."""
    h, w = rle["size"]
    counts = string_to_counts(rle["counts"])
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise ValueError(f"RLE counts sum to {flat.size}, expected {h} x {w} = {h * w}")
    return flat.reshape(w, h).T


def bbox(mask: np.ndarray) -> list[float]:
    """Tight COCO box [x, y, width, height] of the mask pixels (as pycocotools.mask.toBbox)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]
