"""The detection and segmentation backbone path equals the authors' (fixture `dense_A.pt`, README "Dense backbone").

Both paths are built the suite's way from `dense_checkpoint_A.pth` (teacher backbone, load-time and
forward-time position-embedding resizes, block outputs, adaptor) and compared map by map: `pos_embed`,
`block_maps`, `features` within 1e-4 absolute and 1e-4 relative to each map's largest value. Their
layer-decay groups equal the fixture's `lr_groups` for every backbone parameter through
`evalkit.authors_dense_name`; neck and heads follow the rule of `lr_groups_head_examples`. Every size,
setting and name comes from the fixture's `settings`, so another fixture set runs unchanged.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from detection import DetectionConfig, DetectorSpec, build_from_config
from detection.engine import build_optimizer as detection_optimizer
from evalkit import adaptor_state_from_authors, authors_dense_name
from plumbing import parse_config
from pretrain import arch_name, build_backbone, load_backbone
from segmentation import SegConfig
from segmentation.engine import build_optimizer as segmentation_optimizer
from segmentation.work import make_model
from tests.helpers.reference import DEFAULT, ENV, load_reference, reference_dir, reference_path, settings

TOL = 1e-4
ROOT = Path(__file__).resolve().parents[1]
PATHS = ("det", "seg")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dense():
    return load_reference("dense_A.pt")


def pretrained(s: dict) -> torch.nn.Module:
    """The teacher backbone of the fixture's checkpoint, loaded as every dense command loads `pretrained=`."""
    return load_backbone(reference_path(s["checkpoint"]), key=s["checkpoint_key"])[0]


def configs(s: dict, path: str):
    """The suite's config for one of the authors' two paths, from the fixture's settings."""
    c, opt = s[path], s[path]["optimizer"]
    common = dict(lr=opt["lr"], weight_decay=opt["weight_decay"], layer_decay=c["paramwise_cfg"]["layer_decay_rate"],
                  drop_path_rate=c["drop_path_rate"])  # fmt: skip
    if path == "det":  # heads kept narrow: they do not touch the backbone path
        spec = DetectorSpec(out_indices=list(c["out_indices"]), out_with_norm=c["out_with_norm"],
                            pos_embed_size=list(c["img_size"]), fpn_channels=16, conv_channels=16,
                            fc_dim=32)  # fmt: skip
        return DetectionConfig(model=spec, **common)
    return SegConfig(head="upernet", out_indices=list(c["out_indices"]), out_with_norm=c["out_with_norm"],
                     crop_size=c["img_size"][0], betas=list(opt["betas"]), **common)  # fmt: skip


def build(s: dict, path: str, backbone: torch.nn.Module | None = None):
    """(model, cfg, dense backbone part: `.vit`, `.adaptor`, maps of the chosen blocks) as the commands build them."""
    cfg, backbone = configs(s, path), backbone if backbone is not None else pretrained(s)
    if path == "det":
        model, _ = build_from_config(backbone, cfg, types.SimpleNamespace(num_classes=2))
        part, maps = model.backbone, model.backbone.vit_maps
    else:
        model, _ = make_model(backbone, cfg, 2, cfg.drop_path_rate)
        part, maps = model.backbone, model.backbone.maps
    return model.eval(), cfg, part, maps


