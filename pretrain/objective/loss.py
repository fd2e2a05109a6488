"""iBOT loss: self-distillation on [CLS] across views + masked image modelling on patches.

Paper arXiv 2111.07832 Eq. (1)-(2); reference §1.6:
    L_cls   = (1/n1) sum_{q<G} sum_{v!=q} (1/B) sum_b H(P_cls^{q,b}, p_s^{v,b}),   n1 = G(G+L) - G
    L_patch = (1/G) sum_{q<G} (1/B) sum_b sum_i m_i H(P_p^{q,b,i}, p_sp^{q,b,i}) / max(1, sum_i m_i)
with teacher targets P = softmax((t - center) / tau_t(epoch)), student p = softmax(s / tau_s), and
two centers updated (EMA of the teacher logits, all-reduced) after they are used.

`centering="sinkhorn"` (not the paper's; DINOv2's and SwAV's) replaces `softmax((t - center) / tau_t)`
by Sinkhorn-Knopp targets: exp(t / tau_t) normalised in turn over the batch (every prototype gets
1/K of the mass) and over the prototypes (every sample sums to 1), 3 times. It rules out the dominant
collapse; it cannot sharpen targets when the teacher's outputs barely differ between images (measured:
bench/README.md, "Learning benchmark").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from plumbing import get_world_size


def teacher_temp_schedule(warmup: float, final: float, warmup_epochs: int, nepochs: int, delay: int = 0):
    """Per-epoch teacher temperature: `delay` epochs at `warmup`, a linear ramp, then `final`."""
    return np.concatenate(
        (
            np.ones(delay) * warmup,
            np.linspace(warmup, final, warmup_epochs),
            np.ones(max(nepochs - warmup_epochs - delay, 0)) * final,
        )
    )


def _all_reduce(x: Tensor) -> Tensor:
    if get_world_size() > 1:
        dist.all_reduce(x)
    return x


@torch.no_grad()
def sinkhorn_knopp(logits: Tensor, temp: float, iters: int = 3) -> Tensor:
    """Teacher targets (n, K) with equal prototype mass over the batch (all processes together).

    Q = exp(logits / temp) as a (K, n) matrix, scaled to total 1, then `iters` times: each prototype
    row to 1/K, each sample column to 1/n; returned transposed and times n, so each sample's row sums
    to 1. Computed in float64 (a prototype nobody picks would underflow in float32 at low temp).
    """
    x = logits.double() / temp
    q = torch.exp(x - _all_reduce(x.max().reshape(1)).div_(get_world_size())).T  # (K, n); any shift cancels out
    K = q.shape[0]
    n = _all_reduce(torch.tensor([float(q.shape[1])], dtype=q.dtype, device=q.device))
    q /= _all_reduce(q.sum().reshape(1)).clamp_min(1e-300)
    for _ in range(iters):
        q /= _all_reduce(q.sum(dim=1, keepdim=True)).clamp_min(1e-300) * K  # prototypes: 1/K each
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-300) * n  # samples: 1/n each
    return (q * n).T.to(logits.dtype if logits.dtype == torch.float64 else torch.float32)


def koleo_loss(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Kozachenko-Leonenko entropy term (DINOv2's KoLeo; not in the iBOT paper): for L2-normalised rows
    of x (n, D), minus the mean log distance of each row to its nearest other row. Spreading the batch
    over the sphere lowers it, so a constant (collapsed) representation is expensive."""
    x = F.normalize(x.float(), dim=-1, eps=eps)
    with torch.no_grad():
        dots = x @ x.T
        dots.fill_diagonal_(-2.0)  # never one's own neighbour
        nearest = dots.argmax(dim=1)
    distances = (x - x[nearest]).norm(dim=-1)
    return -torch.log(distances + eps).mean()


class MaskedPatches(NamedTuple):
    """Patch logits in the compact form the training loop uses instead of a full (G*B, N, K2) tensor.

    `logits` (M, K2): the masked tokens only, in crop-major (image, token) order, i.e. the order of
    `full[mask]`. `token_mean` (G*B, K2): each image's mean logits over all its N tokens, what the
    patch center needs from the teacher (None for the student). The loss reads nothing else, so the
    numbers equal those of the full tensors (the parity tests use the full form).
    """

    logits: Tensor
    token_mean: Tensor | None = None


