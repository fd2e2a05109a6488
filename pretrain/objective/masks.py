"""Mask generator for masked image modelling (reference §1.2).

Per mask, a prediction ratio r is drawn (a mixture when `pred_ratio` is a list, e.g. [0, 0.3] with
var [0, 0.2]: half the masks empty, half r ~ U(0.1, 0.5)), then r * h * w patches are masked with
BEiT-style blocks (min block area (min(h, w) // 3)^2, log-uniform aspect ratio, 10 tries per block)
or uniformly at random (`pred_shape="rand"`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np

SHAPES = ("block", "rand")


class MaskGenerator:
    def __init__(
        self,
        pred_ratio: float | Sequence[float],
        pred_ratio_var: float | Sequence[float],
        pred_aspect_ratio: tuple[float, float] = (0.3, 1 / 0.3),
        pred_shape: str = "block",
        seed: int | None = None,
    ):
        if pred_shape not in SHAPES:
            raise ValueError(f"unknown pred_shape {pred_shape!r}; valid: {', '.join(SHAPES)}")
        ratios = list(pred_ratio) if isinstance(pred_ratio, Sequence) else [pred_ratio]
        vars_ = list(pred_ratio_var) if isinstance(pred_ratio_var, Sequence) else [pred_ratio_var]
        if len(vars_) == 1:
            vars_ = vars_ * len(ratios)
        if len(vars_) != len(ratios):
            raise ValueError("pred_ratio and pred_ratio_var must have the same length")
        if any(m < v for m, v in zip(ratios, vars_, strict=True)):
            raise ValueError("each pred_ratio must be >= its pred_ratio_var")
        self.ratios, self.vars = ratios, vars_
        self.log_aspect = (math.log(pred_aspect_ratio[0]), math.log(pred_aspect_ratio[1]))
        self.pred_shape = pred_shape
        self.rng = random.Random(seed)

    def draw_ratio(self) -> float:
        draws = [self.rng.uniform(m - v, m + v) if v > 0 else m for m, v in zip(self.ratios, self.vars, strict=True)]
        return draws[0] if len(draws) == 1 else self.rng.choice(draws)

    def __call__(self, h: int, w: int, ratio: float | None = None) -> np.ndarray:
        """A bool (h, w) mask; True = masked. `ratio` overrides the drawn ratio (0 = empty mask)."""
        r = self.draw_ratio() if ratio is None else ratio
        target = r * h * w  # a float: the block masker stops once it reaches it
        if self.pred_shape == "rand":
            flat = np.zeros(h * w, dtype=bool)
            flat[: int(target)] = True
            self.rng.shuffle(flat)
            return flat.reshape(h, w)
        mask = np.zeros((h, w), dtype=bool)
        count = 0
        while count < target:
            added = self._add_block(mask, target - count)
            if added == 0:
                break
            count += added
        return mask

    def _add_block(self, mask: np.ndarray, max_patches: float) -> int:
        """Mask one rectangle adding between 1 and `max_patches` cells; 10 tries; returns cells added."""
        H, W = mask.shape
        min_area = (min(H, W) // 3) ** 2
        for _ in range(10):
            area = self.rng.uniform(min_area, max_patches)
            aspect = math.exp(self.rng.uniform(*self.log_aspect))
            bh = int(round(math.sqrt(area * aspect)))
            bw = int(round(math.sqrt(area / aspect)))
            if bw < W and bh < H:
                top = self.rng.randint(0, H - bh)
                left = self.rng.randint(0, W - bw)
                window = mask[top : top + bh, left : left + bw]
                new = bh * bw - int(window.sum())
                if 0 < new <= max_patches:
                    window[...] = True
                    return new
        return 0