def largest_error(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    """(max |difference|, that / max |theirs|)."""
    assert ours.shape == theirs.shape
    diff = (ours - theirs).abs().max().item()
    return diff, diff / theirs.abs().max().item()


@pytest.mark.parametrize("path", PATHS)
def test_pos_embed_block_maps_and_features_equal_the_authors(dense, path):
    s, ref = dense["settings"], dense[path]
    _, _, part, maps = build(s, path)
    assert list(part.vit.pos_embed.shape) == list(ref["pos_embed_model_shape"])  # the load-time grid
    part.adaptor.load_state_dict(adaptor_state_from_authors(ref["adaptor_state"], s["patch_size"]))
    x, p = dense["images"], s["patch_size"]
    with torch.no_grad():
        pos = part.vit.interpolate_pos_encoding(x.shape[-2] // p, x.shape[-1] // p)
        blocks = maps(x)
        features = part.adaptor(blocks)
    pairs = [(pos, ref["pos_embed"])] + list(zip(blocks, ref["block_maps"], strict=True))
    pairs += list(zip(features, ref["features"], strict=True))
    assert len(pairs) == 1 + len(ref["block_maps"]) + len(ref["features"])
    for ours, theirs in pairs:
        diff, rel = largest_error(ours, theirs)
        assert diff <= TOL and rel <= TOL, (diff, rel)


@pytest.mark.parametrize("path", PATHS)
def test_weights_from_the_checkpoint_and_the_adaptor_as_the_authors_load_them(dense, path):
    """What the authors' non-strict load reports missing is our adaptor; what it reports unexpected our
    model holds frozen (the final norm without `out_with_norm`)."""
    s, ref = dense["settings"], dense[path]
    _, _, part, _ = build(s, path)
    adaptor = {authors_dense_name(f"backbone.adaptor.{k}", s["patch_size"]) for k in part.adaptor.state_dict()}
    assert adaptor == {f"backbone.{k}" for k in ref["missing_keys"]}
    frozen = {authors_dense_name(f"backbone.vit.{n}") for n, q in part.vit.named_parameters() if not q.requires_grad}
    assert {f"backbone.{k}" for k in ref["unexpected_keys"]} <= frozen


def test_the_direct_resize_option_is_another_rule(dense):
    """`model.resize_pos_embed=false` resizes each input straight from the pre-training grid: not the authors'."""
    s = dense["settings"]
    cfg = configs(s, "det")
    cfg.model.resize_pos_embed = False
    model, _ = build_from_config(pretrained(s), cfg, types.SimpleNamespace(num_classes=2))
    x, p = dense["images"], s["patch_size"]
    with torch.no_grad():
        pos = model.backbone.vit.interpolate_pos_encoding(x.shape[-2] // p, x.shape[-1] // p)
    assert list(model.backbone.vit.pos_embed.shape) == s["pos_embed_checkpoint"]
    assert largest_error(pos, dense["det"]["pos_embed"])[0] > 10 * TOL


def groups_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    """Our optimizer's settings per parameter name (layer_id, lr_scale, weight_decay)."""
    names = {id(q): n for n, q in model.named_parameters()}
    keys = ("layer_id", "lr_scale", "weight_decay")
    return {names[id(q)]: {k: g[k] for k in keys} for g in optimizer.param_groups for q in g["params"]}


@pytest.mark.parametrize("path", PATHS)
def test_layer_decay_groups_equal_the_authors(dense, path):
    s, ref = dense["settings"], dense[path]
    model, cfg, _, _ = build(s, path)
    if path == "det":
        opt = detection_optimizer(model, cfg)
    else:
        opt = segmentation_optimizer(model, cfg.lr, cfg.layer_decay, cfg.weight_decay, cfg.betas)
    ours = groups_by_name(model, opt)
    base = ref["lr_base"]
    assert (cfg.lr, cfg.weight_decay, cfg.layer_decay) == (base["lr"], base["weight_decay"], base["layer_decay_rate"])
    theirs = ref["lr_groups"]
    mapped = {authors_dense_name(n, s["patch_size"]): g for n, g in ours.items() if authors_dense_name(n) in theirs}
    assert set(mapped) == set(theirs)  # every backbone parameter, nothing more
    for name, want in theirs.items():
        got = mapped[name]
        assert got["layer_id"] == want["layer_id"], name
        assert got["lr_scale"] == pytest.approx(want["lr_scale"], rel=1e-12), name
        assert base["lr"] * got["lr_scale"] == pytest.approx(want["lr"], rel=1e-12), name
        assert got["weight_decay"] == want["weight_decay"], name
    top = base["num_layers"] + 1  # neck and heads: the rule `lr_groups_head_examples` shows
    assert {(e["layer_id"], e["lr_scale"]) for e in ref["lr_groups_head_examples"].values()} == {(top, 1.0)}
    shapes = dict(model.named_parameters())
    for name, got in ours.items():
        if authors_dense_name(name) not in theirs:
            decay = 0.0 if name.endswith(".bias") or shapes[name].ndim == 1 else base["weight_decay"]
            assert (got["layer_id"], got["lr_scale"], got["weight_decay"]) == (top, 1.0, decay), name


def test_resized_detector_backbone_rebuilds_from_its_kwargs(dense):
    """A detector file stores the resized table; its `arch_kwargs()` rebuild the same shapes (no second resize)."""
    s = dense["settings"]
    model, _, part, _ = build(s, "det")
    kwargs = part.vit.arch_kwargs()
    grid = [size // s["patch_size"] for size in s["det"]["img_size"]]
    assert kwargs["pos_grid"] == grid
    rebuilt = build_backbone(arch_name(part.vit), **kwargs)
    rebuilt.load_state_dict(part.vit.state_dict(), strict=True)
    assert "pos_grid" not in pretrained(s).arch_kwargs()  # a square pre-training table: the keys as before


def test_patch8_adaptor_is_the_authors_definition(dense):
    """Patch 8 (no fixture case): fpn1 = one transposed conv (kernel 2, stride 2), fpn2 = identity,
    fpn3 = max-pool 2, fpn4 = max-pool 4; its weights under the authors' names `fpn1.0.*`, at layer L + 1."""
    s = dense["settings"]
    torch.manual_seed(s["seed"])
    kw = {k: s[k] for k in ("embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias")}
    vit = build_backbone(arch_name(pretrained(s)), patch_size=8, img_size=s["pretrain_img_size"], **kw)
    model, cfg, part, maps = build(s, "det", vit)
    D = s["embed_dim"]
    authors = {"fpn1.0.weight": torch.randn(D, D, 2, 2) * 0.1, "fpn1.0.bias": torch.randn(D)}
    part.adaptor.load_state_dict(adaptor_state_from_authors(authors, 8))
    x = dense["images"]
    with torch.no_grad():
        blocks = maps(x)
        features = part.adaptor(blocks)
    want = [F.conv_transpose2d(blocks[0], authors["fpn1.0.weight"], authors["fpn1.0.bias"], stride=2), blocks[1],
            F.max_pool2d(blocks[2], 2, 2), F.max_pool2d(blocks[3], 4, 4)]  # fmt: skip
    for ours, theirs in zip(features, want, strict=True):
        assert torch.equal(ours, theirs)
    # strides 4, 8, 16, 32 from a stride-8 grid: the same map sizes as the fixture's patch-16 features
    assert [f.shape[-2:] for f in features] == [f.shape[-2:] for f in dense["det"]["features"]]
    names = {authors_dense_name(n, 8) for n, _ in model.named_parameters() if n.startswith("backbone.adaptor.")}
    assert names == {f"backbone.{k}" for k in authors}
    ours = groups_by_name(model, detection_optimizer(model, cfg))
    top = s["depth"] + 1
    assert ours["backbone.adaptor.levels.0.weight"] == {
        "layer_id": top,
        "lr_scale": 1.0,
        "weight_decay": cfg.weight_decay,
    }
    assert ours["backbone.adaptor.levels.0.bias"] == {"layer_id": top, "lr_scale": 1.0, "weight_decay": 0.0}


def test_the_vit_s_paper_recipes_follow_the_authors_path(dense):
    """The ViT-S recipes hold the fixture's settings (position table, norm, optimizer); detection's layer
    decay is the authors' README command's 0.8 where their config file (the fixture) says 0.75."""
    s = dense["settings"]
    det = parse_config(DetectionConfig, ["--config", str(ROOT / "detection/recipes/vit_small_cascade.yaml")])
    assert det.model.resize_pos_embed and det.model.pos_embed_size == s["det"]["img_size"]
    assert (det.model.out_with_norm, det.drop_path_rate, det.lr) == (
        s["det"]["out_with_norm"], s["det"]["drop_path_rate"], s["det"]["optimizer"]["lr"])  # fmt: skip
    seg = parse_config(SegConfig, ["--config", str(ROOT / "segmentation/recipes/vit_small_upernet.yaml")])
    assert seg.resize_pos_embed and [seg.crop_size] == s["seg"]["img_size"]
    assert (seg.out_with_norm, seg.drop_path_rate, seg.lr, seg.layer_decay) == (
        s["seg"]["out_with_norm"], s["seg"]["drop_path_rate"], s["seg"]["optimizer"]["lr"],
        s["seg"]["paramwise_cfg"]["layer_decay_rate"])  # fmt: skip


def test_fixture_folder_comes_from_the_environment(monkeypatch, tmp_path):
    """`IBOT_REFERENCE_DIR` points every test at another fixture set with the same file names."""
    assert settings("dense_A.pt") == load_reference("dense_A.pt")["settings"]
    (tmp_path / "mask_stats_A.json").write_text('{"case": {"mean": 0.25}}')
    monkeypatch.setenv(ENV, str(tmp_path))
    assert reference_dir() == tmp_path and load_reference("mask_stats_A.json") == {"case": {"mean": 0.25}}
    with pytest.raises(FileNotFoundError, match="dense_A.pt"):
        reference_path("dense_A.pt")
    monkeypatch.setenv(ENV, str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=ENV):
        reference_dir()
    monkeypatch.delenv(ENV)
    if DEFAULT.is_dir():  # unset: ../shared/fixtures/reference beside the checkout
        assert reference_dir() == DEFAULT
