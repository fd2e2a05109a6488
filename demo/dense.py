"""The dense stages of the demo, each run on every model: detection (Mask R-CNN on the world's COCO set)
and semantic segmentation (UperNet and a linear head on its ADE set), and the analysis figures
(attention maps with their Jaccard, correspondence, prototype patterns, PCA of patch features).

Every one is its command's `run(backbone, cfg)` through `evalkit.evaluate` (checks, run folder, config.yaml,
results.json with provenance); the trained ones get a schedule of the demo's size and `time_limit_min`.
"""

from __future__ import annotations

import functools
import math

from PIL import Image

from analysis import (
    AttentionConfig,
    CorrespondenceConfig,
    ExploreConfig,
    PatternsConfig,
    PCAConfig,
    run_attention,
    run_correspondence,
    run_explore,
    run_patterns,
    run_pca,
)
from detection import DetectionConfig, DetectorSpec
from detection import run as detection_run
from evalkit import evaluate
from plumbing import DatasetError, resolve_device
from pretrain import load_backbone, load_head, mask_grid
from segmentation import SegConfig, ade_pairs
from segmentation import run as segmentation_run

from .common import Context

PCA_CLASSES = ("circle", "star", "ring", "cross")  # the first val image of each is drawn
# Detection: the reference recipe scaled to the world's 128 px scenes: the same augmentation and schedule shape
# (lr x0.1 at 8/12 and 11/12 of the epochs), Mask R-CNN (it learns faster than the cascade in a few hundred
# iterations), 32-channel FPN and heads, fewer proposals and RoIs, lr 1e-3. The ViT's own cost dominates a step.
DETECTOR = DetectorSpec(detector="mask_rcnn", fpn_channels=32, conv_channels=32, fc_dim=128, rpn_pre_nms_train=500,
                        rpn_post_nms_train=250, rpn_pre_nms_test=300, rpn_post_nms_test=100, rois_per_image=64,
                        test_short=128, test_max=192)  # fmt: skip
DETECTION = dict(drop_path_rate=0.0, train_scales=[96, 112, 128], train_max=192, crop_scales=[96, 112, 128],
                 crop_range=[80, 112], lr=1e-3, layer_decay=0.75, batch_size_per_gpu=4, resume=False, num_workers=0,
                 progress=False)  # fmt: skip
# Segmentation: crops the size of the scenes, img_scale (4c, c) with ratios 0.75-1.5 (ADE's 0.5-2 took the
# objects to 10-100 px, beyond the scales the models were pre-trained at), sliding windows of c with stride 2c/3,
# batch 8, warm-up over the first 10 % of the steps; lrs raised for the short schedule (UperNet 2e-4 with layer
# decay 0.65; the linear head 1e-2: at 1e-3 its 120 steps stayed near chance on every backbone) and UperNet 64
# channels wide instead of D (3x fewer FLOPs at D = 192). bench/README.md, "The demo's dense rows".
SEG_LR = {"upernet": (2e-4, 0.65), "linear": (1e-2, 1.0)}
SEG_RATIOS = [0.75, 1.5]


def dense(ctx: Context, model: str) -> None:
    """Detection, then segmentation with UperNet (fine-tuned backbone) and a linear head (frozen backbone);
    each trains for its budget's steps, cut by `time_limit_min` on a slower machine, then evaluates."""
    path = ctx.models[model]
    backbone, info = load_backbone(path)
    device = str(resolve_device(ctx.device))  # auto: CUDA when available, as every other stage
    cfg = detection_config(ctx, str(path), device, str(ctx.folder("dense", model, "detection")))
    evaluate(detection_run, backbone, cfg, "detection", info)
    for head in ("upernet", "linear"):
        out = str(ctx.folder("dense", model, f"segmentation_{head}"))
        cfg = segmentation_config(ctx, head, mask_grid(backbone), device, out)
        evaluate(segmentation_run, backbone, cfg, "segmentation", info)


