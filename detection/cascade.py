"""Cascade R-CNN RoI heads with per-stage mask heads (Cai & Vasconcelos 2018; reference §3.6).

torchvision has no cascade; this builds one on its `RoIHeads` (sampler, post-processing, test
settings), `MultiScaleRoIAlign`, `BoxCoder`, `Matcher` and `generalized_box_iou_loss`, following the
"GIoU 4conv1fc" Cascade Mask R-CNN of the reference:

- training, stage s = 0, 1, 2: add the ground-truth boxes to the proposals, match at IoU 0.5 / 0.6 /
  0.7 (no low-quality matches), sample 512 RoIs with 25 % positives, then
  loss = w_s * (CE + 10 * GIoU(decoded class-specific box, gt) + mask BCE), w = 1 / 0.5 / 0.25.
  The GIoU sum over positives is divided by the number of sampled RoIs (mmdet's avg_factor).
  The sampled RoIs, minus the ground-truth ones, are regressed by stage s (with the gt label for
  positives, the best foreground class otherwise) and become stage s + 1's proposals.
- test: proposals are refined stage by stage (best foreground class); the class logits of the three
  stages are averaged, boxes come from the last stage (score 0.05, NMS 0.5, 100 per image), and the
  mask probabilities of the three mask heads are averaged on the final boxes.
- boxes are encoded with per-stage target stds (0.1, 0.1, 0.2, 0.2) / (0.05, 0.05, 0.1, 0.1) /
  (0.033, 0.033, 0.067, 0.067), i.e. BoxCoder weights 1 / std. Background is class 0 (torchvision).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, box_iou, clip_boxes_to_image, generalized_box_iou_loss

Shapes = list[tuple[int, int]]  # (H, W) of each resized image
Features = dict[str, Tensor]  # FPN level name -> (B, C, H/s, W/s)
Targets = list[dict[str, Tensor]]  # boxes (G, 4), labels (G,), masks (G, H, W) per image


@dataclass(frozen=True)
class CascadeSpec:
    """Per-stage settings of the reference Cascade Mask R-CNN."""

    iou_thresholds: tuple[float, ...] = (0.5, 0.6, 0.7)
    stage_weights: tuple[float, ...] = (1.0, 0.5, 0.25)
    target_stds: tuple[tuple[float, float, float, float], ...] = (
        (0.1, 0.1, 0.2, 0.2),
        (0.05, 0.05, 0.1, 0.1),
        (0.033, 0.033, 0.067, 0.067),
    )
    giou_weight: float = 10.0
    rois_per_image: int = 512
    positive_fraction: float = 0.25
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100


def coder_weights(stds: Sequence[float]) -> tuple[float, float, float, float]:
    """mmdet's target stds as torchvision `BoxCoder` weights (deltas are divided by std)."""
    return tuple(1.0 / s for s in stds)  # type: ignore[return-value]


@dataclass
class StageSamples:
    """Sampled RoIs of one stage, per image: boxes (n, 4), matched gt index (n,), label (n,), is-gt (n,)."""

    rois: list[Tensor]
    matched: list[Tensor]
    labels: list[Tensor]
    is_gt: list[Tensor]


