"""iBOT loss: self-distillation on [CLS] across views + masked image modelling on patches.

Paper arXiv 2111.07832 Eq. (1)-(2); reference §1.6:
    L_cls   = (1/n1) sum_{q<G} sum_{v!=q} (1/B) sum_b H(P_cls^{q,b}, p_s^{v,b}),   n1 = G(G+L) - G
    L_patch = (1/G) sum_{q<G} (1/B) sum_b sum_i m_i H(P_p^{q,b,i}, p_sp^{q,b,i}) / max(1, sum_i m_i)
with teacher targets P = softmax((t - center) / tau_t(epoch)), student p = softmax(s / tau_s), and
two centers updated (EMA of the teacher logits, all-reduced) after they are used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def teacher_temp_schedule(warmup: float, final: float, warmup_epochs: int, nepochs: int, delay: int = 0):
    """Per-epoch teacher temperature: `delay` epochs at `warmup`, a linear ramp, then `final`."""
    return np.concatenate(
        (
            np.ones(delay) * warmup,
            np.linspace(warmup, final, warmup_epochs),
            np.ones(max(nepochs - warmup_epochs - delay, 0)) * final,
        )
    )


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
    ):
        super().__init__()
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
        """Crops are stacked crop-major: (crop0 images; crop1 images; ...)."""
        student_cls, student_patch = student_output  # (G*B, K), (G*B, N, K2)
        teacher_cls, teacher_patch = teacher_output
        if student_local_cls is not None:
            student_cls = torch.cat([student_cls, student_local_cls])  # ((G+L)*B, K)
        G = self.ngcrops
        V = student_cls.shape[0] // (teacher_cls.shape[0] // G)  # G + L student views
        B = teacher_cls.shape[0] // G

        temp = float(self.teacher_temp_schedule[epoch])
        temp2 = float(self.teacher_temp2_schedule[epoch])
        t_cls = F.softmax((teacher_cls.float() - self.center) / temp, dim=-1).detach()
        s_cls = F.log_softmax(student_cls.float() / self.student_temp, dim=-1)

        # [CLS]: cross-entropy of every (teacher view q, student view v) pair, v != q.
        ce = -torch.einsum("qbk,vbk->qv", t_cls.view(G, B, -1), s_cls.view(V, B, -1)) / B  # (G, V)
        off_diag = ~torch.eye(G, V, dtype=torch.bool, device=ce.device)
        loss_cls = ce[off_diag].sum() / off_diag.sum() * self.lambda1

        # Patches: same view only. Only masked tokens enter the loss, so only they are normalised.
        m = torch.stack([mk.flatten(1) for mk in student_mask])  # (G, B, N) bool
        K2 = teacher_patch.shape[-1]
        t_p = teacher_patch.view(G, B, -1, K2)[m].float()  # (M, K2)
        s_p = student_patch.view(G, B, -1, K2)[m].float()
        t_p = F.softmax((t_p - self.center2[0]) / temp2, dim=-1).detach()
        ce_tok = -(t_p * F.log_softmax(s_p / self.student_temp, dim=-1)).sum(-1)  # (M,)
        image = m.view(G * B, -1).nonzero()[:, 0]  # image (g*B + b) of each masked token
        per_image = torch.zeros(G * B, device=ce_tok.device, dtype=ce_tok.dtype).index_add(0, image, ce_tok)
        per_image = per_image / m.view(G * B, -1).sum(-1).clamp(min=1)  # mean over masked tokens
        loss_patch = per_image.mean() * self.lambda2  # over all G*B images, empty masks included

        self.update_center(teacher_cls, teacher_patch)
        return {"cls": loss_cls, "patch": loss_patch, "loss": loss_cls + loss_patch}

    @torch.no_grad()
    def update_center(self, teacher_cls: Tensor, teacher_patch: Tensor) -> None:
        """EMA of the teacher logits (all tokens for the patch center), summed over processes."""
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        cls_sum = teacher_cls.float().sum(dim=0, keepdim=True)  # (1, K)
        patch_sum = teacher_patch.float().mean(dim=1).sum(dim=0, keepdim=True)  # (1, K2)
        if world > 1:
            dist.all_reduce(cls_sum)
            dist.all_reduce(patch_sum)
        n = teacher_cls.shape[0] * world
        self.center.mul_(self.center_momentum).add_(cls_sum / n, alpha=1 - self.center_momentum)
        self.center2.mul_(self.center_momentum2).add_(patch_sum.unsqueeze(0) / n, alpha=1 - self.center_momentum2)
