"""Segmentation: shapes, label rules, pipeline, slide/multi-scale inference, metrics, training, the CLI.

Tiny ViT (depth 2, 64 px, patch 16) and generated ADE-layout folders; CPU only.
"""

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from timm.layers import resample_abs_pos_embed

import plumbing
import pretrain
from evalkit import COMMON_KEYS
from plumbing import autocast
from pretrain import build_backbone, export_backbone
from segmentation import (
    InferenceSpec,
    SegConfig,
    TrainPipeline,
    build_segmentor,
    confusion_matrix,
    predict,
    reduce_labels,
    run,
    seg_loss,
    segmentation_metrics,
    slide_logits,
    whole_logits,
)
from segmentation.__main__ import main
from segmentation.config import resolve_hparams
from segmentation.data import ADETrainSet, StepBatchSampler, ade_pairs, crop_box, read_label
from segmentation.engine import build_optimizer, load_segmentor, poly_lr, train_step
from segmentation.inference import scaled_size
from segmentation.model import resize_pos_embed
from tests.helpers.swin import tiny_swin

COLOURS = {0: (128, 128, 128), 1: (210, 40, 40), 2: (40, 200, 40), 3: (40, 40, 220)}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vit():
    torch.manual_seed(0)
    return build_backbone("vit_tiny", depth=2, img_size=64, patch_size=16).eval()


def scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw ADE labels: top rows 0 ("other"), left band 1, right band 2, a square 3; colour by label."""
    label = np.full((h, w), 1, np.uint8)
    label[:, int(rng.integers(w // 3, 2 * w // 3)) :] = 2
    y, x = int(rng.integers(4, h - 20)), int(rng.integers(0, w - 20))
    label[y : y + 18, x : x + 18] = 3
    label[:3] = 0
    img = np.stack([np.array(COLOURS[int(v)]) for v in label.flatten()]).reshape(h, w, 3)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    return img, label


def write_ade(root: Path, n_train: int = 6, n_val: int = 3, size=(64, 80), val_size=(60, 70)) -> Path:
    rng = np.random.default_rng(0)
    for split, n, (h, w) in (("training", n_train, size), ("validation", n_val, val_size)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            img, label = scene(rng, h, w)
            Image.fromarray(img).save(root / "images" / split / f"ADE_{split}_{i:08d}.jpg", quality=95)
            Image.fromarray(label, mode="L").save(root / "annotations" / split / f"ADE_{split}_{i:08d}.png")
    return root


def tiny_cfg(root: Path, out: Path, **kw) -> SegConfig:
    base = dict(data_path=str(root), output_dir=str(out), num_classes=3, img_scale=[128, 64], crop_size=64,
                test_stride=32, batch_size_per_gpu=4, iters=4, warmup_iters=1, lr=1e-3, layer_decay=0.9,
                drop_path_rate=0.1, num_workers=0, progress=False, n_figure=2)  # fmt: skip
    return SegConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- structure


def test_shapes_upernet_and_linear():
    x = torch.randn(2, 3, 64, 96)
    up = build_segmentor(tiny_vit(), "upernet", num_classes=5).train()
    feats = up.backbone(x)
    assert [tuple(f.shape) for f in feats] == [(2, 192, 16, 24), (2, 192, 8, 12), (2, 192, 4, 6), (2, 192, 2, 3)]
    logits, aux = up(x)
    assert logits.shape == (2, 5, 16, 24) and aux.shape == (2, 5, 4, 6)
    assert up.encode_decode(x).shape == (2, 5, 64, 96)
    lin = build_segmentor(tiny_vit(), "linear", num_classes=5).train()
    assert [tuple(f.shape) for f in lin.backbone(x)] == [(2, 192, 4, 6)] * 4
    logits, aux = lin(x)
    assert logits.shape == (2, 5, 4, 6) and aux is None
    assert not lin.backbone.training and not any(p.requires_grad for p in lin.backbone.parameters())
    assert [p.shape for p in lin.parameters() if p.requires_grad] == [(5, 4 * 192, 1, 1), (5,)]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lin.decode_head.modules())
    vit = tiny_vit()
    resize_pos_embed(vit, 8)  # 64 px -> 128 px crops: a 4x4 table becomes 8x8 at load
    assert vit.pos_embed.shape == (1, 65, 192) and vit.img_size == 128
    assert build_segmentor(vit, "linear", num_classes=5)(torch.randn(1, 3, 128, 128))[0].shape == (1, 5, 8, 8)
    losses = seg_loss(*up(x), torch.randint(0, 5, (2, 64, 96)), aux_weight=0.4)
    assert set(losses) == {"decode", "aux", "loss"} and torch.isclose(losses["loss"], losses["decode"] + losses["aux"])


def test_layer_decay_groups_and_schedule():
    model = build_segmentor(tiny_vit(), "upernet", num_classes=3)
    opt = build_optimizer(model, lr=1e-3, layer_decay=0.5, weight_decay=0.05, betas=(0.9, 0.999))
    scales = {g["layer_id"]: g["lr_scale"] for g in opt.param_groups}
    assert scales == {0: 0.125, 1: 0.25, 2: 0.5, 3: 1.0}  # depth 2: embeddings, blocks, heads
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == n_trainable
    assert not model.backbone.vit.masked_embed.requires_grad  # unused by segmentation
    assert poly_lr(0, 1.0, 100, 10, 1e-6) == pytest.approx(1e-6)
    assert poly_lr(5, 1.0, 100, 10, 1e-6) == pytest.approx(0.95 * (1 - 0.5 * (1 - 1e-6)))
    assert poly_lr(10, 1.0, 100, 10, 1e-6) == pytest.approx(0.9) and poly_lr(99, 1.0, 100, 10, 1e-6) == pytest.approx(
        0.01
    )
    vit_b = build_backbone("vit_base", patch_size=16)
    assert resolve_hparams(SegConfig(head="upernet"), vit_b) == {"lr": 8e-5, "layer_decay": 0.65, "drop_path_rate": 0.1}
    assert resolve_hparams(SegConfig(head="linear"), vit_b)["lr"] == 8e-4


# ------------------------------------------------------------------------------ labels, data
def test_reduce_zero_label_and_ignore(tmp_path):
    assert reduce_labels(np.array([0, 1, 2, 150, 255])).tolist() == [255, 0, 1, 149, 255]
    path = tmp_path / "l.png"
    Image.fromarray(np.array([[0, 1], [3, 255]], np.uint8), mode="L").save(path)
    assert read_label(path, 3, True).tolist() == [[255, 0], [2, 255]]
    assert read_label(path, 4, False).tolist() == [[0, 1], [3, 255]]
    with pytest.raises(plumbing.DatasetError, match="label value 3"):
        read_label(path, 3, False)
    # ignored pixels do not count: all-ignored labels give zero loss, not NaN
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    assert seg_loss(logits, None, torch.full((1, 8, 8), 255), 0.4)["loss"].item() == 0.0
    conf = confusion_matrix(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 255, 2, 1]), 3)
    assert conf.sum() == 3 and conf[1, 0] == 1


def test_train_pipeline_shapes_crop_and_padding():
    rng = np.random.default_rng(0)
    img, label = torch.rand(3, 40, 60) * 255, torch.randint(0, 3, (40, 60))
    pipe = TrainPipeline(img_scale=(64, 32), ratio_range=(0.5, 2.0), crop_size=48)
    for _ in range(5):
        x, y = pipe(img, label, rng)
        assert x.shape == (3, 48, 48) and y.shape == (48, 48) and y.dtype == torch.int64
    small = TrainPipeline(img_scale=(20, 10), ratio_range=(1.0, 1.0), crop_size=48, photometric=False, flip_prob=0)
    x, y = small(img, label, rng)  # 40x60 -> 10x15, padded to 48
    assert (y[10:] == 255).all() and (y[:, 15:] == 255).all() and (x[:, 10:] == 0).all() and (y[:10, :15] < 3).all()
    lab = torch.zeros(64, 64, dtype=torch.long)
    lab[:, 48:] = 1  # 32-px crops mixing both classes exist (x0 > 16) and never exceed 0.75 of one class
    fractions = []
    for seed in range(5):
        y0, x0 = crop_box(lab, 32, 0.75, np.random.default_rng(seed))
        fractions.append((lab[y0 : y0 + 32, x0 : x0 + 32] == 1).float().mean().item())
    assert all(0 < f < 0.75 for f in fractions)
    unchecked = [crop_box(lab, 32, 1.0, np.random.default_rng(seed))[1] for seed in range(5)]
    assert any(x0 <= 16 for x0 in unchecked)  # without the rule, single-class crops occur


def test_sampler_is_a_function_of_the_step(tmp_path):
    full = [b for b in StepBatchSampler(7, 3, 0, 1, seed=0, start=0, total=6)]
    tail = [b for b in StepBatchSampler(7, 3, 0, 1, seed=0, start=4, total=6)]
    assert tail == full[4:]
    assert [p for b in full for _, p in b] == list(range(18))  # positions: consecutive, each once
    idx = [i for b in full for i, _ in b]
    assert sorted(idx[:7]) == sorted(idx[7:14]) == list(range(7)) and idx[:7] != idx[7:14]  # reshuffled passes
    ranks = [list(StepBatchSampler(8, 2, r, 2, seed=0, start=0, total=1))[0] for r in (0, 1)]
    assert [p for _, p in ranks[0] + ranks[1]] == [0, 1, 2, 3]
    ds = ADETrainSet(
        ade_pairs(write_ade(tmp_path / "ade"), "train"), 3, True, TrainPipeline((128, 64), crop_size=64), 0
    )
    a, b = ds[(1, 5)], ds[(1, 5)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---------------------------------------------------------------------------- inference
def test_slide_equals_whole_when_the_window_covers_the_image():
    model = build_segmentor(tiny_vit(), "upernet", num_classes=4).eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        whole = whole_logits(model.encode_decode, x, 16)
        slide = slide_logits(model.encode_decode, x, crop=96, stride=64, multiple=16)
    assert whole.shape == slide.shape == (1, 4, 64, 80)
    assert torch.equal(whole, slide)


def test_slide_overlaps_are_averaged_exactly():
    conv = torch.nn.Conv2d(3, 5, 1)  # pointwise: every window agrees with the whole image
    x = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        out = slide_logits(conv, x, crop=32, stride=21, multiple=16, window_batch=3)
        assert torch.allclose(out, conv(x), atol=1e-5)


def test_predict_single_and_multi_scale_shapes():
    model = build_segmentor(tiny_vit(), "linear", num_classes=3).eval()
    img = torch.rand(3, 50, 70) * 255
    single = InferenceSpec(scale=(128, 64), crop=64, stride=32)
    ms = replace(single, ratios=(0.5, 1.0, 1.5), flip=True, setr_resize=True)
    assert scaled_size(50, 70, single, 1.0) == (64, 90)
    assert scaled_size(50, 70, ms, 0.5) == (64, 90) and scaled_size(50, 70, ms, 1.5) == (96, 134)
    for spec in (single, ms, replace(single, mode="whole")):
        pred = predict(model.encode_decode, img, spec, 16)
        assert pred.shape == (50, 70) and pred.dtype == torch.int64 and 0 <= pred.min() and pred.max() < 3


# ------------------------------------------------------------------------------- metrics
def test_metrics_on_hand_made_confusion_matrices():
    m = segmentation_metrics(torch.tensor([[3, 1], [2, 4]]))
    assert m["per_class_IoU"] == pytest.approx([50.0, 400 / 7])
    assert m["mIoU"] == pytest.approx((0.5 + 4 / 7) / 2 * 100)
    assert m["mAcc"] == pytest.approx((3 / 4 + 4 / 6) / 2 * 100) and m["aAcc"] == pytest.approx(70.0)
    # class 2 absent everywhere: left out of the means; class 1 predicted but absent: IoU 0, Acc undefined
    m = segmentation_metrics(torch.tensor([[5, 5, 0], [0, 0, 0], [0, 0, 0]]))
    assert m["per_class_IoU"] == [50.0, 0.0, None] and m["per_class_Acc"] == [50.0, None, None]
    assert m["mIoU"] == pytest.approx(25.0) and m["mAcc"] == pytest.approx(50.0) and m["aAcc"] == pytest.approx(50.0)
    perfect = confusion_matrix(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [2, 2]]), 3)
    assert segmentation_metrics(perfect)["mIoU"] == pytest.approx(100.0)
    assert math.isnan(segmentation_metrics(torch.zeros(2, 2, dtype=torch.long))["mIoU"])


# ------------------------------------------------------------------------------ training
def test_overfit_lifts_miou_above_an_untrained_head(tmp_path):
    root = write_ade(tmp_path / "ade", n_train=6, n_val=6, size=(64, 64), val_size=(64, 64))
    common = dict(head="upernet", iters=60, warmup_iters=5, lr=5e-4, channels=64, aux_channels=32)
    untrained = run(tiny_vit(), tiny_cfg(root, tmp_path / "u", **{**common, "iters": 1, "lr": 1e-12}))
    trained = run(tiny_vit(), tiny_cfg(root, tmp_path / "t", **common))
    print(f"untrained mIoU {untrained['mIoU']:.1f}, trained {trained['mIoU']:.1f}")
    assert trained["mIoU"] > untrained["mIoU"] + 40 and trained["mIoU"] > 60
    assert Path(trained["figure"]).is_file()


def test_resume_is_exact(tmp_path):
    root = write_ade(tmp_path / "ade")
    cfg = tiny_cfg(root, tmp_path / "a", iters=4, val_limit=1, n_figure=0)
    run(tiny_vit(), cfg)
    stopped = run(tiny_vit(), replace(cfg, output_dir=str(tmp_path / "b"), stop_after=2))
    assert stopped["status"] == "stopped" and stopped["steps_done"] == 2
    resumed = run(tiny_vit(), replace(cfg, output_dir=str(tmp_path / "b")))
    a = load_segmentor(tmp_path / "a" / "seg_checkpoint.pth")[0].state_dict()
    b = load_segmentor(tmp_path / "b" / "seg_checkpoint.pth")[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["status"] == "done" and resumed["train_seconds"] > 0
    with pytest.raises(plumbing.CheckpointError, match="different run"):
        run(tiny_vit(), replace(cfg, output_dir=str(tmp_path / "b"), lr=2e-3))


def test_swin_upernet_linear_and_a_short_run(tmp_path):
    """Swin: normed stage outputs (no adaptor) into UperNet / the linear head, Swin layer ids, train + eval."""
    x = torch.randn(2, 3, 64, 96)
    up = build_segmentor(tiny_swin(window_size=4), "upernet", num_classes=5, channels=16, aux_channels=16).train()
    feats = up.backbone(x)
    assert [tuple(f.shape) for f in feats] == [(2, 24, 16, 24), (2, 48, 8, 12), (2, 96, 4, 6), (2, 192, 2, 3)]
    logits, aux = up(x)
    assert logits.shape == (2, 5, 16, 24) and aux.shape == (2, 5, 4, 6) and not hasattr(up.backbone, "adaptor")
    frozen = {n for n, p in up.named_parameters() if not p.requires_grad}
    assert frozen == {"backbone.swin.masked_embed", "backbone.swin.norm.weight", "backbone.swin.norm.bias"}
    opt = build_optimizer(up, lr=1e-3, layer_decay=0.5, weight_decay=0.05, betas=(0.9, 0.999))
    scales = {g["layer_id"]: g["lr_scale"] for g in opt.param_groups}
    assert scales == {i: pytest.approx(0.5 ** (9 - i)) for i in range(10)}  # 8 blocks: embeddings 0 ... heads 9
    lin = build_segmentor(tiny_swin(window_size=4), "linear", num_classes=5)
    assert lin(x)[0].shape == (2, 5, 16, 24)  # the four stages resized to stride 4 and concatenated
    assert [p.shape for p in lin.parameters() if p.requires_grad] == [(5, 24 + 48 + 96 + 192, 1, 1), (5,)]
    with pytest.raises(plumbing.ConfigError, match="a Swin's outputs are its 4 stages"):
        build_segmentor(tiny_swin(), "upernet", num_classes=5, out_indices=[0, 1, 2, 3])
    with pytest.raises(plumbing.ConfigError, match="no reference lr for head=upernet and a swin_tiny backbone"):
        resolve_hparams(SegConfig(), tiny_swin())

    root = write_ade(tmp_path / "ade", n_train=4, n_val=1)
    cfg = tiny_cfg(root, tmp_path / "run", iters=2, channels=16, aux_channels=16, n_figure=0)  # resize_pos_embed on
    res = run(tiny_swin(window_size=4), cfg)
    assert res["status"] == "done" and math.isfinite(res["final_loss"]) and 0 <= res["mIoU"] <= 100
    model, meta = load_segmentor(tmp_path / "run" / "seg_checkpoint.pth")
    assert isinstance(model.backbone.body, pretrain.SwinBackbone) and meta["identity"]["size"] == "swin_tiny"


def test_cli_end_to_end_and_errors(tmp_path, capsys):
    root = write_ade(tmp_path / "ade", n_train=4, n_val=2)
    export_backbone(tiny_vit(), tmp_path / "vit.pth")
    out = tmp_path / "cli"
    args = [f"pretrained={tmp_path / 'vit.pth'}", f"data_path={root}", f"output_dir={out}", "head=linear",
            "num_classes=3", "img_scale=[128,64]", "crop_size=64", "test_stride=32", "batch_size_per_gpu=2", "iters=2",
            "lr=1e-3", "num_workers=0", "progress=false", "n_figure=1"]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"mIoU", "mAcc", "aAcc", "per_class_IoU"} <= results.keys() and (out / "predictions.png").is_file()
    assert (out / "config.yaml").is_file()
    assert results["batch_size_total"] == 2 and results["precision"] == "fp32"  # per process x 1 process
    acc = EventAccumulator(str(out / "tensorboard")).Reload()  # TensorBoard's own reader: tag -> logged steps
    tags = {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert tags == {"train/loss": [0, 1], "train/decode": [0, 1], "train/lr": [0, 1], "val/mIoU": [2],
                    "val/mAcc": [2], "val/aAcc": [2]}  # fmt: skip
    for bad in (args + ["head=fcn"], args + ["data_path=/nonexistent"], args + ["colour=1"], args[1:]):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("segmentation: error:") and "\n" not in err


def test_crop_must_fit_the_token_grid(tmp_path):
    root = write_ade(tmp_path / "ade")
    with pytest.raises(plumbing.ConfigError, match=r"multiples of 32 px for swin_tiny"):
        run(tiny_swin(), tiny_cfg(root, tmp_path / "s", crop_size=48))
    with pytest.raises(plumbing.ConfigError, match=r"multiples of 16 px for vit_tiny"):
        run(tiny_vit(), tiny_cfg(root, tmp_path / "v", crop_size=64, test_crop=40))


# ----------------------------------------------------------------- position-embedding resize
def size_based_bicubic(pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The hand-written resize segmentation used before timm's: [CLS] kept, the s x s table resized to (h, w)."""
    side = int(round((pos.shape[1] - 1) ** 0.5))
    table = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, s, s)
    table = F.interpolate(table, size=(h, w), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], table.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)


