"""The dense stages of the demo, each run on every model: detection (Mask R-CNN on the world's COCO set)
and semantic segmentation (UperNet and a linear head on its ADE set), and the analysis figures
(attention maps with their Jaccard, correspondence, prototype patterns, PCA of patch features).
"""

from __future__ import annotations

from analysis import (
    AttentionConfig,
    CorrespondenceConfig,
    PatternsConfig,
    PCAConfig,
    run_attention,
    run_correspondence,
    run_patterns,
    run_pca,
)
from detection import demo_detection
from plumbing import resolve_device
from pretrain import load_backbone, load_head
from segmentation import demo_segmentation

from .common import Context

PCA_CLASSES = ("circle", "star", "ring", "cross")  # the first val image of each is drawn


def dense(ctx: Context, model: str) -> None:
    """Detection, then segmentation with UperNet (fine-tuned backbone) and a linear head (frozen backbone)."""
    path = str(ctx.models[model])
    device = {"device": str(resolve_device(ctx.device))}  # auto: CUDA when available, as every other stage
    demo_detection(path, str(ctx.world / "coco"), str(ctx.folder("dense", model, "detection")),
                   ctx.budgets["detection_s"] / 60, **device)  # fmt: skip
    for head, budget in (("upernet", "upernet_s"), ("linear", "seg_linear_s")):
        out = ctx.folder("dense", model, f"segmentation_{head}")
        demo_segmentation(path, str(ctx.world / "ade"), str(out), ctx.budgets[budget] / 60, head=head, **device)


def analysis(ctx: Context, model: str) -> None:
    """Attention maps and their Jaccard with the object masks, two-view correspondence, patterns, PCA."""
    path = ctx.models[model]
    backbone, _ = load_backbone(path)
    val = ctx.classification / "val"
    common = dict(pretrained=str(path), num_workers=0, progress=False, device=ctx.device)
    masks = ctx.classification / "masks" / "val"

    def where(tool: str) -> str:
        return str(ctx.folder("analysis", model, tool))

    # square at the images' own size: the same maps as resize=none, in batches instead of one image at a time
    cfg = AttentionConfig(**common, data_path=str(val), masks=str(masks), resize="square", image_size=ctx.image_size,
                          batch_size_per_gpu=64, max_figures=4,
                          output_dir=where("attention"))  # fmt: skip
    run_attention(backbone, cfg)
    cfg = CorrespondenceConfig(**common, mode="instance", data_path=str(val), image_size=ctx.image_size,
                               max_images=ctx.budgets["correspondence_images"], batch_size_per_gpu=32, max_figures=4,
                               output_dir=where("correspondence"))  # fmt: skip
    run_correspondence(backbone, cfg)
    head, _ = load_head(path)
    cfg = PatternsConfig(**common, data_path=str(val), resize_size=ctx.image_size, image_size=ctx.image_size,
                         num_prototypes=8, topk=16, output_dir=where("patterns"))  # fmt: skip
    run_patterns(backbone, cfg, head=head)
    firsts = [str(p) for c in PCA_CLASSES for p in sorted((val / c).glob("*.png"))[:1]]
    cfg = PCAConfig(**common, images=firsts, resize="none", foreground=True,
                    output_dir=where("pca"))  # fmt: skip
    run_pca(backbone, cfg)
