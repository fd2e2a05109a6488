"""Swin backbones (timm's Swin behind the ViT API): masking, layouts, pre-training, checkpoints, k-NN/linear."""

import argparse
import json
from pathlib import Path

import pytest
import torch
from timm.models.swin_transformer import SwinTransformer

import eval_knn
import eval_linear
from plumbing import CheckpointError, ConfigError, parse_config
from pretrain import (
    SwinBackbone,
    TrainConfig,
    TrainingRun,
    build_backbone,
    export_backbone,
    load_backbone,
    mask_grid,
    train,
)
from pretrain.models.backbones import ARCHS
from pretrain.models.swin import SWIN_SIZES
from pretrain.training.step import build_loss, build_models
from tests.helpers.eval_world import write_split_world
from tests.helpers.swin import tiny_swin
from tests.helpers.worlds import write_blobs

RECIPES = Path(__file__).resolve().parents[1] / "pretrain" / "recipes"
tiny = tiny_swin


def out(model: SwinBackbone, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


# ------------------------------------------------------------------------------- registry and sizes
def test_registry_names_sizes_and_drop_path_defaults():
    assert {"swin_tiny", "swin_small", "swin_base"} <= set(ARCHS) and set(SWIN_SIZES) <= set(ARCHS)
    with pytest.raises(ValueError, match="swin_tiny"):
        build_backbone("swin_tinyy")
    expected = {"swin_tiny": (768, 12, 24, 0.1), "swin_small": (768, 24, 24, 0.2), "swin_base": (1024, 24, 32, 0.2)}
    with torch.device("meta"):  # shapes and attributes only: no memory, no initialisation cost
        for arch, (dim, depth, heads, dpr) in expected.items():
            m = build_backbone(arch, window_size=14)
            assert (m.embed_dim, m.depth, m.num_heads, m.patch_size, mask_grid(m)) == (dim, depth, heads, 4, 32)
            assert m.layers[-1].blocks[-1].drop_path1.drop_prob == pytest.approx(dpr)
    assert mask_grid(build_backbone("vit_tiny", depth=1, img_size=32, patch_size=8)) == 8


@pytest.mark.parametrize("window", [7, 14])
def test_224_and_96_px_inputs_with_window_7_and_14(window, tmp_path):
    """Swin-T's layout (narrowed): 49 final tokens at 224 px, 9 for 96-px local crops; window clamped."""
    m = build_backbone("swin_tiny", embed_dim=24, window_size=window, drop_path_rate=0.0).eval()
    assert [s.blocks[0].window_size[0] for s in m.layers] == [window, window, min(window, 14), 7]
    assert out(m, torch.randn(1, 3, 224, 224)).shape == (1, 1 + 49, 192)
    assert out(m, torch.randn(2, 3, 96, 96)).shape == (2, 1 + 9, 192)
    torch.save(m.state_dict(), tmp_path / "plain.pth")  # window and image size read back from the shapes
    assert load_backbone(tmp_path / "plain.pth")[0].arch_kwargs() == m.arch_kwargs()


# ------------------------------------------------------------------------------------ masked forward
def test_masks_replace_exactly_the_upsampled_region():
    m = tiny()
    with torch.no_grad():
        m.masked_embed.normal_()
    x = torch.randn(2, 3, 64, 64)
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[0, 0, 1] = masks[1, 1, 0] = True
    with torch.no_grad():
        plain, masked = m.embed(x), m.embed(x, masks)  # (B, 16, 16, C) on the 4-px grid
    region = masks.repeat_interleave(8, 1).repeat_interleave(8, 2)  # 32-px cells -> 8x8 embeddings
    assert plain.shape == (2, 16, 16, 24) and region[0, :8, 8:].all() and region.sum() == 2 * 64
    changed = (plain != masked).any(-1)
    assert torch.equal(changed, region)
    assert torch.equal(masked[region], m.masked_embed.expand(int(region.sum()), -1))
    y, y_masked = out(m, x), m(x, masks).detach()
    assert y.shape == y_masked.shape == (2, 1 + 4, 192) and not torch.allclose(y, y_masked)
    assert torch.allclose(y[:, 0], y[:, 1:].mean(1), atol=1e-6)  # pseudo-[CLS] = average of the tokens
    with pytest.raises(ValueError, match=r"masks must be \(B, H/32, W/32\)"):
        m(x, torch.zeros(2, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="no mask token"):
        tiny(use_mask_token=False)(x, masks)


def test_intermediate_layers_stage_outputs_and_no_cls_attention():
    m, x = tiny(), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        last = m.get_intermediate_layers(x, 3)
        stages = m.get_stage_outputs(x)
        y = m(x)
    assert [t.shape for t in last] == [(2, 1 + 16, 96), (2, 1 + 4, 192), (2, 1 + 4, 192)]
    assert [sum(t.shape[-1] for t in last)] == [sum(m.block_dims[-3:])]
    assert torch.allclose(last[-1], y, atol=1e-6)
    assert [tuple(s.shape) for s in stages] == [(2, 24, 16, 16), (2, 48, 8, 8), (2, 96, 4, 4), (2, 192, 2, 2)]
    assert (m.stage_dims, m.stage_strides) == ([24, 48, 96, 192], [4, 8, 16, 32])
    assert torch.allclose(m.norm(stages[-1].permute(0, 2, 3, 1)).flatten(1, 2), y[:, 1:], atol=1e-6)
    with pytest.raises(NotImplementedError, match=r"Swin has no \[CLS\] attention"):
        m.get_last_selfattention(x)
    assert m.layer_id("patch_embed.proj.weight") == 0 and m.layer_id("norm.weight") == m.depth + 1
    assert m.layer_id("layers.2.blocks.1.mlp.fc1.weight") == 6 and m.layer_id("layers.2.downsample.norm.weight") == 4


# --------------------------------------------------------------------------------------- checkpoints
def _old_layout(sd: dict) -> dict:
    """timm keys -> the original Swin / authors' layout (patch merging at the end of the previous stage)."""
    out = {}
    for k, v in sd.items():
        if ".downsample." in k:
            stage = int(k.split(".")[1])
            k = k.replace(f"layers.{stage}.downsample", f"layers.{stage - 1}.downsample")
        out[k] = v
    out["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)  # a buffer
    out["head.weight"], out["head.bias"] = torch.zeros(1000, 192), torch.zeros(1000)  # unused classifier
    return out


def test_export_and_load_round_trips(tmp_path):
    m, x = tiny(), torch.randn(2, 3, 64, 64)
    export_backbone(m, tmp_path / "swin.pth")
    loaded, info = load_backbone(tmp_path / "swin.pth")
    assert isinstance(loaded, SwinBackbone) and info["format"] == "ibot-suite-backbone"
    assert (info["embed_dim"], info["depth"], info["patch_size"]) == (192, 8, 4)
    assert torch.equal(out(loaded, x), out(m, x))
    torch.save(m.state_dict(), tmp_path / "plain.pth")  # shapes alone: widths, depths, heads, window, img size
    plain, info = load_backbone(tmp_path / "plain.pth")
    assert info["format"] == "plain-state-dict" and plain.arch_kwargs() == m.arch_kwargs()
    assert torch.equal(out(plain, x), out(m, x))
    sd = {f"module.backbone.{k}": v for k, v in _old_layout(m.state_dict()).items()}
    full = {"teacher": sd, "student": sd, "epoch": 3, "args": argparse.Namespace(arch="swin_tiny", window_size=7)}
    torch.save(full, tmp_path / "authors.pth")
    authors, info = load_backbone(tmp_path / "authors.pth")
    assert info["format"] == "ibot-official-full" and info["epoch"] == 3
    assert torch.equal(out(authors, x), out(m, x))
    timm_swin = SwinTransformer(img_size=64, embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), num_classes=5)
    torch.save(timm_swin.state_dict(), tmp_path / "timm.pth")  # timm's own model, classifier included
    from_timm, _ = load_backbone(tmp_path / "timm.pth")
    with torch.no_grad():  # timm's LayerNorm eps is 1e-5, the authors' (our default) 1e-6
        assert torch.allclose(
            from_timm(x)[:, 0], timm_swin.eval().forward_head(timm_swin.forward_features(x), True), atol=1e-3
        )
    headless = SwinTransformer(img_size=64, embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), num_classes=0)
    headless.load_state_dict({k: v for k, v in loaded.state_dict().items() if k != "masked_embed"}, strict=True)
    torch.save({**m.state_dict(), "layers.0.blocks.0.extra": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \['layers.0.blocks.0.extra'\]"):
        load_backbone(tmp_path / "bad.pth")


# ---------------------------------------------------------------------------------------- pre-training
def swin_cfg(out_dir: Path, data: Path, *extra: str) -> TrainConfig:
    args = [
        "arch=swin_tiny", "patch_size=4", "window_size=7", "arch_kwargs={embed_dim: 16, depths: [1, 1, 2, 1], "
        "num_heads: [1, 2, 2, 4]}", "out_dim=32", "patch_out_dim=32", "head_hidden_dim=32", "head_bottleneck_dim=16",
        "global_crop_size=64", "local_crop_size=32", "local_crops_number=2", "batch_size_per_gpu=4",
        "warmup_epochs=1", "warmup_teacher_temp_epochs=1", "num_workers=0", "precision=fp32", "saveckp_freq=0",
        "pred_ratio=[0.5]", "pred_ratio_var=[0.0]", f"data_path={data}", f"output_dir={out_dir}", *extra,
    ]  # fmt: skip
    return parse_config(TrainConfig, args)


def test_pretraining_steps_on_a_tiny_swin(tmp_path):
    data = write_blobs(tmp_path / "world", n_per_class=4, size=48)
    cfg = swin_cfg(tmp_path / "run", data, "epochs=2", "max_steps_per_epoch=2", "pred_start_epoch=1")
    student, teacher = build_models(cfg)
    assert student.backbone.layers[-1].blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # Swin-T's default
    assert isinstance(teacher.backbone.layers[-1].blocks[-1].drop_path1, torch.nn.Identity)
    assert teacher.backbone.masked_embed is None and student.backbone.masked_embed is not None
    (_, masks), _ = next(iter(TrainingRun(cfg).loader()))
    assert masks[0].shape == (4, 2, 2)  # one cell per final-stage token (32 px) of a 64-px global crop
    res = train(cfg)
    assert res["completed"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 0, 1, 1]
    assert all(r["patch"] == 0 for r in rows[:2]) and all(r["patch"] > 0 for r in rows[2:])  # MIM from epoch 1
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    exported, info = load_backbone(res["backbone"])
    assert isinstance(exported, SwinBackbone) and exported.masked_embed is None and info["epoch"] == 2
    ckpt, _ = load_backbone(tmp_path / "run" / "checkpoint.pth")
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(out(exported, x), out(ckpt, x))
    assert load_backbone(tmp_path / "run" / "checkpoint.pth", key="student")[0].masked_embed is not None


def test_swin_recipes_hold_the_patch_temperature_until_pred_start_epoch():
    for name, window in (("swin_tiny_7", 7), ("swin_tiny_14", 14)):
        cfg = parse_config(TrainConfig, ["--config", str(RECIPES / f"{name}.yaml")])
        got = (cfg.arch, cfg.patch_size, cfg.window_size, cfg.epochs, cfg.pred_start_epoch)
        assert got == ("swin_tiny", 4, window, 300, 50)
        temp2 = build_loss(cfg).teacher_temp2_schedule
        assert (temp2[:51] == 0.04).all() and temp2[80] == pytest.approx(0.07)
    with pytest.raises(ConfigError, match="patch_size=4"):
        TrainingRun(parse_config(TrainConfig, ["arch=swin_tiny", "data_path=x"]))


# ---------------------------------------------------------------------------------------- evaluations
def test_knn_and_linear_probe_on_a_tiny_swin(tmp_path):
    data = write_split_world(tmp_path / "data", n_train=4, n_val=2, size=64)
    m = tiny()
    knn = eval_knn.run(
        m, eval_knn.KNNConfig(data_path=str(data), output_dir=str(tmp_path / "knn"), image_size=64, ks=[3],
                              num_workers=0, device="cpu", progress=False)
    )  # fmt: skip
    assert knn["feature_dim"] == 192 and 0 <= knn["knn"]["k=3"]["top1"] <= 100
    cfg = eval_linear.LinearConfig(data_path=str(data), output_dir=str(tmp_path / "lin"), image_size=64,
                                   n_last_blocks=1, lrs=[1.0], epochs=1, batch_size_per_gpu=6, num_workers=0,
                                   device="cpu", progress=False)  # fmt: skip
    res = eval_linear.run(m, cfg)
    assert res["n_last_blocks"] == 1 and res["best"]["recipe"] == "cls" and not m.training
