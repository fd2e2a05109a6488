"""DAVIS J (region IoU) and F (boundary F-measure) and their statistics, checked by hand on small masks."""

import numpy as np
import pytest

from video_seg import boundary_f, boundary_map, boundary_tolerance, frame_scores, region_iou, statistics, summarise


def test_region_iou_by_hand():
    a, b = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    a[0:2, 0:3] = True  # 6 px
    b[1:3, 0:3] = True  # 6 px, 3 shared
    assert region_iou(a, b) == pytest.approx(3 / 9)
    assert region_iou(b * 0, a * 0) == 1.0 and region_iou(a, a * 0) == 0.0


def test_boundary_map_by_hand():
    """A pixel differing from its east, south or south-east neighbour; the last row/column compare along the edge
    only, so a mask touching the bottom-right corner has no boundary there."""
    m = np.zeros((5, 5), bool)
    m[1:3, 1:3] = True
    expected = np.zeros((5, 5), bool)
    expected[0, 0:3] = True  # above: differs from the south / south-east
    expected[1:3, 0] = True  # left: differs from the east
    expected[1, 2] = expected[2, 1] = expected[2, 2] = True  # inside, next to the outside
    assert np.array_equal(boundary_map(m), expected)
    corner = np.zeros((4, 4), bool)
    corner[2:, 2:] = True
    assert not boundary_map(corner)[3, 3] and boundary_map(corner)[3, 1] and not boundary_map(corner)[3, 2]


def test_boundary_f_by_hand():
    """50x50: tolerance ceil(0.008 * 70.7) = 1 px (a plus-shaped disk). G's boundary is column 9 (50 px); S
    moves rows 25.. to column 12: 53 boundary pixels, 26 within 1 px of G's and 26 of G's within 1 px of S's,
    so F = 2 * 26 / (53 + 50)."""
    assert boundary_tolerance((50, 50)) == 1 and boundary_tolerance((480, 854)) == 8
    gt, pred = np.zeros((50, 50), bool), np.zeros((50, 50), bool)
    gt[:, :10] = True
    pred[:25, :10] = True
    pred[25:, :13] = True
    assert boundary_map(pred).sum() == 53 and boundary_map(gt).sum() == 50
    assert boundary_f(pred, gt) == pytest.approx(52 / 103)


def test_boundary_f_tolerance_at_davis_size():
    """480x854: boundaries within 8 px match (F = 1), farther ones do not."""
    gt = np.zeros((480, 854), bool)
    gt[100:300, 200:500] = True

    def shifted(dy, dx):
        return np.roll(gt, (dy, dx), axis=(0, 1))

    assert boundary_f(shifted(0, 7), gt) == 1.0 and boundary_f(shifted(5, 5), gt) == 1.0  # 7.07 px
    assert boundary_f(shifted(0, 8), gt) == 1.0 and boundary_f(shifted(0, 9), gt) < 1.0
    assert 0.0 < boundary_f(shifted(0, 12), gt) < 1.0 and boundary_f(shifted(0, 100), gt) < 0.5
    empty = np.zeros_like(gt)
    assert boundary_f(empty, empty) == 1.0 and boundary_f(empty, gt) == 0.0 and boundary_f(gt, empty) == 0.0


def test_statistics_and_summary_by_hand():
    """Decay bins are round(linspace(1, 8, 5)) - 1 = 0, 2, 4, 5, 7, inclusive: first v0..v2, last v5..v7."""
    values = np.array([1.0, 0.9, 0.2, 0.6, 0.5, 0.7, 0.1, 0.0])
    mean, recall, decay = statistics(values)
    assert mean == pytest.approx(0.5) and recall == 0.5  # 0.5 itself is not > 0.5
    assert decay == pytest.approx((1.0 + 0.9 + 0.2) / 3 - (0.7 + 0.1 + 0.0) / 3)
    per_object = np.array([[1.0, 1, 0, 0.5, 1, 0], [0.5, 0, 0, 0.5, 0, 0], [0.0, 0, 0, 0.2, 0, 0]])
    out = summarise(per_object)  # over 3 objects, whichever videos they come from
    assert out["J-Mean"] == pytest.approx(50.0) and out["F-Mean"] == pytest.approx(40.0)
    assert out["J&F-Mean"] == pytest.approx(45.0) and out["J-Recall"] == pytest.approx(100 / 3)


def test_frame_scores_count_void_as_background():
    gt = np.zeros((8, 8), np.uint8)
    gt[1:4, 1:4], gt[5:7, 5:7], gt[0, 7] = 1, 2, 255
    pred = gt.copy()
    pred[0, 7] = 0
    j, f = frame_scores(pred, gt, 2)
    assert j.tolist() == [1.0, 1.0] and f.tolist() == [1.0, 1.0]
    j, _ = frame_scores(np.where(pred == 2, 0, pred), gt, 2)  # object 2 missed
    assert j.tolist() == [1.0, 0.0]