def test_pos_embed_resize_is_timms_and_equals_the_hand_written_rule():
    for side, dim, grids in ((4, 192, [(8, 8), (3, 3), (5, 7), (6, 4)]), (14, 384, [(32, 32), (32, 20), (10, 14)])):
        pos = torch.randn(1, 1 + side * side, dim)
        for h, w in grids:  # square and non-square targets, up and down
            out = resample_abs_pos_embed(pos, [h, w], num_prefix_tokens=1, antialias=False)
            assert out.shape == (1, 1 + h * w, dim) and torch.equal(out, size_based_bicubic(pos, h, w))
    # timm's default (antialias=True) is another rule when shrinking: the flag is what makes them equal
    pos = torch.randn(1, 17, 192)
    assert not torch.allclose(resample_abs_pos_embed(pos, [3, 3], num_prefix_tokens=1), size_based_bicubic(pos, 3, 3))
    vit = tiny_vit()
    before = vit.pos_embed.detach().clone()
    resize_pos_embed(vit, 8)  # what segmentation does at load: the crop grid
    assert torch.equal(vit.pos_embed.detach(), size_based_bicubic(before, 8, 8))
    assert torch.equal(vit.pos_embed[:, 0].detach(), before[:, 0])  # [CLS] entry unchanged


# --------------------------------------------------------------------- the common interface
def test_help_lists_the_common_keys_and_imports_no_torch_for_the_config():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "segmentation", "--help"], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0
    lines = {line.split(" = ")[0].strip(): line for line in out.stdout.splitlines() if " = " in line}
    assert set(COMMON_KEYS) <= set(lines)
    assert "'runs/segmentation'" in lines["output_dir"] and "= 2  # crops per process" in lines["batch_size_per_gpu"]
    assert all("  # " in lines[k] for k in SegConfig.__annotations__)  # the fields SegConfig declares: a meaning each
    code = "import sys, segmentation, segmentation.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root).stdout == "False\n"


