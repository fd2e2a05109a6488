"""Mask R-CNN and Cascade Mask R-CNN on a ViT or Swin + FPN backbone, from torchvision's parts (reference §3.6).

Shared settings (reference values): anchors 32-512 (scale 8 at strides 4-64) x ratios (0.5, 1, 2);
RPN IoU 0.7 / 0.3, 256 samples at 50 % positives, NMS 0.7, 2000/2000 proposals in training and
1000/1000 at test; RoIAlign 7 x 7 (boxes) and 14 x 14 (masks), sampling ratio 0, strides 4-32;
4conv1fc box heads (3 x 3 convs with BN, one 1024-d FC), class-specific regression; FCN mask heads
(4 convs, 28 x 28 outputs); test score 0.05, NMS 0.5, 100 detections, masks at 0.5.

Differences from mmdet: torchvision's RoIAlign is not `aligned=True`, and Mask R-CNN keeps
torchvision's own box loss (smooth L1, beta 1/9). Training images arrive already augmented and
resized by the data pipeline; the model only normalises and pads them (to a multiple of 32). At
test time the model resizes to the test scale and maps boxes and masks back to the input's size.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign

from evalkit import backbone_layer_id, layer_decay_param_groups
from pretrain import IMAGENET_MEAN, IMAGENET_STD

from .backbone import ROI_LEVELS, build_fpn
from .cascade import CascadeRoIHeads, CascadeSpec
from .config import DETECTORS, DetectorSpec

ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))
ANCHOR_RATIOS = ((0.5, 1.0, 2.0),) * 5


class DetectionTransform(GeneralizedRCNNTransform):
    """Normalise and pad to a multiple of 32; resize to the test scale only in eval mode.

    Training images come from the multi-scale augmentation already at their training size.
    """

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        if self.training:
            return image, target
        return super().resize(image, target)


def box_head(spec: DetectorSpec) -> nn.Module:
    """4conv1fc: four 3 x 3 convs with BN + ReLU on the 7 x 7 RoI features, then one FC + ReLU."""
    C = spec.fpn_channels
    return FastRCNNConvFCHead((C, 7, 7), [spec.conv_channels] * 4, [spec.fc_dim], norm_layer=nn.BatchNorm2d)


def mask_head(spec: DetectorSpec, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """FCN mask head: four 3 x 3 convs, a 2x deconvolution, one mask logit per class (28 x 28)."""
    C = spec.conv_channels
    return MaskRCNNHeads(spec.fpn_channels, [C] * 4, 1), MaskRCNNPredictor(C, C, num_classes + 1)


def build_rpn(spec: DetectorSpec) -> RegionProposalNetwork:
    anchors = AnchorGenerator(ANCHOR_SIZES, ANCHOR_RATIOS)
    return RegionProposalNetwork(
        anchors,
        RPNHead(spec.fpn_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n={"training": spec.rpn_pre_nms_train, "testing": spec.rpn_pre_nms_test},
        post_nms_top_n={"training": spec.rpn_post_nms_train, "testing": spec.rpn_post_nms_test},
        nms_thresh=0.7,
    )


def build_transform(spec: DetectorSpec) -> DetectionTransform:
    return DetectionTransform(spec.test_short, spec.test_max, list(IMAGENET_MEAN), list(IMAGENET_STD), 32)


def roi_pools() -> tuple[MultiScaleRoIAlign, MultiScaleRoIAlign]:
    """RoIAlign 7 x 7 for boxes and 14 x 14 for masks over strides 4-32, sampling ratio 0 (adaptive)."""
    return MultiScaleRoIAlign(ROI_LEVELS, 7, 0), MultiScaleRoIAlign(ROI_LEVELS, 14, 0)


def build_detector(vit: nn.Module, spec: DetectorSpec, num_classes: int, precision: str = "fp32") -> GeneralizedRCNN:
    """Detector over `num_classes` foreground classes (labels 1..K; 0 is background) on a core ViT or
    Swin (`ViTFPN` / `SwinFPN`); `precision` (auto | fp32 | bf16): the backbone and FPN run under bf16
    autocast when it resolves to bf16 on the input's device, the heads in fp32 (see `ViTFPN`)."""
    if spec.detector not in DETECTORS:
        raise ValueError(f"unknown detector {spec.detector!r}; valid: {', '.join(DETECTORS)}")
    backbone = build_fpn(vit, spec.out_indices, spec.out_with_norm, spec.use_checkpoint, spec.fpn_channels, precision)
    box_pool, mask_pool = roi_pools()
    if spec.detector == "mask_rcnn":
        m_head, m_pred = mask_head(spec, num_classes)
        model = MaskRCNN(
            backbone,
            rpn_anchor_generator=AnchorGenerator(ANCHOR_SIZES, ANCHOR_RATIOS),
            rpn_pre_nms_top_n_train=spec.rpn_pre_nms_train,
            rpn_post_nms_top_n_train=spec.rpn_post_nms_train,
            rpn_pre_nms_top_n_test=spec.rpn_pre_nms_test,
            rpn_post_nms_top_n_test=spec.rpn_post_nms_test,
            box_roi_pool=box_pool,
            box_head=box_head(spec),
            box_predictor=FastRCNNPredictor(spec.fc_dim, num_classes + 1),
            mask_roi_pool=mask_pool,
            mask_head=m_head,
            mask_predictor=m_pred,
            box_batch_size_per_image=spec.rois_per_image,
        )  # RPN and RoI thresholds, sampling and test settings: torchvision's defaults = the reference's
        model.transform = build_transform(spec)
        return model
    masks = [mask_head(spec, num_classes) for _ in range(3)]
    heads = CascadeRoIHeads(
        box_pool,
        [box_head(spec) for _ in range(3)],
        [FastRCNNPredictor(spec.fc_dim, num_classes + 1) for _ in range(3)],
        mask_pool,
        [h for h, _ in masks],
        [p for _, p in masks],
        CascadeSpec(rois_per_image=spec.rois_per_image),
    )
    return GeneralizedRCNN(backbone, build_rpn(spec), heads, build_transform(spec))


def param_groups(model: nn.Module, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups with the reference's layer ids (`LayerDecayOptimizerConstructor`).

    Embeddings (cls_token, pos_embed, patch_embed) id 0, block i id i + 1, everything else (adaptor,
    FPN, RPN, RoI heads) id depth + 1; lr scale = layer_decay ** (depth + 1 - id). Biases and 1-D
    tensors are not decayed. Reference quirk kept on purpose: pos_embed and cls_token ARE decayed,
    because the reference's exemption list names them without the `backbone.` prefix and never matches.
    A Swin's ids are its own `layer_id` (blocks of all stages; depth = all blocks); its stage norms,
    like the FPN, get depth + 1.
    """
    fpn = model.backbone
    prefix = f"backbone.{fpn.body_name}."  # backbone.vit. or backbone.swin.
    named: Iterable = model.named_parameters()
    depth, layer_id = fpn.body.depth, backbone_layer_id(fpn.body)
    return layer_decay_param_groups(named, depth, layer_decay, weight_decay, prefix, layer_id=layer_id)
