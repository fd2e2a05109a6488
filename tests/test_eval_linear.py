"""Linear probe sweep and logistic regression: end to end, resume, schedules, recipes, bad input."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import eval_linear.work as work
from eval_linear import LinearConfig, run
from eval_linear.__main__ import main
from eval_linear.layout import grid_layout
from eval_linear.logreg import main as logreg_main
from evalkit import (
    PAPER_LRS,
    HeadGrid,
    eval_transform,
    feature_fn,
    load_classifier,
    make_grid,
    make_optimizer,
    pool_tokens,
    recipe_dim,
    set_epoch_lr,
)
from plumbing import ConfigError
from pretrain import ImageFolderDataset, load_backbone
from tests.helpers.eval_world import (
    check_help,
    config_errors_before_work,
    export_tiny,
    scalar_events,
    tiny_backbone,
    torch_free_imports,
    write_split_world,
)
from tests.helpers.reference import load_reference, reference_path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("linear_world")
    write_split_world(root / "data")
    export_tiny(root / "tiny.pth")
    return root


def _quick(world: Path, out: Path, **kw) -> LinearConfig:
    cfg = LinearConfig(data_path=str(world / "data"), output_dir=str(out), image_size=32, batch_size_per_gpu=12)
    cfg.lrs, cfg.epochs, cfg.num_workers, cfg.progress = [3.0, 30.0], 3, 0, False
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


# ---------------------------------------------------------------------------- end to end
def test_linear_cli_sweep_and_best_head_classifier(world, tmp_path):
    out = tmp_path / "lin"
    argv = [f"pretrained={world / 'tiny.pth'}", f"data_path={world / 'data'}", f"output_dir={out}", "image_size=32"]
    argv += [
        "recipes=[cls,cls+avgpool]",
        "lrs=[3.0,30.0]",
        "epochs=3",
        "batch_size_per_gpu=12",
        "num_workers=0",
        "progress=false",
    ]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "config.yaml").is_file()
    assert [(h["recipe"], h["lr"]) for h in res["heads"]] == [
        ("cls", 3.0), ("cls", 30.0), ("cls+avgpool", 3.0), ("cls+avgpool", 30.0)
    ]  # fmt: skip
    assert res["n_last_blocks"] == 2  # ViT-S-sized default of 4, capped by the 2-block backbone
    assert res["best"]["top1"] >= 80.0  # chance is 33 %
    assert res["best"]["top1"] == max(h["best_top1"] for h in res["heads"])
    assert res["best"]["lr_scaled"] == pytest.approx(res["best"]["lr"] * 12 / 256)
    assert len(res["history"]) == 3

    # backbone + saved head form a classifier that reproduces the best accuracy
    backbone, _ = load_backbone(world / "tiny.pth")
    model, info = load_classifier(res["best_head_file"], backbone)
    assert info["recipe"] == res["best"]["recipe"] and info["meta"]["classes"] == sorted(
        ["red_rows", "green_cols", "blue_checks"]
    )
    val = ImageFolderDataset(world / "data" / "val", eval_transform(32))
    with torch.no_grad():
        preds = model(torch.stack([val[i][0] for i in range(len(val))])).argmax(1)
    acc = (preds == torch.tensor(val.targets)).float().mean().item() * 100
    assert acc == pytest.approx(res["best"]["top1"], abs=100 / 18 + 1e-6)


def test_resume_continues_exactly(world, tmp_path, monkeypatch):
    full = run(tiny_backbone(), _quick(world, tmp_path / "full", epochs=2))
    real = work.train_one_epoch
    calls = []

    def crash_on_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(work, "train_one_epoch", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_backbone(), _quick(world, tmp_path / "resumed", epochs=2))
    monkeypatch.setattr(work, "train_one_epoch", real)
    resumed = run(tiny_backbone(), _quick(world, tmp_path / "resumed", epochs=2))
    assert resumed["heads"] == full["heads"] and resumed["history"] == full["history"]
    a = torch.load(tmp_path / "full" / work.CHECKPOINT, weights_only=True)["heads"]
    b = torch.load(tmp_path / "resumed" / work.CHECKPOINT, weights_only=True)["heads"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    with pytest.raises(ConfigError, match="different linear-probe setup"):
        run(tiny_backbone(), _quick(world, tmp_path / "resumed", epochs=2, lrs=[1.0]))


def test_one_backbone_forward_feeds_all_heads(world, tmp_path):
    backbone = tiny_backbone()
    calls = []
    real = backbone.get_intermediate_layers
    backbone.get_intermediate_layers = lambda x, n=1: calls.append(x.shape[0]) or real(x, n)
    cfg = _quick(world, tmp_path, epochs=1, recipes=["cls", "cls+avgpool"], lrs=[1.0, 2.0, 3.0], wds=[0.0, 1e-4])
    res = run(backbone, cfg)
    assert len(res["heads"]) == 12
    assert sum(calls) == 36 + 18  # each train image and each val image forwarded once


# ----------------------------------------------------------------------- pieces of the probe
def test_lr_scaling_and_per_epoch_cosine_match_torch():
    grid = make_grid(["cls"], [0.1, 1.0], [0.0])
    heads = HeadGrid(grid, widths=8, n_last_blocks=1, num_classes=3)
    opt = make_optimizer(heads, lr_scale=512 / 256)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0 * 2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=5, eta_min=0)
    for epoch in range(5):
        set_epoch_lr(opt, epoch, 5)
        assert opt.param_groups[1]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-9)
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"] / 10, rel=1e-9)
        ref_opt.step()
        sched.step()
    assert heads.heads[0].weight.std().item() == pytest.approx(0.01, rel=0.5) and heads.heads[0].bias.abs().sum() == 0


def test_paper_recipes_per_size():
    cfg = LinearConfig()
    assert work.resolve_recipes(cfg, SimpleNamespace(embed_dim=384, depth=12)) == (["cls"], 4)
    assert work.resolve_recipes(cfg, SimpleNamespace(embed_dim=768, depth=12)) == (["cls+avgpool"], 1)
    assert len(cfg.lrs) == 45 and min(cfg.lrs) == 1e-4 and max(cfg.lrs) == 9.0 and cfg.epochs == 100
    with pytest.raises(ConfigError, match="valid: auto, cls, cls\\+avgpool"):
        work.resolve_recipes(LinearConfig(recipes=["avg"]), SimpleNamespace(embed_dim=384, depth=12))
    with pytest.raises(ConfigError, match="n_last_blocks"):
        work.resolve_recipes(LinearConfig(n_last_blocks=5), SimpleNamespace(embed_dim=384, depth=2))


def test_pool_tokens_layout():
    layers = [torch.randn(2, 5, 4) for _ in range(3)]  # 3 blocks, (B, 1+N, D)
    cls = pool_tokens(layers, "cls")
    both = pool_tokens(layers, "cls+avgpool")
    assert cls.shape == (2, 12) and both.shape == (2, 16)
    assert torch.equal(both[:, :12], cls)  # cls is a prefix: one forward serves both recipes
    assert torch.allclose(both[:, 12:], layers[-1][:, 1:].mean(1))
    assert torch.equal(cls[:, 8:], layers[-1][:, 0])


# ---------------------------------------------------------------------- logistic regression
def test_logreg_cli_end_to_end(world, tmp_path):
    out = tmp_path / "lr"
    argv = [f"pretrained={world / 'tiny.pth'}", f"data_path={world / 'data'}", f"output_dir={out}", "image_size=32"]
    assert logreg_main([*argv, "num_workers=0", "progress=false", "batch_size_per_gpu=16"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["lambda"] for r in res["sweep"]] == [0.01, 0.1, 1.0]
    assert res["best"]["top1"] >= 80.0 and res["best"]["top1"] == max(r["top1"] for r in res["sweep"])
    assert res["feature_dim"] == 192 and res["num_train"] == 36


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["recipes=[avgpool]"], "unknown recipe 'avgpool'"),
        (["n_last_blocks=3"], "n_last_blocks must be in [1, 2]"),
        (["lrs=[]"], "at least one value"),
        (["epochs=two"], "epochs"),
    ],
)
def test_linear_bad_config_is_one_line_error(world, tmp_path, capsys, extra, message):
    argv = [
        f"pretrained={world / 'tiny.pth'}",
        f"data_path={world / 'data'}",
        f"output_dir={tmp_path}",
        "image_size=32",
    ]
    assert main([*argv, "num_workers=0", "progress=false", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eval_linear: error:") and message in err and "\n" not in err


def test_linear_and_logreg_reject_bad_data_and_checkpoint(world, tmp_path, capsys):
    data = write_split_world(tmp_path / "data", n_train=2, n_val=1)
    (data / "val" / "red_rows").rename(data / "val" / "crimson")
    common = [f"output_dir={tmp_path / 'o'}", "image_size=32", "num_workers=0", "progress=false"]
    assert main([f"pretrained={world / 'tiny.pth'}", f"data_path={data}", *common]) == 2
    assert "class folders differ" in capsys.readouterr().err
    torch.save({"teacher": {"backbone.foo": torch.zeros(2)}}, tmp_path / "not_vit.pth")
    assert logreg_main([f"pretrained={tmp_path / 'not_vit.pth'}", f"data_path={world / 'data'}", *common]) == 2
    assert "not a ViT backbone" in capsys.readouterr().err
    assert logreg_main([f"pretrained={world / 'tiny.pth'}", f"data_path={tmp_path / 'nowhere'}", *common]) == 2
    assert "is not a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------- the interface
COMMANDS = {"eval_linear": main, "eval_linear.logreg": logreg_main}


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_help_lists_every_key(prog, capsys):
    text = check_help(COMMANDS[prog], prog, capsys)
    assert "batch_size_per_gpu = 128" in text and "precision = 'auto'" in text


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_config_errors_come_before_any_work(prog, world, tmp_path, capsys):
    argv = [f"pretrained={world / 'tiny.pth'}", f"data_path={tmp_path / 'no_data'}"]
    config_errors_before_work(COMMANDS[prog], argv, tmp_path, capsys)


def test_configs_and_shells_import_no_torch():
    torch_free_imports(["eval_linear", "eval_linear.config", "eval_linear.__main__", "eval_linear.logreg"])
    assert LinearConfig().lrs == PAPER_LRS  # the torch-free copy of the paper's sweep


# ------------------------------------------------------------------ the avgpool_prenorm recipe
def _authors_prenorm_tokens(sd: dict, images: torch.Tensor) -> torch.Tensor:
    """The authors' ViT written out with plain ops from the checkpoint's tensors; returns the last
    block's tokens (B, 1+N, D) BEFORE the final norm (their model with use_mean_pooling: norm = Identity)."""
    F = torch.nn.functional
    w = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    x = F.conv2d(images, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=16)  # (B, D, 14, 14)
    x = x.flatten(2).transpose(1, 2)  # (B, N, D)
    x = torch.cat([w["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + w["pos_embed"]  # (B, 1+N, D)
    heads, depth = 3, 1 + max(int(k.split(".")[1]) for k in w if k.startswith("blocks."))
    for i in range(depth):
        p = {k[len(f"blocks.{i}.") :]: v for k, v in w.items() if k.startswith(f"blocks.{i}.")}
        h = F.layer_norm(x, x.shape[-1:], p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        B, N, D = h.shape
        qkv = F.linear(h, p["attn.qkv.weight"], p["attn.qkv.bias"]).reshape(B, N, 3, heads, D // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, d)
        attn = (q @ k.transpose(-2, -1) * (D // heads) ** -0.5).softmax(dim=-1)  # (B, heads, N, N)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(B, N, D), p["attn.proj.weight"], p["attn.proj.bias"])
        h = F.layer_norm(x, x.shape[-1:], p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        x = x + F.linear(F.gelu(F.linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"],
                         p["mlp.fc2.bias"])  # fmt: skip
    return x


def test_avgpool_prenorm_equals_the_authors_definition():
    ckpt = load_reference("official_checkpoint_A.pth")  # tests only: trusted fixture
    ref = load_reference("reference_outputs_A.pt")
    images = ref["images"]  # (2, 3, 224, 224)
    with torch.no_grad():
        tokens = _authors_prenorm_tokens(ckpt["teacher"], images)  # (2, 197, 192)
        # The hand-written forward is the authors' one: with their final norm it gives their output.
        norm_w, norm_b = ckpt["teacher"]["backbone.norm.weight"], ckpt["teacher"]["backbone.norm.bias"]
        normed = torch.nn.functional.layer_norm(tokens, (192,), norm_w, norm_b, 1e-6)
        assert torch.allclose(normed, ref["teacher_tokens"], atol=1e-5)
        backbone, _ = load_backbone(reference_path("official_checkpoint_A.pth"), "teacher")
        got = feature_fn(backbone, "avgpool_prenorm", 1)(images)  # (2, 192)
    assert got.shape == (2, 192) == (2, recipe_dim("avgpool_prenorm", 192, 4))
    assert torch.allclose(got, tokens[:, 1:].mean(dim=1), atol=1e-5)
    assert not torch.allclose(got, ref["teacher_tokens"][:, 1:].mean(dim=1), atol=1e-2)  # the norm is left out


def test_mixed_grid_reads_every_recipe_from_one_forward():
    backbone = tiny_backbone()
    grid = make_grid(["cls", "avgpool_prenorm", "cls+avgpool"], [1.0], [0.0])
    fn, offsets, layout = grid_layout(backbone, grid, 2, 192)
    calls = []
    real = backbone.get_block_outputs
    backbone.get_block_outputs = lambda x, idx, norm=False: calls.append(x.shape[0]) or real(x, idx, norm)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = fn(x)  # (3, 3 * 192 + 192)
        backbone.get_block_outputs = real
        wanted = [feature_fn(backbone, h.recipe, 2)(x) for h in grid]
    assert calls == [3] and layout == "cls+avgpool|avgpool_prenorm" and offsets == [0, 576, 0]
    heads = work.OffsetHeadGrid(grid, 192, 2, 3, offsets)
    for spec, o, d, want in zip(grid, offsets, heads.dims, wanted, strict=True):
        assert torch.allclose(feats[:, o : o + d], want, atol=1e-5), spec.recipe


def test_avgpool_prenorm_needs_a_vit():
    swin_like = SimpleNamespace(embed_dim=384, depth=12)  # no block outputs before the final norm
    with pytest.raises(ConfigError, match="avgpool_prenorm needs a ViT"):
        work.resolve_recipes(LinearConfig(recipes=["cls", "avgpool_prenorm"]), swin_like)


def test_avgpool_prenorm_probe_classifier_and_tensorboard(world, tmp_path):
    out = tmp_path / "prenorm"
    res = run(tiny_backbone(), _quick(world, out, recipes=["avgpool_prenorm"], epochs=2))
    assert [h["recipe"] for h in res["heads"]] == ["avgpool_prenorm"] * 2 and res["best"]["top1"] >= 60.0
    model, info = load_classifier(res["best_head_file"], tiny_backbone())
    assert info["recipe"] == "avgpool_prenorm" and info["in_dim"] == 192
    val = ImageFolderDataset(world / "data" / "val", eval_transform(32))
    with torch.no_grad():
        preds = model(torch.stack([val[i][0] for i in range(len(val))])).argmax(1)
    acc = (preds == torch.tensor(val.targets)).float().mean().item() * 100
    assert acc == pytest.approx(res["best"]["top1"], abs=100 / 18 + 1e-6)
    events = scalar_events(out)  # one point per epoch: train loss and lr, val top-1 of the epoch's best head
    assert {"train/loss", "train/lr", "val/top1"} <= set(events)
    assert [s for s, _ in events["val/top1"]] == [1, 2]
    assert [v for _, v in events["val/top1"]] == pytest.approx([h["best_top1"] for h in res["history"]])
    assert [v for _, v in events["train/loss"]] == pytest.approx([h["loss"] for h in res["history"]])
    (_, lr1), (_, lr2) = events["train/lr"]  # the best head's scaled lr: cosine factor 1, then 0.5
    assert any(lr1 == pytest.approx(lr * 12 / 256) for lr in (3.0, 30.0))
    assert any(lr2 == pytest.approx(lr * 12 / 256 * 0.5) for lr in (3.0, 30.0))
