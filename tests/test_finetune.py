"""Fine-tuning: layer-decay table, mixup targets, learning, exact resume, classifier file, errors.

A tiny ViT (192-d, 2 blocks, 32 px, patch 8) on generated 32 px images whose three classes differ
by colour; everything runs on CPU with num_workers=0.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evalkit import load_classifier, save_finetuned
from finetune import FinetuneConfig, build_model, param_groups, run
from finetune.__main__ import main
from finetune.data import make_criterion, make_mixup, train_transform, val_transform
from finetune.engine import evaluate, set_lr, train_one_epoch
from plumbing import ConfigError, parse_config
from pretrain import IBOTHead, ImageFolderDataset, SwinBackbone, build_backbone, export_backbone
from tests.helpers.eval_world import check_help, config_errors_before_work, scalar_events, torch_free_imports
from tests.helpers.swin import tiny_swin

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220)]
RECIPES = Path(__file__).resolve().parents[1] / "finetune" / "recipes"


def _write_split(root: Path, n: int, rng: np.random.Generator) -> None:
    for c, colour in enumerate(COLOURS):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(n):
            img = np.clip(np.array(colour)[None, None] + rng.normal(0, 30, (32, 32, 3)), 0, 255)
            Image.fromarray(img.astype(np.uint8)).save(d / f"{i:02d}.png")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Backbone files (with and without head) and an ImageFolder root with train/ and val/."""
    root = tmp_path_factory.mktemp("ft")
    rng = np.random.default_rng(0)
    _write_split(root / "data" / "train", 12, rng)
    _write_split(root / "data" / "val", 4, rng)
    torch.manual_seed(0)
    backbone = build_backbone("vit_tiny", depth=2, img_size=32, patch_size=8)
    head = IBOTHead(192, out_dim=16, patch_out_dim=16, hidden_dim=32, bottleneck_dim=16)
    export_backbone(backbone, root / "with_head.pth", head=head)
    export_backbone(backbone, root / "backbone.pth")
    return {"root": root, "data": root / "data", "backbone": backbone, "head": head}


def _cfg(world: dict, out: Path, **kw) -> FinetuneConfig:
    base = dict(data_path=str(world["data"]), output_dir=str(out), image_size=32, epochs=2, warmup_epochs=1,
                batch_size_per_gpu=8, lr=1e-3, num_workers=0, device="cpu", progress=False)  # fmt: skip
    return FinetuneConfig(**{**base, **kw})


def _args(cfg: FinetuneConfig, pretrained: Path) -> list[str]:
    keep = {k: v for k, v in vars(cfg).items() if k not in ("betas", "pretrained") and v is not None}
    return [f"pretrained={pretrained}"] + [f"{k}={v}" for k, v in keep.items()]


# ----------------------------------------------------------------------------- layer decay
def _reference_layer_id(name: str, depth: int) -> int:
    """Reference §3.5, written out independently: embeddings 0, blocks.i -> i + 1, the rest depth + 1."""
    if name.startswith("backbone."):
        inner = name[len("backbone.") :]
        if inner in ("cls_token", "pos_embed", "masked_embed", "mask_token") or inner.startswith("patch_embed."):
            return 0
        m = re.match(r"blocks\.(\d+)\.", inner)
        if m:
            return int(m.group(1)) + 1
    return depth + 1


@pytest.mark.parametrize("with_head", [False, True])
def test_layer_decay_table(world, with_head):
    model = build_model(world["backbone"], 3, 0.1, head=world["head"] if with_head else None)
    L, decay = model.backbone.depth, 0.75
    groups = param_groups(model, layer_decay=decay, weight_decay=0.05)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(by_param)  # no parameter twice
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(by_param)
    assert not model.backbone.masked_embed.requires_grad  # unused without masks
    for name, p in trainable:
        g = by_param[id(p)]
        assert g["lr_scale"] == pytest.approx(decay ** (L + 1 - _reference_layer_id(name, L))), name
        exempt = p.ndim == 1 or name.endswith(".bias") or name in ("backbone.pos_embed", "backbone.cls_token")
        assert g["weight_decay"] == (0.0 if exempt else 0.05), name
    scale = {n: by_param[id(p)]["lr_scale"] for n, p in trainable}
    assert scale["backbone.patch_embed.proj.weight"] == pytest.approx(decay**3)
    assert scale["backbone.blocks.1.mlp.fc1.weight"] == pytest.approx(decay)
    assert scale["backbone.norm.weight"] == scale["head.weight"] == 1.0
    if with_head:
        assert scale["proj.0.weight"] == 1.0
    optimizer = torch.optim.AdamW(groups, lr=0.0)
    set_lr(optimizer, 2e-3)
    assert all(g["lr"] == pytest.approx(2e-3 * g["lr_scale"]) for g in optimizer.param_groups)


