"""The fine-tuning model (the evaluation layer's `CLSClassifier`) and its layer-decay parameter groups.

Reference §3.5 / §5 item 19: the classifier input is [CLS] after the final LayerNorm (not mean
pooling); the Linear head is trunc-normal(0.02) initialised, then weight and bias are scaled by
0.001. Layer ids follow BEiT (embeddings 0, block i -> i + 1, everything else L + 1) with
lr scale = decay^(L + 1 - id); biases, 1-D tensors, `pos_embed` and `cls_token` get no weight decay.
The semi-supervised start keeps the iBOT head's first Linear + GELU between [CLS] and the classifier.

Swin backbones (reference §5 item 24): the classifier input is the pseudo-[CLS] of
`forward_features`, the average of the final-stage tokens after the final LayerNorm (the avgpool of
Swin's own fine-tuning); layer ids come from the backbone's `layer_id` (blocks of all stages, patch
merging with the block before it) through `backbone_layer_id`.
"""

from __future__ import annotations

from torch import nn

from evalkit import CLSClassifier, backbone_layer_id, layer_decay_param_groups
from plumbing import CheckpointError
from pretrain import with_drop_path

NO_WEIGHT_DECAY = ("backbone.pos_embed", "backbone.cls_token")


def first_head_layer(head: nn.Module) -> nn.Linear:
    """The iBOT projection head's first Linear (D -> hidden), copied; its GELU follows in the model."""
    first = head.mlp[0] if isinstance(head.mlp, nn.Sequential) else None
    if not isinstance(first, nn.Linear) or len(head.mlp) < 2:
        raise CheckpointError("start_from=head_layer1 needs an iBOT head with at least 2 MLP layers")
    layer = nn.Linear(first.in_features, first.out_features)
    layer.load_state_dict(first.state_dict())
    return layer


def build_model(
    backbone: nn.Module,
    num_classes: int,
    drop_path_rate: float = 0.0,
    head: nn.Module | None = None,
) -> CLSClassifier:
    """Fine-tuning model from a loaded backbone (and the iBOT head for the head_layer1 start)."""
    model = CLSClassifier(
        with_drop_path(backbone, drop_path_rate), num_classes, first_head_layer(head) if head else None
    )
    masked = getattr(model.backbone, "masked_embed", None)
    if masked is not None:  # the mask token is unused without masks; DDP rejects unused trainables
        masked.requires_grad_(False)
    return model.train()


def param_groups(model: CLSClassifier, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups with `lr_scale` per BEiT layer id (the backbone's own rule) and the weight-decay exemptions."""
    return layer_decay_param_groups(
        model.named_parameters(),
        depth=model.backbone.depth,
        layer_decay=layer_decay,
        weight_decay=weight_decay,
        backbone_prefix="backbone.",
        no_decay_names=NO_WEIGHT_DECAY,
        layer_id=backbone_layer_id(model.backbone),
    )
