"""Mask generator: shapes, the ratio mixture, and statistics of the authors' block masks."""

import math

import numpy as np
import pytest
from scipy import ndimage

from pretrain import MaskGenerator
from tests.helpers.reference import load_reference

N_MASKS = 4000
CASES = {  # fixture name -> (pred_ratio, pred_ratio_var, grid)
    "ratio0.3_var0.2_14x14": (0.3, 0.2, 14),
    "ratio[0,0.3]_var[0,0.2]_14x14": ([0, 0.3], [0, 0.2], 14),
    "ratio0.3_var0.0_28x28": (0.3, 0.0, 28),
}
QUANTILE_LEVELS = (0.1, 0.25, 0.5, 0.75, 0.9)


@pytest.mark.parametrize("name", list(CASES))
def test_block_mask_statistics_match_reference(name):
    ref = load_reference("mask_stats_A.json")[name]
    ratio, var, grid = CASES[name]
    gen = MaskGenerator(ratio, var, seed=0)
    masks = [gen(grid, grid) for _ in range(N_MASKS)]
    frac = np.array([m.mean() for m in masks])
    n, ref_n = len(frac), ref["n"]
    se = math.sqrt(1 / n + 1 / ref_n)  # two independent samples
    # Mean and std of the masked fraction, share of empty masks: within 4 standard errors.
    assert abs(frac.mean() - ref["mean_fraction"]) <= 4 * ref["std_fraction"] * se
    assert abs(frac.std() - ref["std_fraction"]) <= 4 * ref["std_fraction"] * se / math.sqrt(2) + 1e-3
    p0 = ref["frac_zero"]
    assert abs((frac == 0).mean() - p0) <= 4 * math.sqrt(max(p0 * (1 - p0), 1e-4)) * se
    # Quantiles through the empirical CDF (robust to the atom at 0 in the mixture).
    for level, q in zip(QUANTILE_LEVELS, ref["quantiles"], strict=True):
        tol = 4 * math.sqrt(level * (1 - level)) * se
        assert (frac < q - 1e-9).mean() <= level + tol
        assert (frac <= q + 1e-9).mean() >= level - tol
    # Mean number of 4-connected masked regions over non-empty masks.
    comps = np.array([ndimage.label(m)[1] for m in masks if m.any()])
    assert abs(comps.mean() - ref["mean_components"]) <= 4 * comps.std() * se + 1e-3


def test_mask_shapes_and_types():
    gen = MaskGenerator(0.3, 0.0, seed=1)
    for h, w in [(14, 14), (6, 6), (10, 7)]:
        m = gen(h, w)
        assert m.shape == (h, w) and m.dtype == bool
        assert 0 < m.sum() <= round(0.3 * h * w)  # block masking never overshoots the target


def test_ratio_override_and_mixture():
    gen = MaskGenerator([0, 0.3], [0, 0.2], seed=2)
    assert not gen(14, 14, ratio=0.0).any()
    draws = [gen.draw_ratio() for _ in range(2000)]
    nonzero = [r for r in draws if r > 0]
    assert 0.45 < len(nonzero) / len(draws) < 0.55
    assert min(nonzero) >= 0.1 and max(nonzero) <= 0.5


def test_rand_masks_exact_count():
    gen = MaskGenerator(0.4, 0.0, pred_shape="rand", seed=3)
    m = gen(14, 14)
    assert m.sum() == int(0.4 * 196)


def test_seed_reproducible_and_bad_args():
    a = [MaskGenerator(0.3, 0.1, seed=5)(14, 14) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    with pytest.raises(ValueError, match="pred_shape"):
        MaskGenerator(0.3, 0.0, pred_shape="circle")
    with pytest.raises(ValueError, match=">="):
        MaskGenerator(0.1, 0.2)