def test_model_input_head_init_and_transforms(world):
    model = build_model(world["backbone"], 3, 0.0).eval()
    assert 0.015e-3 < model.head.weight.std() < 0.025e-3  # trunc-normal(std 0.02) x 0.001
    assert not model.head.bias.any()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model.features(x), world["backbone"].forward_features(x)[:, 0], atol=1e-6)
    semi = build_model(world["backbone"], 3, 0.0, head=world["head"]).eval()
    mlp = world["head"].mlp
    expected = mlp[1](mlp[0](world["backbone"].forward_features(x)[:, 0]))  # Linear + GELU on [CLS]
    assert torch.allclose(semi.features(x), expected, atol=1e-6)
    ops = [op for t in train_transform(FinetuneConfig()).transforms for op in getattr(t, "ops", [])]
    posterize = next(op for op in ops if op.name == "PosterizeIncreasing")
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0  # 0 bits: Pillow >= 12 raises
    assert not np.asarray(posterize(Image.new("RGB", (8, 8), (200, 100, 50)))).any()
    resize = val_transform(224).transforms[0]  # eval: Resize(int(224 / 0.875) = 256, bilinear)
    assert resize.size == 256 and resize.interpolation.value == "bilinear"


# ------------------------------------------------------------------------ mixup and learning
def test_mixup_soft_targets():
    cfg = FinetuneConfig()
    mixup = make_mixup(cfg, num_classes=5)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,))
    mixed, targets = mixup(x, y)
    assert mixed.shape == (8, 3, 32, 32) and targets.shape == (8, 5)
    assert torch.allclose(targets.sum(1), torch.ones(8))
    assert targets.min() >= 0.1 / 5 - 1e-6  # label smoothing 0.1 leaves every class at least eps / C
    loss = make_criterion(cfg)(torch.randn(8, 5), targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    off = FinetuneConfig(mixup=0.0, cutmix=0.0)
    assert make_mixup(off, 5) is None and isinstance(make_criterion(off), torch.nn.CrossEntropyLoss)
    with pytest.raises(ConfigError, match="even"):
        FinetuneConfig(batch_size_per_gpu=7).check()


def test_few_steps_reduce_loss(world):
    ds = ImageFolderDataset(world["data"] / "train", val_transform(32))
    x = torch.stack([ds[i][0] for i in range(0, len(ds), 3)])  # (12, 3, 32, 32), all classes
    y = torch.tensor([ds[i][1] for i in range(0, len(ds), 3)])
    model = build_model(world["backbone"], 3, 0.0)
    optimizer = torch.optim.AdamW(param_groups(model, 0.75, 0.05), lr=0.0)
    criterion = torch.nn.CrossEntropyLoss()
    before = evaluate(model, [(x, y, None)], torch.device("cpu"))["loss"]
    train_one_epoch(model, optimizer, [(x, y, None)] * 4, criterion, np.full(4, 3e-3), torch.device("cpu"))
    after = evaluate(model, [(x, y, None)], torch.device("cpu"))["loss"]
    assert after < 0.8 * before


# ------------------------------------------------------------------- runs, resume, files
def test_exact_resume_and_best_classifier(world, tmp_path):
    kw = dict(model_ema=True, model_ema_decay=0.9, max_steps_per_epoch=2, batch_size_per_gpu=4)
    results = run(world["backbone"], _cfg(world, tmp_path / "full", **kw), arch="vit_tiny")
    assert results["completed"] and results["epochs_done"] == 2 and 0 <= results["best_top1"] <= 100

    halves = tmp_path / "halves"
    first = run(world["backbone"], _cfg(world, halves, time_limit_min=1e-9, **kw), arch="vit_tiny")
    assert first["epochs_done"] == 1 and not first["completed"]
    second = run(world["backbone"], _cfg(world, halves, resume=True, **kw), arch="vit_tiny")
    assert second["completed"] and second["history"] == results["history"]
    a = torch.load(tmp_path / "full" / "checkpoint.pth", weights_only=True)
    b = torch.load(halves / "checkpoint.pth", weights_only=True)
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["epoch"] == b["epoch"] == 2

    # classifier.pth holds the best epoch: reloaded, it scores exactly the reported top-1.
    clf, info = load_classifier(tmp_path / "full" / "classifier.pth")
    val = ImageFolderDataset(world["data"] / "val", val_transform(32))
    batches = [(torch.stack([val[i][0] for i in range(len(val))]), torch.tensor(val.targets), None)]
    assert evaluate(clf, batches, torch.device("cpu"))["top1"] == pytest.approx(results["best_top1"])
    assert info["meta"]["classes"] == ["class0", "class1", "class2"]


def test_time_limit_stops_after_an_evaluated_epoch_and_says_so(world, tmp_path, capsys):
    """time_limit_min: training stops at the end of the epoch that passes it; that epoch was evaluated, its
    classifier written, and results.json records the stop (a finished run records none)."""
    kw = dict(max_steps_per_epoch=1, batch_size_per_gpu=4, epochs=3, warmup_epochs=0)
    out = tmp_path / "stopped"
    assert main(_args(_cfg(world, out, time_limit_min=1e-9, **kw), world["root"] / "backbone.pth")) == 0
    res = json.loads((out / "results.json").read_text())
    stopped = {k: v for k, v in res["stopped"].items() if k != "minutes"}
    assert stopped == {"time_limit_min": 1e-9, "iterations": 1, "epochs": 1} and not res["completed"]
    assert res["epochs_done"] == 1 and res["best_top1"] == res["history"][0]["top1"]
    assert load_classifier(out / "classifier.pth")[1]["meta"]["epoch"] == 1
    assert main(_args(_cfg(world, out, resume=True, **kw), world["root"] / "backbone.pth")) == 0
    done = json.loads((out / "results.json").read_text())
    assert done["completed"] and "stopped" not in done and done["epochs_done"] == 3
    capsys.readouterr()
    assert main(_args(_cfg(world, tmp_path / "bad", time_limit_min=-1.0, **kw), world["root"] / "backbone.pth")) == 2
    assert "time_limit_min must be >= 0" in capsys.readouterr().err


def test_classifier_file_round_trip(world, tmp_path):
    for head in (None, world["head"]):
        model = build_model(world["backbone"], 3, 0.1, head=head).eval()
        with torch.no_grad():
            model.head.weight.normal_()
        save_finetuned(tmp_path / "c.pth", model, {"classes": ["a", "b", "c"]})
        raw = torch.load(tmp_path / "c.pth", weights_only=True)
        assert raw["feature"] == "cls" and raw["backbone_kwargs"]["depth"] == 2
        loaded, _ = load_classifier(tmp_path / "c.pth")
        x = torch.randn(2, 3, 32, 32)
        assert not loaded.training and torch.allclose(loaded(x), model(x), atol=1e-6)
        assert (loaded.proj is None) == (head is None)


def test_semi_supervised_start(world, tmp_path):
    cfg = _cfg(world, tmp_path, start_from="head_layer1", epochs=1, warmup_epochs=0, max_steps_per_epoch=1)
    assert main(_args(cfg, world["root"] / "with_head.pth")) == 0
    assert load_classifier(tmp_path / "classifier.pth")[0].proj is not None
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["completed"] and results["backbone"]["arch"] == "vit_tiny"
    assert (tmp_path / "config.yaml").is_file()


def test_finetune_a_tiny_swin(world, tmp_path, capsys):
    """Swin: classifier on the token average, Swin layer ids, drop path rebuilt, CLI run, classifier file."""
    swin = tiny_swin(img_size=32)  # depths (2, 2, 2, 2): 8 blocks
    model = build_model(swin, 3, 0.1).eval()
    assert model.backbone.layers[-1].blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # rebuilt
    assert not model.backbone.masked_embed.requires_grad
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.features(x), swin.forward_features(x)[:, 1:].mean(1), atol=1e-5)
    scale = {n: g["lr_scale"] for g in param_groups(model, 0.5, 0.05) for n in g["names"]}
    assert scale["backbone.patch_embed.proj.weight"] == pytest.approx(0.5**9)  # id 0
    assert scale["backbone.layers.1.downsample.reduction.weight"] == pytest.approx(0.5**7)  # id 2, as block 1
    assert scale["backbone.layers.3.blocks.1.attn.qkv.weight"] == pytest.approx(0.5)  # id 8
    assert scale["backbone.norm.weight"] == scale["head.weight"] == 1.0

    export_backbone(swin, tmp_path / "swin.pth")
    out = tmp_path / "ft"
    cfg = _cfg(world, out, epochs=1, warmup_epochs=0, max_steps_per_epoch=2)
    assert main(_args(cfg, tmp_path / "swin.pth")) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["completed"] and results["backbone"]["arch"] == "swin_tiny"
    row = results["history"][0]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["loss"]) and 0 <= row["top1"] <= 100
    clf, _ = load_classifier(out / "classifier.pth")
    assert isinstance(clf.backbone, SwinBackbone) and clf.backbone.arch_kwargs() == swin.arch_kwargs()
    val = ImageFolderDataset(world["data"] / "val", val_transform(32))
    batches = [(torch.stack([val[i][0] for i in range(len(val))]), torch.tensor(val.targets), None)]
    assert evaluate(clf, batches, torch.device("cpu"))["top1"] == pytest.approx(results["best_top1"])
    capsys.readouterr()
    assert main(_args(_cfg(world, tmp_path / "bad", image_size=48), tmp_path / "swin.pth")) == 2
    assert "image_size=48 is not a multiple of Swin's final-stage stride 32" in capsys.readouterr().err