class IBOTLoss(nn.Module):
    def __init__(
        self,
        out_dim: int,
        patch_out_dim: int,
        ngcrops: int,
        nlcrops: int,
        warmup_teacher_temp: float,
        teacher_temp: float,
        warmup_teacher_temp2: float,
        teacher_temp2: float,
        warmup_teacher_temp_epochs: int,
        nepochs: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        center_momentum2: float = 0.9,
        lambda1: float = 1.0,
        lambda2: float = 1.0,
        mim_start_epoch: int = 0,
        centering: str = "center",
    ):
        super().__init__()
        if centering not in ("center", "sinkhorn"):
            raise ValueError(f"centering must be 'center' or 'sinkhorn', got {centering!r}")
        self.centering = centering
        self.ngcrops, self.nlcrops = ngcrops, nlcrops
        self.student_temp = student_temp
        self.center_momentum, self.center_momentum2 = center_momentum, center_momentum2
        self.lambda1, self.lambda2 = lambda1, lambda2
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("center2", torch.zeros(1, 1, patch_out_dim))
        self.teacher_temp_schedule = teacher_temp_schedule(
            warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs
        )
        # The patch schedule is held at its warm-up value until masked image modelling starts.
        self.teacher_temp2_schedule = teacher_temp_schedule(
            warmup_teacher_temp2, teacher_temp2, warmup_teacher_temp_epochs, nepochs, delay=mim_start_epoch
        )

    def forward(
        self,
        student_output: tuple[Tensor, Tensor],
        teacher_output: tuple[Tensor, Tensor],
        student_local_cls: Tensor | None,
        student_mask: list[Tensor],
        epoch: int,
    ) -> dict[str, Tensor]:
        """Crops are stacked crop-major: (crop0 images; crop1 images; ...).

        The patch outputs are full (G*B, N, K2) tensors (the authors' form) or `MaskedPatches`
        (student: masked-token logits; teacher: the same plus each image's mean over its tokens).
        """
        student_cls, student_patch = student_output  # (G*B, K), (G*B, N, K2)
        teacher_cls, teacher_patch = teacher_output
        if student_local_cls is not None:
            student_cls = torch.cat([student_cls, student_local_cls])  # ((G+L)*B, K)
        G = self.ngcrops
        V = student_cls.shape[0] // (teacher_cls.shape[0] // G)  # G + L student views
        B = teacher_cls.shape[0] // G

        temp = float(self.teacher_temp_schedule[epoch])
        temp2 = float(self.teacher_temp2_schedule[epoch])
        t_cls = self.targets(teacher_cls.float(), self.center, temp)
        s_cls = F.log_softmax(student_cls.float() / self.student_temp, dim=-1)

        # [CLS]: cross-entropy of every (teacher view q, student view v) pair, v != q.
        ce = -torch.einsum("qbk,vbk->qv", t_cls.view(G, B, -1), s_cls.view(V, B, -1)) / B  # (G, V)
        off_diag = ~torch.eye(G, V, dtype=torch.bool, device=ce.device)
        loss_cls = ce[off_diag].sum() / off_diag.sum() * self.lambda1

        # Patches: same view only. Only masked tokens enter the loss, so only they are normalised.
        m = torch.stack([mk.flatten(1) for mk in student_mask])  # (G, B, N) bool
        t_p = self.masked_logits(teacher_patch, m, G, B)  # (M, K2)
        s_p = self.masked_logits(student_patch, m, G, B)
        t_p = self.targets(t_p, self.center2[0], temp2)
        ce_tok = -(t_p * F.log_softmax(s_p / self.student_temp, dim=-1)).sum(-1)  # (M,)
        image = m.view(G * B, -1).nonzero()[:, 0]  # image (g*B + b) of each masked token
        per_image = torch.zeros(G * B, device=ce_tok.device, dtype=ce_tok.dtype).index_add(0, image, ce_tok)
        per_image = per_image / m.view(G * B, -1).sum(-1).clamp(min=1)  # mean over masked tokens
        loss_patch = per_image.mean() * self.lambda2  # over all G*B images, empty masks included

        self.update_center(teacher_cls, teacher_patch)
        return {"cls": loss_cls, "patch": loss_patch, "loss": loss_cls + loss_patch}

    def targets(self, logits: Tensor, center: Tensor, temp: float) -> Tensor:
        """Teacher probabilities: centred and sharpened softmax, or Sinkhorn-Knopp (`centering`)."""
        if self.centering == "sinkhorn":
            return sinkhorn_knopp(logits.detach(), temp)
        return F.softmax((logits - center) / temp, dim=-1).detach()

    @staticmethod
    def masked_logits(patch: Tensor | MaskedPatches, m: Tensor, G: int, B: int) -> Tensor:
        """(M, K2) float logits of the masked tokens from either form of the patch output."""
        if isinstance(patch, MaskedPatches):
            if patch.logits.shape[0] != int(m.sum()):
                raise ValueError(f"{patch.logits.shape[0]} masked-token logits for {int(m.sum())} masked tokens")
            return patch.logits.float()
        return patch.view(G, B, -1, patch.shape[-1])[m].float()

    @torch.no_grad()
    def update_center(self, teacher_cls: Tensor, teacher_patch: Tensor | MaskedPatches) -> None:
        """EMA of the teacher logits (all tokens for the patch center), summed over processes."""
        world = get_world_size()
        cls_sum = teacher_cls.float().sum(dim=0, keepdim=True)  # (1, K)
        if isinstance(teacher_patch, MaskedPatches):
            per_image = teacher_patch.token_mean.float()  # (G*B, K2)
        else:
            per_image = teacher_patch.float().mean(dim=1)
        patch_sum = per_image.sum(dim=0, keepdim=True)  # (1, K2)
        if world > 1:
            dist.all_reduce(cls_sum)
            dist.all_reduce(patch_sum)
        n = teacher_cls.shape[0] * world
        self.center.mul_(self.center_momentum).add_(cls_sum / n, alpha=1 - self.center_momentum)
        self.center2.mul_(self.center_momentum2).add_(patch_sum.unsqueeze(0) / n, alpha=1 - self.center_momentum2)