def detection_config(ctx: Context, path: str, device: str, out: str) -> DetectionConfig:
    """Mask R-CNN on the world's COCO set (COCO 2017's layout, 128 px scenes) for `detection_epochs` epochs,
    stopped after `detection_s` seconds of training where that comes first."""
    coco = ctx.world / "coco"
    images = list((coco / "train2017").glob("*"))
    if not images or not (coco / "annotations" / "instances_train2017.json").is_file():
        raise DatasetError(f"no demo-world COCO set under {coco} (expected annotations/instances_train2017.json)")
    epochs = int(ctx.budgets["detection_epochs"])
    steps = math.ceil(len(images) / DETECTION["batch_size_per_gpu"])
    lr_steps = sorted({round(epochs * 8 / 12), round(epochs * 11 / 12)} - {0, epochs})
    return DetectionConfig(pretrained=path, data_path=str(coco), model=DETECTOR, epochs=epochs, lr_steps=lr_steps,
                           warmup_iters=min(30, steps // 2), time_limit_min=ctx.budgets["detection_s"] / 60,
                           device=device, threads=ctx.threads, output_dir=out, **DETECTION)  # fmt: skip


def segmentation_config(ctx: Context, head: str, patch: int, device: str, out: str) -> SegConfig:
    """`head` on the world's ADE-style set for `upernet_iters` / `seg_linear_iters` steps, stopped after
    `upernet_s` / `seg_linear_s` seconds of training where that comes first; `patch` = pixels per output token
    (the ViT patch, 32 for Swin)."""
    ade = ctx.world / "ade"
    with Image.open(ade_pairs(ade, "train")[0][0]) as im:
        short = min(im.size)
    crop = max(patch, min(short, 512) // patch * patch)
    lr, layer_decay = SEG_LR[head]
    budget = {"upernet": "upernet", "linear": "seg_linear"}[head]
    iters = int(ctx.budgets[f"{budget}_iters"])
    return SegConfig(data_path=str(ade), head=head, img_scale=[4 * crop, crop], ratio_range=list(SEG_RATIOS),
                     crop_size=crop, test_stride=max(patch, round(crop * 2 / 3)), batch_size_per_gpu=8, channels=64,
                     aux_channels=64, lr=lr, layer_decay=layer_decay, drop_path_rate=0.0, iters=iters,
                     warmup_iters=max(1, iters // 10), time_limit_min=ctx.budgets[f"{budget}_s"] / 60, num_workers=0,
                     save_every=10**9, resume=False, progress=False, device=device, threads=ctx.threads,
                     output_dir=out)  # fmt: skip


def analysis(ctx: Context, model: str) -> None:
    """Attention maps and their Jaccard with the object masks, two-view correspondence, patterns, PCA."""
    path = ctx.models[model]
    backbone, info = load_backbone(path)
    val = ctx.classification / "val"
    common = dict(pretrained=str(path), num_workers=0, progress=False, device=ctx.device, threads=ctx.threads)
    masks = ctx.classification / "masks" / "val"

    def where(tool: str) -> str:
        return str(ctx.folder("analysis", model, tool))

    # square at the images' own size: the same maps as resize=none, in batches instead of one image at a time
    cfg = AttentionConfig(**common, data_path=str(val), masks=str(masks), resize="square", image_size=ctx.image_size,
                          batch_size_per_gpu=64, max_figures=4,
                          output_dir=where("attention"))  # fmt: skip
    evaluate(run_attention, backbone, cfg, "analysis.attention", info)
    cfg = CorrespondenceConfig(**common, mode="instance", data_path=str(val), image_size=ctx.image_size,
                               max_images=ctx.budgets["correspondence_images"], batch_size_per_gpu=32, max_figures=4,
                               output_dir=where("correspondence"))  # fmt: skip
    evaluate(run_correspondence, backbone, cfg, "analysis.correspondence", info)
    head, _ = load_head(path)
    cfg = PatternsConfig(**common, data_path=str(val), resize_size=ctx.image_size, image_size=ctx.image_size,
                         num_prototypes=8, topk=16, output_dir=where("patterns"))  # fmt: skip
    evaluate(functools.partial(run_patterns, head=head), backbone, cfg, "analysis.patterns", info)
    firsts = [str(p) for c in PCA_CLASSES for p in sorted((val / c).glob("*.png"))[:1]]
    cfg = PCAConfig(**common, images=firsts, resize="none", foreground=True,
                    output_dir=where("pca"))  # fmt: skip
    evaluate(run_pca, backbone, cfg, "analysis.pca", info)
    if model == "reference":  # the interactive page of the shipped checkpoint, linked from the report
        cfg = ExploreConfig(**common, data_path=str(val), max_images=24, image_size=ctx.image_size,
                            output_dir=where("explore"))  # fmt: skip
        evaluate(run_explore, backbone, cfg, "analysis.explore", info)