def test_recipes_parse():
    for name in ("vit_small_16", "vit_base_16", "vit_large_16", "transfer_deit", "semi_supervised"):
        parse_config(FinetuneConfig, ["--config", str(RECIPES / f"{name}.yaml")]).check()
    large = parse_config(FinetuneConfig, ["--config", str(RECIPES / "vit_large_16.yaml")])
    got = (
        large.epochs,
        large.drop_path_rate,
        large.layer_decay,
        large.warmup_epochs,
        large.batch_size_per_gpu,
        large.accum_steps,
    )
    assert got == (50, 0.4, 0.75, 5, 64, 2)


def test_bad_inputs(world, tmp_path, capsys):
    good = _cfg(world, tmp_path / "out", epochs=1)
    junk = tmp_path / "junk.pth"
    torch.save({"something": 1}, junk)
    bb = world["root"] / "backbone.pth"
    cases = {
        "checkpoint not found": _args(good, tmp_path / "missing.pth"),
        "not a folder": _args(_cfg(world, tmp_path / "o", data_path=str(tmp_path / "nope")), bb),
        "no weights found": _args(good, junk),
        "without a head": _args(_cfg(world, tmp_path / "o", start_from="head_layer1"), bb),
        "start_from must be": _args(good, bb) + ["start_from=mean"],
        "Valid keys": _args(good, bb) + ["layer_decy=0.5"],
        "multiple of the patch size": _args(good, bb) + ["image_size=36"],
        "pretrained=PATH is required": [f"data_path={world['data']}", f"output_dir={tmp_path}"],
    }
    for needle, argv in cases.items():
        assert main(argv) == 2, needle
        err = capsys.readouterr().err.strip()
        assert err.startswith("finetune: error:") and "\n" not in err and needle in err, err


