"""Hand-computed iBOT loss cases (the golden cases against the authors are in test_parity)."""

import math

import pytest
import torch

from pretrain import IBOTLoss


def make(K=16, K2=8, G=2, L=3, epochs=4):
    return IBOTLoss(K, K2, G, L, 0.04, 0.07, 0.04, 0.07, 2, epochs)


def test_uniform_outputs_give_log_k():
    B, N, K, K2 = 3, 4, 16, 8
    loss = make(K, K2)
    s = (torch.zeros(2 * B, K), torch.zeros(2 * B, N, K2))
    t = (torch.zeros(2 * B, K), torch.zeros(2 * B, N, K2))
    masks = [torch.ones(B, 2, 2, dtype=torch.bool)] * 2
    out = loss(s, t, torch.zeros(3 * B, K), masks, epoch=0)
    assert out["cls"].item() == pytest.approx(math.log(K), rel=1e-6)
    assert out["patch"].item() == pytest.approx(math.log(K2), rel=1e-6)


def test_empty_masks_count_in_the_batch_mean():
    B, N, K2 = 4, 4, 8
    loss = make(K2=K2, L=0)
    s = (torch.zeros(2 * B, 16), torch.zeros(2 * B, N, K2))
    t = (torch.zeros(2 * B, 16), torch.zeros(2 * B, N, K2))
    masks = [torch.ones(B, 2, 2, dtype=torch.bool) for _ in range(2)]
    for m in masks:
        m[: B // 2] = False  # half the images have nothing masked
    out = loss(s, t, None, masks, epoch=0)
    assert out["patch"].item() == pytest.approx(math.log(K2) / 2, rel=1e-6)


def test_centers_update_after_use_with_momentum():
    B, K = 2, 16
    loss = make(K=K, L=0)
    t_cls = torch.randn(2 * B, K)
    t_patch = torch.randn(2 * B, 4, 8)
    s = (torch.randn(2 * B, K), torch.randn(2 * B, 4, 8))
    masks = [torch.ones(B, 2, 2, dtype=torch.bool)] * 2
    first = loss(s, (t_cls, t_patch), None, masks, epoch=0)["loss"]
    assert torch.allclose(loss.center, 0.1 * t_cls.mean(0, keepdim=True), atol=1e-6)
    assert torch.allclose(loss.center2[0], 0.1 * t_patch.mean(1).mean(0, keepdim=True), atol=1e-6)
    second = loss(s, (t_cls, t_patch), None, masks, epoch=0)["loss"]
    assert first.item() != second.item()  # the second call uses the updated centers
