"""Detection: ViT -> FPN shapes, both detectors' training step, layer decay, a short overfit that must
beat the untrained model, COCO json round trip, exact resume, TensorBoard scalars, the CLIs (help, data_path
in COCO 2017's layout, one-line user errors).

Generated data: 64 px noise images with red rectangles (category 1) and green ellipses (category 2),
whose masks and boxes are known exactly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from PIL import Image

import plumbing
from detection import (
    CocoInstances,
    DetectionConfig,
    DetectorSpec,
    SwinFPN,
    ViTFPN,
    build_detector,
    build_from_config,
    coco_evaluate,
    evaluate,
    load_detector,
    param_groups,
    run,
    to_coco_results,
    train_transform,
    write_coco_results,
)
from detection import __main__ as det_main
from detection import eval as det_eval
from evalkit import LINEAR_HEAD_FORMAT
from pretrain import SwinBackbone, atomic_save, build_backbone, export_backbone, load_backbone
from tests.helpers.swin import tiny_swin

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
TINY = DetectorSpec(
    fpn_channels=32,
    conv_channels=32,
    fc_dim=64,
    rpn_pre_nms_train=200,
    rpn_post_nms_train=100,
    rpn_pre_nms_test=100,
    rpn_post_nms_test=50,
    rois_per_image=64,
    test_short=SIZE,
    test_max=SIZE,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def make_coco(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """`n` images with 1-2 non-overlapping shapes each; COCO json with RLE masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:SIZE, :SIZE] + 0.5
    images, anns = [], []
    for i in range(1, n + 1):
        img = rng.integers(0, 80, (SIZE, SIZE, 3)).astype(np.uint8)
        taken = np.zeros((SIZE, SIZE), bool)
        for _ in range(2):
            cat = int(rng.integers(1, 3))
            w, h = rng.integers(SIZE // 4, SIZE // 2, 2)
            x, y = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
            if cat == 1:
                m = (xx > x) & (xx < x + w) & (yy > y) & (yy < y + h)
            else:
                m = ((xx - x - w / 2) / (w / 2)) ** 2 + ((yy - y - h / 2) / (h / 2)) ** 2 <= 1
            if (m & taken).any():
                continue
            taken |= m
            img[m] = (220, 60, 60) if cat == 1 else (60, 220, 60)
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            box = [float(v) for v in mask_utils.toBbox(rle)]
            rle["counts"] = rle["counts"].decode("ascii")
            anns.append(
                {"id": len(anns) + 1, "image_id": i, "category_id": cat, "iscrowd": 0, "area": float(m.sum()),
                 "bbox": box, "segmentation": rle}
            )  # fmt: skip
        Image.fromarray(img).save(root / "images" / f"{i:04d}.png")
        images.append({"id": i, "file_name": f"{i:04d}.png", "width": SIZE, "height": SIZE})
    cats = [
        {"id": 1, "name": "rectangle", "supercategory": "shape"},
        {"id": 2, "name": "ellipse", "supercategory": "shape"},
    ]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root / "images", path


def make_world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("det")
    images, ann = make_coco(root / "coco", 3)
    torch.manual_seed(0)
    backbone = root / "backbone.pth"
    export_backbone(build_backbone("vit_tiny", depth=2, img_size=SIZE, patch_size=16), backbone)
    return {"root": root, "images": images, "ann": ann, "backbone": backbone}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return make_world(tmp_path_factory)


def config(world: dict[str, Path], out: Path, **kw) -> DetectionConfig:
    """Train = val = the 3 images, no scale jitter (flip only), one image per iteration."""
    base = DetectionConfig(
        train_images=str(world["images"]), train_annotations=str(world["ann"]),
        val_images=str(world["images"]), val_annotations=str(world["ann"]),
        pretrained=str(world["backbone"]), drop_path_rate=0.0, model=dataclasses.replace(TINY, detector="mask_rcnn"),
        train_scales=[SIZE], train_max=SIZE, crop_scales=[SIZE], crop_range=[SIZE, SIZE],
        epochs=14, lr_steps=[11], warmup_iters=5, lr=1e-3, layer_decay=1.0, batch_size_per_gpu=1,
        output_dir=str(out), num_workers=0, device="cpu", progress=False,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)


def run_file(cfg: DetectionConfig) -> dict:
    """`run` on the backbone file `cfg.pretrained`, as the CLI calls it."""
    backbone, _ = load_backbone(cfg.pretrained, cfg.checkpoint_key)
    return run(backbone, cfg)


def tiny_vit(patch: int = 16) -> torch.nn.Module:
    return build_backbone("vit_tiny", depth=2, img_size=SIZE, patch_size=patch)


# --------------------------------------------------------------------------------- backbone
@pytest.mark.parametrize("patch", [16, 8])
def test_vit_fpn_strides_and_shapes(patch):
    fpn = ViTFPN(tiny_vit(patch), fpn_channels=32)
    x = torch.randn(2, 3, 64, 128)
    out = fpn(x)
    assert list(out) == ["0", "1", "2", "3", "pool"]
    for (name, m), stride in zip(out.items(), (4, 8, 16, 32, 64), strict=True):
        assert m.shape == (2, 32, 64 // stride, 128 // stride), name
    assert fpn.out_channels == 32
    # unused in detection, so frozen (DDP would wait for their gradients): mask token and final norm
    frozen = {n for n, p in fpn.named_parameters() if not p.requires_grad}
    assert frozen == {"vit.masked_embed", "vit.norm.weight", "vit.norm.bias"}


def test_activation_checkpointing_matches():
    torch.manual_seed(0)
    plain = ViTFPN(tiny_vit(), fpn_channels=16).train()
    ckpt = ViTFPN(tiny_vit(), fpn_channels=16, use_checkpoint=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        sum(m.square().sum() for m in model(x).values()).backward()
        grads.append(model.vit.blocks[0].attn.qkv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


# -------------------------------------------------------------------------------- detectors
def targets(world) -> tuple[list[torch.Tensor], list[dict]]:
    ds = CocoInstances(world["images"], world["ann"])
    images, tgts = zip(*(ds[i] for i in range(2)), strict=True)
    return list(images), [{k: v for k, v in t.items() if k != "image_id"} for t in tgts]


@pytest.mark.parametrize("detector", ["mask_rcnn", "cascade_mask_rcnn"])
def test_detector_train_step_and_inference(world, detector):
    torch.manual_seed(0)
    model = build_detector(tiny_vit(), dataclasses.replace(TINY, detector=detector), num_classes=2).train()
    images, tgts = targets(world)
    losses = model(images, tgts)
    expected = 3 * 3 + 2 if detector == "cascade_mask_rcnn" else 5  # cls, giou, mask per stage + RPN
    assert len(losses) == expected and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    vit = model.backbone.vit
    for p in (vit.patch_embed.proj.weight, vit.pos_embed, vit.blocks[0].attn.qkv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([images[0], torch.rand(3, 48, 80)])  # any size: resized, padded, mapped back
    assert out[1]["masks"].shape[1:] == (1, 48, 80) and out[1]["boxes"].shape[1] == 4
    assert (out[1]["boxes"][:, 2] <= 80).all() and (out[1]["labels"] >= 1).all()


def test_layer_decay_table():
    model = build_detector(tiny_vit(), dataclasses.replace(TINY, detector="cascade_mask_rcnn"), num_classes=2)
    groups = param_groups(model, layer_decay=0.8, weight_decay=0.05)
    where = {n: g for g in groups for n in g["names"]}
    depth = 2

    def check(name, layer_id, decayed):
        g = where[name]
        assert g["layer_id"] == layer_id and g["lr_scale"] == pytest.approx(0.8 ** (depth + 1 - layer_id)), name
        assert g["weight_decay"] == (0.05 if decayed else 0.0), name

    check("backbone.vit.pos_embed", 0, True)  # reference quirk: embeddings are decayed
    check("backbone.vit.cls_token", 0, True)
    check("backbone.vit.patch_embed.proj.weight", 0, True)
    check("backbone.vit.patch_embed.proj.bias", 0, False)
    check("backbone.vit.blocks.0.attn.qkv.weight", 1, True)
    check("backbone.vit.blocks.1.norm1.weight", 2, False)
    check("backbone.adaptor.levels.0.0.weight", 3, True)
    check("backbone.fpn.layer_blocks.0.0.weight", 3, True)
    check("rpn.head.cls_logits.weight", 3, True)
    check("roi_heads.box_heads.2.0.1.weight", 3, False)  # BN of the 4conv1fc head
    check("roi_heads.box_heads.2.0.0.weight", 3, True)
    check("roi_heads.mask_predictors.1.mask_fcn_logits.bias", 3, False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(where) == trainable and "backbone.vit.masked_embed" not in where


def test_train_augmentation_keeps_instances_together(world):
    aug = train_transform([48, 56], 80, [64], [24, 40], flip_prob=0.5)
    ds = CocoInstances(world["images"], world["ann"], aug, train=True, seed=3)
    sizes = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            image, t = ds[i]
            sizes.add(tuple(image.shape[1:]))
            n = len(t["labels"])
            assert t["boxes"].shape == (n, 4) and t["masks"].shape == (n, *image.shape[1:])
            for box, mask in zip(t["boxes"], t["masks"], strict=True):
                ys, xs = torch.where(mask > 0)
                assert len(xs) > 0 and box[2] > box[0] and box[3] > box[1]
                assert xs.min() >= box[0] - 2 and xs.max() <= box[2] + 1 and ys.min() >= box[1] - 2
    assert min(min(s) for s in sizes) >= 48 and max(max(s) for s in sizes) <= 80 and len(sizes) > 1
    ds.set_epoch(1)
    (a, ta), (b, tb) = ds[0], ds[0]
    assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])  # per-sample seeds: resumable


# ------------------------------------------------------------------------------------ COCO
def test_coco_json_round_trip(world, tmp_path):
    ds = CocoInstances(world["images"], world["ann"])
    perfect = {}
    for i in range(len(ds)):
        _, t = ds[i]
        perfect[t["image_id"]] = {
            "boxes": t["boxes"], "labels": t["labels"], "scores": torch.linspace(0.9, 0.8, len(t["labels"])),
            "masks": t["masks"][:, None].float(),
        }  # fmt: skip
    results = to_coco_results(perfect, ds.cat_ids)
    paths = write_coco_results(results, tmp_path)
    metrics = coco_evaluate(ds.coco, {k: str(p) for k, p in paths.items()})
    assert metrics["bbox_AP"] == pytest.approx(100.0) and metrics["segm_AP"] == pytest.approx(100.0)
    assert metrics["bbox_APl"] is None  # no large objects in 64 px images
    assert coco_evaluate(ds.coco, {"bbox": [], "segm": []})["bbox_AP50"] == 0.0


# ----------------------------------------------------------------------- training end to end
def test_overfit_beats_untrained_and_eval_cli(world, tmp_path):
    cfg = config(world, tmp_path / "run")
    ds = CocoInstances(world["images"], world["ann"])
    torch.manual_seed(cfg.seed)  # as run() does: `untrained` is the trained model's starting point
    untrained, _ = build_from_config(load_backbone(cfg.pretrained)[0], cfg, ds)
    before = evaluate(untrained, ds, torch.device("cpu"))
    results = run_file(cfg)
    after = results["metrics"]
    assert after["bbox_AP50"] >= 50.0 and after["bbox_AP50"] >= before["bbox_AP50"] + 40.0, (before, after)
    assert after["segm_AP50"] >= 40.0, after
    assert results["train"][-1]["loss"] < 0.75 * results["train"][0]["loss"]  # R-CNN losses are not monotone
    # the stored detector evaluates to the same figures through the CLI
    out = tmp_path / "eval"
    assert det_eval.main([f"detector={tmp_path / 'run' / 'detector.pth'}", f"output_dir={out}", "num_workers=0"]) == 0
    again = json.loads((out / "results.json").read_text())["metrics"]
    assert again == pytest.approx(after)
    model, meta = load_detector(tmp_path / "run" / "checkpoint.pth")
    assert meta["epoch"] == cfg.epochs and meta["cat_names"] == ["rectangle", "ellipse"]


def test_resume_is_exact(world, tmp_path):
    short = dict(epochs=3, lr_steps=[2], warmup_iters=2, flip_prob=0.5)
    run_file(config(world, tmp_path / "a", **short))
    run_file(config(world, tmp_path / "b", **{**short, "epochs": 2}))
    run_file(config(world, tmp_path / "b", **short))  # resumes after epoch 2
    a, _ = load_detector(tmp_path / "a" / "detector.pth")
    b, meta = load_detector(tmp_path / "b" / "detector.pth")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_swin_fpn_layer_decay_and_a_short_run(world, tmp_path):
    """Swin: normed stage outputs straight into the FPN, Swin layer ids, one epoch of training + evaluation."""
    swin = tiny_swin(window_size=4)  # depths (2, 2, 2, 2): 8 blocks
    export_backbone(swin, tmp_path / "swin.pth")
    model = build_detector(swin, dataclasses.replace(TINY, detector="mask_rcnn"), num_classes=2)
    fpn = model.backbone
    assert isinstance(fpn, SwinFPN) and fpn.body is swin and not hasattr(fpn, "adaptor")
    assert [n.normalized_shape[0] for n in fpn.norms] == [24, 48, 96, 192]
    with torch.no_grad():
        out = fpn(torch.randn(2, 3, 64, 128))
    assert [tuple(m.shape) for m in out.values()] == [(2, 32, 64 // s, 128 // s) for s in (4, 8, 16, 32, 64)]
    frozen = {n for n, p in fpn.named_parameters() if not p.requires_grad}
    assert frozen == {"swin.masked_embed", "swin.norm.weight", "swin.norm.bias"}
    where = {n: g for g in param_groups(model, layer_decay=0.5, weight_decay=0.05) for n in g["names"]}
    ids = {
        "backbone.swin.patch_embed.proj.weight": 0,
        "backbone.swin.layers.0.blocks.1.attn.qkv.weight": 2,
        "backbone.swin.layers.1.downsample.reduction.weight": 2,  # patch merging: the block before it
        "backbone.swin.layers.3.blocks.1.mlp.fc1.weight": 8,
        "backbone.norms.0.weight": 9,  # the stage norms count with the neck and heads
        "backbone.fpn.layer_blocks.0.0.weight": 9,
        "rpn.head.cls_logits.weight": 9,
    }
    for name, lid in ids.items():
        assert where[name]["layer_id"] == lid and where[name]["lr_scale"] == pytest.approx(0.5 ** (9 - lid)), name
    with pytest.raises(plumbing.ConfigError, match="a Swin's outputs are its 4 stages"):
        build_detector(swin, dataclasses.replace(TINY, out_indices=[0, 1, 2, 3]), num_classes=2)

    cfg = config(world, tmp_path / "run", pretrained=str(tmp_path / "swin.pth"), epochs=1, lr_steps=[], warmup_iters=1)
    results = run_file(cfg)
    assert len(results["train"]) == 1 and np.isfinite(results["train"][0]["loss"])
    assert 0 <= results["metrics"]["bbox_AP50"] <= 100 and 0 <= results["metrics"]["segm_AP50"] <= 100
    loaded, meta = load_detector(tmp_path / "run" / "detector.pth")
    assert meta["arch"] == "swin_tiny" and isinstance(loaded.backbone.body, SwinBackbone)


def test_bad_input_exits_2(world, tmp_path, capsys):
    good = [f"pretrained={world['backbone']}", f"output_dir={tmp_path}", "device=cpu"]
    data = [f"train_images={world['images']}", f"val_images={world['images']}", f"val_annotations={world['ann']}"]
    assert det_main.main([*good, *data, f"train_annotations={tmp_path / 'absent.json'}"]) == 2
    assert det_main.main([*good, "model.detektor=1"]) == 2
    assert det_main.main([*good, *data, f"train_annotations={world['ann']}", "model.detector=yolo"]) == 2
    assert det_main.main([*good, *data, f"train_annotations={world['ann']}", "layer_decay=1.5"]) == 2
    assert det_eval.main([f"detector={world['backbone']}", f"output_dir={tmp_path}"]) == 2  # not a detector
    head = tmp_path / "head.pth"
    atomic_save({"format": LINEAR_HEAD_FORMAT, "state_dict": {"weight": torch.zeros(2, 4)}}, head)
    assert det_eval.main([f"detector={head}", f"output_dir={tmp_path}"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(lines) == 6 and "yolo" in lines[2] and "layer_decay" in lines[3]
    assert "did you mean model.detector?" in lines[1]  # the nested spec's closest key, not a top-level one
    assert "is a backbone file" in lines[4] and f"pretrained={world['backbone']}" in lines[4]
    assert "linear-probe head" in lines[5] and "detector=PATH" in lines[5]


def test_bf16_accepted_on_cpu():
    """precision=bf16 runs the ViT and FPN under CPU autocast; the heads still get fp32 maps."""
    torch.manual_seed(0)
    fp32 = ViTFPN(tiny_vit(), fpn_channels=16).eval()
    bf16 = ViTFPN(tiny_vit(), fpn_channels=16, precision="bf16").eval()
    bf16.load_state_dict(fp32.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = fp32(x)["0"], bf16(x)["0"]
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 rounding happened
    torch.testing.assert_close(a, b, rtol=0.1, atol=0.1)