# ------------------------------------------------------------------------- the interface
def test_help_lists_every_key(capsys):
    text = check_help(main, "finetune", capsys)
    assert "batch_size_per_gpu = 128" in text and "drop_path_rate = 0.1" in text and "precision = 'auto'" in text


def test_config_errors_come_before_any_work(world, tmp_path, capsys):
    argv = [f"pretrained={world['root'] / 'backbone.pth'}", f"data_path={tmp_path / 'no_data'}"]
    config_errors_before_work(main, argv, tmp_path, capsys)


def test_configs_and_shells_import_no_torch():
    torch_free_imports(["finetune", "finetune.config", "finetune.__main__"])


def test_bf16_on_cpu_and_tensorboard_scalars(world, tmp_path):
    out = tmp_path / "tb"
    res = run(world["backbone"], _cfg(world, out, precision="bf16", max_steps_per_epoch=1, batch_size_per_gpu=4))
    assert res["completed"] and all(math.isfinite(r["train_loss"]) for r in res["history"])
    events = scalar_events(out)  # per epoch: train loss and lr, val top-1/top-5/loss
    assert {"train/loss", "train/lr", "val/top1", "val/top5", "val/loss"} <= set(events)
    assert [s for s, _ in events["val/top1"]] == [1, 2]
    assert [v for _, v in events["val/top1"]] == pytest.approx([r["top1"] for r in res["history"]])
    assert [v for _, v in events["train/lr"]] == pytest.approx([r["lr_start"] for r in res["history"]])
    assert events["train/lr"][0][1] == 0.0 and events["train/lr"][1][1] == pytest.approx(1e-3)  # warm-up from 0