def cli_args(tmp_path: Path, out: Path) -> list[str]:
    root = write_ade(tmp_path / "ade", n_train=2, n_val=1)
    export_backbone(tiny_vit(), tmp_path / "vit.pth")
    return [f"pretrained={tmp_path / 'vit.pth'}", f"data_path={root}", f"output_dir={out}", "head=linear",
            "num_classes=3", "img_scale=[128,64]", "crop_size=64", "test_stride=32", "batch_size_per_gpu=2",
            "iters=1", "lr=1e-3", "num_workers=0", "progress=false", "n_figure=0"]  # fmt: skip


def test_bad_values_exit_2_with_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    args = cli_args(tmp_path, out)
    (tmp_path / "file").write_text("x")
    for bad, says in (("batch_size_per_gpu=0", "batch_size_per_gpu must be >= 1"),
                      (f"output_dir={tmp_path / 'file'}", "is an existing file"),
                      ("layer_decay=1.5", "layer_decay must be in (0, 1]"),
                      ("layer_decay=0.9", "the linear head trains no backbone layers"),
                      ("drop_path_rate=1.0", "drop_path_rate must be in [0, 1)"),
                      (f"data_path={tmp_path}", "images/training/ not found")):  # fmt: skip
        assert main(args + [bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("segmentation: error:") and says in err and "\n" not in err
        assert not out.exists()  # nothing written: no config.yaml, no checkpoint


def test_bf16_on_cpu_is_accepted_and_runs_under_autocast(tmp_path):
    assert main(cli_args(tmp_path, tmp_path / "bf16") + ["precision=bf16", "device=cpu"]) == 0
    results = json.loads((tmp_path / "bf16" / "results.json").read_text())
    assert results["precision"] == "bf16" and results["status"] == "done" and math.isfinite(results["final_loss"])
    model = build_segmentor(tiny_vit(), "upernet", num_classes=3, channels=16, aux_channels=16)
    opt, dtypes = build_optimizer(model, lr=1e-3, layer_decay=0.9, weight_decay=0.05, betas=(0.9, 0.999)), []
    model.decode_head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))  # the decode head's logits
    batch = (torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64)))
    losses = train_step(model.train(), batch, opt, 0.4, autocast("cpu", "bf16"))
    assert dtypes == [torch.bfloat16] and math.isfinite(losses["loss"])
