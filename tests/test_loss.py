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


@pytest.mark.parametrize("shared_head", [True, False])
def test_masked_patches_give_the_full_tensors_numbers(shared_head):
    """The training loop's compact patch outputs (masked-token logits, per-image mean for the center)
    give the same losses and centers as the authors' full (G*B, N, K2) tensors, over three steps."""
    from pretrain.models.head import IBOTHead
    from pretrain.models.vit import vit
    from pretrain.objective.loss import MaskedPatches
    from pretrain.training.step import IBOTModel, teacher_targets

    torch.manual_seed(0)
    G, B, L, K = 2, 3, 2, 32
    K2 = K if shared_head else 24  # a shared head's patch prototypes are the [CLS] ones
    backbone = vit("vit_tiny", patch_size=8, depth=2, img_size=32)
    model = IBOTModel(backbone, IBOTHead(192, K, K2, shared_head=shared_head, hidden_dim=64, bottleneck_dim=16))
    teacher = IBOTModel(vit("vit_tiny", patch_size=8, depth=2, img_size=32, use_mask_token=False),
                        IBOTHead(192, K, K2, shared_head=shared_head, hidden_dim=64, bottleneck_dim=16))  # fmt: skip
    full_loss, packed_loss = make(K, K2, G, L), make(K, K2, G, L)
    for step in range(3):
        x, local = torch.randn(G * B, 3, 32, 32), torch.randn(L * B, 3, 16, 16)
        masks = torch.rand(G * B, 4, 4) < 0.4
        masks[0] = False  # one image without masked tokens
        with torch.no_grad():
            full = full_loss(*model(x, masks, local)[:1], teacher_targets(teacher, x),
                             model(x, masks, local)[1], list(masks.view(G, B, 4, 4)), epoch=step)  # fmt: skip
            (s_cls, s_patch), s_local, feats = model(x, masks, local, packed=True)
            assert feats.shape == (G * B, 192)
            t_out = teacher_targets(teacher, x, masks)
            assert isinstance(s_patch, MaskedPatches) and isinstance(t_out[1], MaskedPatches)
            assert s_patch.logits.shape == t_out[1].logits.shape == (int(masks.sum()), K2)
            packed = packed_loss((s_cls, s_patch), t_out, s_local, list(masks.view(G, B, 4, 4)), epoch=step)
        for key in ("cls", "patch", "loss"):
            assert packed[key].item() == pytest.approx(full[key].item(), rel=1e-6), key
        torch.testing.assert_close(packed_loss.center, full_loss.center, rtol=0, atol=1e-7)
        torch.testing.assert_close(packed_loss.center2, full_loss.center2, rtol=0, atol=1e-7)
    assert full_loss.center2.abs().max() > 1e-3  # the centers moved, so the comparison means something


def test_masked_patches_with_the_wrong_count_are_refused():
    from pretrain.objective.loss import MaskedPatches

    loss, B, K2 = make(K2=8, L=0), 2, 8
    masks = [torch.ones(B, 2, 2, dtype=torch.bool)] * 2  # 16 masked tokens
    s = (torch.zeros(2 * B, 16), MaskedPatches(torch.zeros(15, K2)))
    t = (torch.zeros(2 * B, 16), MaskedPatches(torch.zeros(16, K2), torch.zeros(2 * B, K2)))
    with pytest.raises(ValueError, match="15 masked-token logits for 16 masked tokens"):
        loss(s, t, None, masks, epoch=0)


def test_sinkhorn_targets_hand_cases():
    from pretrain.objective.loss import sinkhorn_knopp

    # Already balanced (two samples per prototype): the targets are the plain softmax.
    logits = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    e = math.e / (math.e + 1)
    expected = torch.tensor([[e, 1 - e], [e, 1 - e], [1 - e, e], [1 - e, e]])
    torch.testing.assert_close(sinkhorn_knopp(logits, temp=1.0), expected, rtol=0, atol=1e-6)
    # Every sample prefers prototype 0 (a dominant collapse): the mass is spread evenly instead.
    dominant = torch.tensor([[3.0, 0.0, 0.0]] * 5)
    torch.testing.assert_close(sinkhorn_knopp(dominant, temp=0.1), torch.full((5, 3), 1 / 3), rtol=0, atol=1e-6)


def test_sinkhorn_marginals_and_low_temperature():
    from pretrain.objective.loss import sinkhorn_knopp

    torch.manual_seed(0)
    logits = torch.randn(12, 5).clamp(-1, 1)
    q = sinkhorn_knopp(logits, temp=0.1, iters=3)
    torch.testing.assert_close(q.sum(1), torch.ones(12), rtol=0, atol=1e-6)  # each sample a distribution
    q = sinkhorn_knopp(logits, temp=0.1, iters=200)
    torch.testing.assert_close(q.sum(0), torch.full((5,), 12 / 5), rtol=0, atol=1e-4)  # equal prototype mass
    # temp 0.005: exp(-400) underflows float32; the float64 computation keeps every row finite
    cold = sinkhorn_knopp(torch.tensor([[1.0, -1.0], [1.0, -1.0]]), temp=0.005)
    assert torch.isfinite(cold).all() and cold.dtype == torch.float32


def test_sinkhorn_centering_in_the_loss():
    from pretrain.objective.loss import sinkhorn_knopp

    G, B, K, K2 = 2, 3, 6, 4
    loss = IBOTLoss(K, K2, G, 0, 0.04, 0.04, 0.05, 0.05, 0, 2, centering="sinkhorn")
    torch.manual_seed(1)
    t_cls, s_cls = torch.randn(G * B, K), torch.randn(G * B, K)
    t_patch, s_patch = torch.randn(G * B, 4, K2), torch.randn(G * B, 4, K2)
    masks = [torch.rand(B, 2, 2) < 0.5 for _ in range(G)]
    out = loss((s_cls, s_patch), (t_cls, t_patch), None, masks, epoch=0)
    q = sinkhorn_knopp(t_cls, 0.04).view(G, B, K)
    logp = torch.log_softmax(s_cls / 0.1, dim=-1).view(G, B, K)
    by_hand = -((q[0] * logp[1]).sum() + (q[1] * logp[0]).sum()) / (2 * B)  # the two cross-view pairs
    assert out["cls"].item() == pytest.approx(by_hand.item(), rel=1e-6)
    with pytest.raises(ValueError, match="centering must be"):
        IBOTLoss(K, K2, G, 0, 0.04, 0.04, 0.05, 0.05, 0, 2, centering="softmax")


def test_koleo_hand_cases():
    from pretrain.objective.loss import koleo_loss

    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])  # normalised: three points on the unit circle
    assert koleo_loss(x).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-6)  # each neighbour at sqrt(2)
    collapsed = torch.ones(4, 3)
    assert koleo_loss(collapsed).item() == pytest.approx(-math.log(1e-8), rel=1e-4)  # constant rows cost most
    y = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], requires_grad=True)
    koleo_loss(y).backward()
    assert y.grad.abs().sum() > 0  # gradients push the near pair apart