class CascadeRoIHeads(RoIHeads):
    """`forward(features, proposals, image_shapes, targets)` -> (detections, losses) like `RoIHeads`."""

    def __init__(
        self,
        box_roi_pool: MultiScaleRoIAlign,
        box_heads: Sequence[nn.Module],
        box_predictors: Sequence[nn.Module],
        mask_roi_pool: MultiScaleRoIAlign,
        mask_heads: Sequence[nn.Module],
        mask_predictors: Sequence[nn.Module],
        spec: CascadeSpec = CascadeSpec(),
    ):
        n = len(spec.iou_thresholds)
        if not (len(box_heads) == len(box_predictors) == len(mask_heads) == len(mask_predictors) == n):
            raise ValueError(f"a {n}-stage cascade needs {n} box heads, predictors, mask heads and predictors")
        t0 = spec.iou_thresholds[0]
        # The parent's box coder is the last stage's: its post-processing decodes the final boxes.
        super().__init__(
            box_roi_pool, None, None, t0, t0, spec.rois_per_image, spec.positive_fraction,
            coder_weights(spec.target_stds[-1]), spec.score_thresh, spec.nms_thresh, spec.detections_per_img,
            mask_roi_pool=mask_roi_pool,
        )  # fmt: skip
        self.spec = spec
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.mask_heads = nn.ModuleList(mask_heads)
        self.mask_predictors = nn.ModuleList(mask_predictors)
        self.matchers = [Matcher(t, t, allow_low_quality_matches=False) for t in spec.iou_thresholds]
        self.coders = [BoxCoder(coder_weights(s)) for s in spec.target_stds]

    @property
    def num_stages(self) -> int:
        return len(self.box_heads)

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            return [], self.train_losses(features, proposals, image_shapes, targets)
        return self.detect(features, proposals, image_shapes), {}

    # ------------------------------------------------------------------------------- training
    def sample(self, stage: int, proposals: list[Tensor], targets: Targets) -> StageSamples:
        """Add gt boxes to the proposals, match at the stage's IoU, sample positives and negatives."""
        matcher = self.matchers[stage]
        rois, matched, labels, is_gt = [], [], [], []
        for props, t in zip(proposals, targets, strict=True):
            gt = t["boxes"].to(props.dtype)
            boxes = torch.cat([props.detach(), gt])  # (P + G, 4)
            flags = torch.arange(len(boxes), device=boxes.device) >= len(props)  # (P + G,) True for gt boxes
            if len(gt) == 0:  # background-only image: every RoI is a negative
                idx = boxes.new_zeros(len(boxes), dtype=torch.int64)
                lab = boxes.new_zeros(len(boxes), dtype=torch.int64)
            else:
                m = matcher(box_iou(gt, boxes))  # (P + G,) gt index, or -1 below the threshold
                idx = m.clamp(min=0)
                lab = t["labels"][idx].clone()
                lab[m < 0] = 0
            rois.append(boxes)
            matched.append(idx)
            labels.append(lab)
            is_gt.append(flags)
        pos, neg = self.fg_bg_sampler(labels)
        keep = [torch.where(p | n)[0] for p, n in zip(pos, neg, strict=True)]
        return StageSamples(
            [r[k] for r, k in zip(rois, keep, strict=True)],
            [m[k] for m, k in zip(matched, keep, strict=True)],
            [lab[k] for lab, k in zip(labels, keep, strict=True)],
            [g[k] for g, k in zip(is_gt, keep, strict=True)],
        )

    def box_forward(self, stage: int, features: Features, rois: list[Tensor], shapes: Shapes) -> tuple[Tensor, Tensor]:
        """Class logits (N, K+1) and class-specific deltas (N, 4(K+1)) in fp32 for all RoIs."""
        x = self.box_roi_pool(features, rois, shapes)  # (N, C, 7, 7)
        logits, deltas = self.box_predictors[stage](self.box_heads[stage](x))
        return logits.float(), deltas.float()

    def box_loss(
        self, stage: int, logits: Tensor, deltas: Tensor, s: StageSamples, targets: Targets
    ) -> tuple[Tensor, Tensor]:
        """Cross-entropy over all sampled RoIs and weighted GIoU of the decoded positive boxes."""
        labels = torch.cat(s.labels)  # (N,)
        cls = F.cross_entropy(logits, labels)
        # (N, 4) matched gt boxes; a background-only image has no positives and keeps its RoIs as filler
        pairs = zip(targets, s.matched, s.rois, strict=True)
        gt = torch.cat([t["boxes"][m] if len(t["boxes"]) else r for t, m, r in pairs])
        pos = torch.where(labels > 0)[0]
        d = deltas.reshape(len(labels), -1, 4)[pos, labels[pos]]  # (P, 4) deltas of the gt class
        boxes = self.coders[stage].decode_single(d, torch.cat(s.rois)[pos])
        giou = generalized_box_iou_loss(boxes, gt[pos].to(boxes.dtype), reduction="sum")
        return cls, self.spec.giou_weight * giou / max(len(labels), 1)

    def mask_loss(self, stage: int, features: Features, s: StageSamples, shapes: Shapes, targets: Targets) -> Tensor:
        """Mask BCE (28 x 28 targets) on the stage's positive RoIs, with its own mask head."""
        pos = [torch.where(lab > 0)[0] for lab in s.labels]
        rois = [r[p] for r, p in zip(s.rois, pos, strict=True)]
        matched = [m[p] for m, p in zip(s.matched, pos, strict=True)]
        logits = self.mask_logits(stage, features, rois, shapes)
        masks, labels = [t["masks"] for t in targets], [t["labels"] for t in targets]
        return maskrcnn_loss(logits.float(), rois, masks, labels, matched)

    def mask_logits(self, stage: int, features: Features, boxes: list[Tensor], shapes: Shapes) -> Tensor:
        x = self.mask_roi_pool(features, boxes, shapes)  # (N, C, 14, 14)
        return self.mask_predictors[stage](self.mask_heads[stage](x))  # (N, K+1, 28, 28)

    def refine(self, stage: int, deltas: Tensor, rois: list[Tensor], labels: Tensor, shapes: Shapes) -> list[Tensor]:
        """Regress each RoI by one class's deltas (detached), clipped to its image."""
        d = deltas.reshape(len(labels), -1, 4)[torch.arange(len(labels), device=labels.device), labels]
        boxes = self.coders[stage].decode_single(d.detach(), torch.cat(rois).to(d.dtype))
        parts = boxes.split([len(r) for r in rois])
        return [clip_boxes_to_image(b, shape) for b, shape in zip(parts, shapes, strict=True)]

    def train_losses(
        self, features: Features, proposals: list[Tensor], shapes: Shapes, targets: Targets
    ) -> dict[str, Tensor]:
        """Stage-weighted losses of the three stages (keys `s{stage}.loss_{cls,giou,mask}`)."""
        losses: dict[str, Tensor] = {}
        for stage, w in enumerate(self.spec.stage_weights):
            s = self.sample(stage, proposals, targets)
            logits, deltas = self.box_forward(stage, features, s.rois, shapes)
            cls, giou = self.box_loss(stage, logits, deltas, s, targets)
            losses[f"s{stage}.loss_cls"] = w * cls
            losses[f"s{stage}.loss_giou"] = w * giou
            losses[f"s{stage}.loss_mask"] = w * self.mask_loss(stage, features, s, shapes, targets)
            if stage < self.num_stages - 1:
                labels = torch.cat(s.labels)
                best_fg = logits[:, 1:].argmax(1) + 1
                refined = self.refine(stage, deltas, s.rois, torch.where(labels > 0, labels, best_fg), shapes)
                proposals = [b[~g] for b, g in zip(refined, s.is_gt, strict=True)]  # gt boxes are re-added
        return losses

    # ------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def detect(self, features: Features, proposals: list[Tensor], shapes: Shapes) -> list[dict[str, Tensor]]:
        """Boxes, labels, scores and (D, 1, 28, 28) mask probabilities per image."""
        rois, stage_logits = proposals, []
        for stage in range(self.num_stages):
            logits, deltas = self.box_forward(stage, features, rois, shapes)
            stage_logits.append(logits)
            if stage < self.num_stages - 1:
                rois = self.refine(stage, deltas, rois, logits[:, 1:].argmax(1) + 1, shapes)
        logits = torch.stack(stage_logits).mean(0)  # (N, K+1): class logits averaged over stages
        boxes, scores, labels = self.postprocess_detections(logits, deltas, rois, shapes)
        probs = None
        for stage in range(self.num_stages):
            p = self.mask_logits(stage, features, boxes, shapes).float().sigmoid()
            probs = p if probs is None else probs + p
        probs = probs / self.num_stages  # (D, K+1, 28, 28)
        lab = torch.cat(labels)
        probs = probs[torch.arange(len(lab), device=lab.device), lab][:, None]  # (D, 1, 28, 28)
        parts = probs.split([len(b) for b in boxes])
        return [
            {"boxes": b, "labels": lab_, "scores": sc, "masks": m}
            for b, lab_, sc, m in zip(boxes, labels, scores, parts, strict=True)
        ]
