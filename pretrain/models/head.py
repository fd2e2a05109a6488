"""iBOT projection head (paper Sec. 3.2; reference §1.4).

MLP (GELU) -> bottleneck -> L2 normalisation -> weight-normalised prototype layer. The MLP is always
shared by [CLS] and patch tokens; `shared_head` decides whether the patch tokens also share the
prototype layer (`last_layer2` is then `last_layer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..objective.loss import MaskedPatches


class WeightNormLinear(nn.Module):
    """Bias-free Linear with weight = g * v / ||v|| per output row.

    Stores `weight_g` (K, 1) and `weight_v` (K, in) under the names of PyTorch's legacy
    `weight_norm`, which the authors' checkpoints use.
    """

    def __init__(self, in_dim: int, out_dim: int, norm_last_layer: bool = True):
        super().__init__()
        v = torch.empty(out_dim, in_dim)
        nn.init.trunc_normal_(v, std=0.02)
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1))
        # norm_last_layer freezes g = 1, so every prototype has unit norm.
        self.weight_g.requires_grad = not norm_last_layer

    @property
    def weight(self) -> Tensor:
        return self.weight_v * (self.weight_g / self.weight_v.norm(dim=1, keepdim=True))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


def _mlp(in_dim: int, hidden_dim: int, bottleneck_dim: int, nlayers: int) -> nn.Module:
    if nlayers == 1:
        return nn.Linear(in_dim, bottleneck_dim)
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
    for _ in range(nlayers - 2):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
    layers.append(nn.Linear(hidden_dim, bottleneck_dim))
    return nn.Sequential(*layers)  # names mlp.0, mlp.2, mlp.4 as the authors'


class IBOTHead(nn.Module):
    """`head(tokens (B, 1+N, D)) -> (cls_logits (B, K), patch_logits (B, N, K2))`."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 8192,
        patch_out_dim: int = 8192,
        shared_head: bool = False,
        norm_last_layer: bool = True,
        nlayers: int = 3,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
    ):
        super().__init__()
        self.kwargs = dict(
            in_dim=in_dim,
            out_dim=out_dim,
            patch_out_dim=out_dim if shared_head else patch_out_dim,
            shared_head=shared_head,
            norm_last_layer=norm_last_layer,
            nlayers=nlayers,
            hidden_dim=hidden_dim,
            bottleneck_dim=bottleneck_dim,
        )
        self.mlp = _mlp(in_dim, hidden_dim, bottleneck_dim, nlayers)
        self.mlp.apply(_init_linear)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, norm_last_layer)
        self.shared_head = shared_head
        # A shared head registers no second module: its patch prototypes are `last_layer`.
        self.last_layer2 = None if shared_head else WeightNormLinear(bottleneck_dim, patch_out_dim, norm_last_layer)

    def _patch_layer(self) -> WeightNormLinear:
        return self.last_layer if self.last_layer2 is None else self.last_layer2

    def embed(self, x: Tensor) -> Tensor:
        """MLP + L2 normalisation: (..., D) -> (..., bottleneck)."""
        return F.normalize(self.mlp(x), dim=-1)

    def forward_cls(self, cls_tokens: Tensor) -> Tensor:
        """[CLS] prototype logits only: (B, D) -> (B, K)."""
        return self.last_layer(self.embed(cls_tokens))

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        z = self.embed(tokens)  # (B, 1+N, bottleneck)
        return self.last_layer(z[:, 0]), self._patch_layer()(z[:, 1:])

    def forward_masked(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, MaskedPatches]:
        """Teacher targets without the logits the loss never reads: tokens (B, 1+N, D), mask (B, N) ->
        [CLS] logits (B, K) and `MaskedPatches` (logits of the masked tokens, each image's mean logits).

        The prototype layer has no bias, so each image's mean patch logits are the layer applied to
        its mean embedding: the center gets the same numbers without logits for every token.
        """
        z = self.embed(tokens)  # (B, 1+N, bottleneck)
        patches = z[:, 1:]
        picked = patches[mask]
        cls, rows = self._prototypes(z[:, 0], torch.cat([picked, patches.mean(dim=1)]))
        return cls, MaskedPatches(rows[: len(picked)], rows[len(picked) :])

    def forward_patches(self, patch_tokens: Tensor) -> Tensor:
        """Patch prototype logits for any set of patch tokens: (..., D) -> (..., K2)."""
        return self._patch_layer()(self.embed(patch_tokens))

    def forward_student(self, cls_tokens: Tensor, patch_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """[CLS] logits (n, K) and patch logits (M, K2) of token rows (n, D) and (M, D), through one MLP
        call: the same numbers as `forward_cls` and `forward_patches`, with each weight read once."""
        z = self.embed(torch.cat([cls_tokens, patch_tokens]))
        return self._prototypes(z[: len(cls_tokens)], z[len(cls_tokens) :])

    def _prototypes(self, z_cls: Tensor, z_patch: Tensor) -> tuple[Tensor, Tensor]:
        """Prototype logits of embedded [CLS] rows and patch rows; each weight-normalised layer (whose
        weight is recomputed on every call) is called once."""
        if self.last_layer2 is None:
            out = self.last_layer(torch.cat([z_cls, z_patch]))
            return out[: len(z_cls)], out[len(z_cls) :]
        return self.last_layer(z_cls), self.last_layer2(z_patch)


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
