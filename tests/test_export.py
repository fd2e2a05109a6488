"""Export and conversion: safetensors, Hugging Face ViTModel folders, timm files, `python -m pretrain.export`."""

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open

from plumbing import CheckpointError
from pretrain import IBOTHead, build_backbone, export_backbone, load_backbone, load_head, to_timm
from pretrain.checkpoints.hf_export import export_hf
from pretrain.checkpoints.timm_export import export_timm
from pretrain.export import main as export_main
from tests.helpers.reference import reference_path
from tests.helpers.swin import tiny_swin

ROOT = Path(__file__).resolve().parents[1]


def tiny_vit(**kw):
    torch.manual_seed(0)
    return build_backbone("vit_tiny", depth=2, img_size=32, patch_size=8, **kw).eval()


def tokens(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_safetensors_round_trip_with_head(tmp_path, family):
    backbone = tiny_vit() if family == "vit" else tiny_swin()
    head = IBOTHead(backbone.embed_dim, out_dim=32, patch_out_dim=24, hidden_dim=16, bottleneck_dim=8).eval()
    path = tmp_path / "b.safetensors"
    export_backbone(backbone, path, head=head, meta={"epoch": 5}, format="safetensors")
    with safe_open(str(path), framework="pt") as f:  # metadata is str -> str: the kwargs are JSON text
        kwargs = json.loads(f.metadata()["backbone_kwargs"])
    assert kwargs == json.loads(json.dumps(backbone.arch_kwargs()))
    loaded, info = load_backbone(path)
    assert info["format"] == "ibot-suite-backbone" and info["epoch"] == 5 and info["arch"] == f"{family}_tiny"
    x = torch.randn(2, 3, 32 if family == "vit" else 64, 32 if family == "vit" else 64)
    assert torch.equal(tokens(loaded, x), tokens(backbone, x))
    head2, hinfo = load_head(path)
    assert hinfo["patch_out_dim"] == 24
    t = tokens(backbone, x)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(head2(t), head(t), strict=True))


def test_safetensors_plain_state_dict_and_damaged_file(tmp_path):
    from safetensors.torch import save_file

    backbone = tiny_vit(use_mask_token=False)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, tmp_path / "plain.safetensors")
    loaded, info = load_backbone(tmp_path / "plain.safetensors")
    assert info["format"] == "plain-state-dict" and info["depth"] == 2
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(tokens(loaded, x), tokens(backbone, x))
    data = (tmp_path / "plain.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors.*not a readable safetensors file"):
        load_backbone(tmp_path / "cut.safetensors")
    with pytest.raises(ValueError, match="valid: suite, safetensors, hf, timm"):
        export_backbone(backbone, tmp_path / "x", format="onnx")


def test_hf_vitmodel_gives_the_same_tokens(tmp_path):
    from transformers import ViTModel

    backbone = tiny_vit()
    export_hf(backbone, tmp_path / "hf")
    model, loading = ViTModel.from_pretrained(tmp_path / "hf", add_pooling_layer=False, output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"] and not loading["mismatched_keys"]
    assert model.config.layer_norm_eps == backbone.norm.eps == 1e-6
    x = torch.randn(2, 3, 32, 32)  # the training resolution
    with torch.no_grad():
        hf_tokens = model.eval()(pixel_values=x).last_hidden_state  # (B, 1+N, D)
    assert (hf_tokens - tokens(backbone, x)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="ViT backbones only"):
        export_hf(tiny_swin(), tmp_path / "swin_hf")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_file_loads_through_create_model(tmp_path, suffix):
    backbone = tiny_vit()
    spec = export_timm(backbone, tmp_path / f"vit_timm{suffix}")
    assert json.loads((tmp_path / "vit_timm.json").read_text()) == spec
    # the documented call
    overlay, kwargs = spec["pretrained_cfg_overlay"], spec["model_kwargs"]
    model = timm.create_model(spec["model_name"], pretrained=True, pretrained_cfg_overlay=overlay, **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model.forward_features(x) - tokens(backbone, x)).abs().max() <= 1e-5
    # a file that does not fit (the suite's own backbone file) raises instead of keeping random weights
    export_backbone(backbone, tmp_path / "suite.pth")
    overlay = {**spec["pretrained_cfg_overlay"], "file": str(tmp_path / "suite.pth")}
    with pytest.raises(RuntimeError, match="Missing key"):
        timm.create_model(spec["model_name"], pretrained=True, pretrained_cfg_overlay=overlay, **spec["model_kwargs"])


def test_swin_to_timm_and_timm_file(tmp_path):
    backbone = tiny_swin()
    x = torch.randn(2, 3, 64, 64)
    ours = tokens(backbone, x)  # (B, 1+N, D): token average, then the final-stage tokens
    with torch.no_grad():
        timm_map = to_timm(backbone).forward_features(x)  # (B, h, w, D)
    assert (timm_map.flatten(1, 2) - ours[:, 1:]).abs().max() <= 1e-5
    spec = export_timm(backbone, tmp_path / "swin_timm.pth")
    assert "norm_layer" in spec["note"]
    model = timm.create_model(
        spec["model_name"], pretrained=True, pretrained_cfg_overlay=spec["pretrained_cfg_overlay"],
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), **spec["model_kwargs"],
    ).eval()  # fmt: skip
    with torch.no_grad():
        feats = model.forward_features(x)
        assert (feats.flatten(1, 2) - ours[:, 1:]).abs().max() <= 1e-5
        assert (model.forward_head(feats) - ours[:, 0]).abs().max() <= 1e-5  # avg pool = pseudo-[CLS]


def test_export_command_converts_the_authors_checkpoint(tmp_path, capsys):
    src = reference_path("official_checkpoint_A.pth")
    teacher, _ = load_backbone(src, key="teacher")
    student, _ = load_backbone(src, key="student")
    x = torch.randn(1, 3, 224, 224)
    want = {"teacher": tokens(teacher, x), "student": tokens(student, x)}
    assert not torch.equal(want["teacher"], want["student"])
    runs = [("suite", "teacher", "t.pth", True), ("safetensors", "student", "s.safetensors", True)]
    for fmt, key, name, head in runs:
        args = [f"pretrained={src}", f"checkpoint_key={key}", f"format={fmt}", f"output_dir={tmp_path}", f"name={name}"]
        assert export_main(args + [f"with_head={str(head).lower()}"]) == 0
        loaded, info = load_backbone(tmp_path / name)
        assert torch.equal(tokens(loaded, x), want[key]) and info["epoch"] == 3
        assert load_head(tmp_path / name)[1]["out_dim"] == load_head(src, key=key)[1]["out_dim"]
    assert export_main([f"pretrained={src}", "format=timm", f"output_dir={tmp_path}", "name=timm.pth"]) == 0
    assert json.loads((tmp_path / "timm.json").read_text())["model_kwargs"]["depth"] == 2
    assert export_main([f"pretrained={src}", "format=hf", f"output_dir={tmp_path / 'hf'}"]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["num_hidden_layers"] == 2
    assert "wrote vit_tiny + head (ibot-official-full -> suite)" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_export_in_half_precision_halves_the_file_and_loads_as_fp32(tmp_path, dtype):
    src = reference_path("official_checkpoint_A.pth")
    base = [f"pretrained={src}", "with_head=true"]
    assert export_main([*base, f"output_dir={tmp_path}", "name=full.pth"]) == 0
    assert export_main([*base, f"output_dir={tmp_path}", "name=half.pth", f"dtype={dtype}"]) == 0
    full, half = tmp_path / "full.pth", tmp_path / "half.pth"
    stored = torch.load(half, weights_only=True)
    assert stored["backbone"]["pos_embed"].dtype == getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}[dtype])
    assert stored["meta"]["stored_dtype"] == dtype and half.stat().st_size < 0.6 * full.stat().st_size
    (a, _), (b, _) = load_backbone(full), load_backbone(half)
    assert all(p.dtype == torch.float32 for p in b.parameters())  # loaded back into an fp32 model
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(q, p.to(getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}[dtype])).float()), name
    head_a, head_b = load_head(full)[0], load_head(half)[0]
    assert all(p.dtype == torch.float32 for p in head_b.parameters())
    x = torch.randn(1, 3, 224, 224)
    rel = (tokens(b, x) - tokens(a, x)).norm() / tokens(a, x).norm()
    assert 0 < rel < (2e-3 if dtype == "fp16" else 2e-2)  # rounded, not garbled
    with torch.no_grad():
        t = tokens(a, x)
        assert (head_b(t)[0] - head_a(t)[0]).abs().max() < (5e-2 if dtype == "fp16" else 3e-1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["format=hf", "output_dir=OUT/hf", "with_head=true"], "with_head=true needs format=suite or safetensors"),
        (["format=timm", "output_dir=OUT", "dtype=fp16"], "dtype=fp16 needs format=suite or safetensors"),
        (["output_dir=OUT/x", "dtype=float16"], "dtype='float16'; valid: fp32, fp16, bf16"),
        (["format=onnx", "output_dir=OUT/x"], "format='onnx'; valid: suite, safetensors, hf, timm"),
        (["checkpoint_key=ema", "output_dir=OUT/x"], "checkpoint_key='ema'; valid: teacher, student"),
        (["output_dir=OUT", "name=exists.pth"], "exists: choose another output or pass overwrite=true"),
        (["outptu=x"], "unknown key 'outptu'.*did you mean output"),
    ],
)
def test_export_command_user_errors_are_one_line(tmp_path, capsys, args, message):
    import re

    (tmp_path / "exists.pth").write_text("keep me")
    args = [f"pretrained={reference_path('official_backbone_A.pth')}"] + [a.replace("OUT", str(tmp_path)) for a in args]
    assert export_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert (tmp_path / "exists.pth").read_text() == "keep me"
    assert export_main(["pretrained=" + str(tmp_path / "nope.pth"), f"output_dir={tmp_path / 'x'}"]) == 2


def test_export_writes_fixed_names_into_output_dir(tmp_path, capsys):
    """output_dir is the folder: backbone.pth / backbone.safetensors / backbone_timm.pth (+ .json) inside
    it, or, for format=hf, the ViTModel folder itself; name= picks another file name."""
    src = f"pretrained={reference_path('official_backbone_A.pth')}"
    for fmt in ("suite", "safetensors", "timm"):
        assert export_main([src, f"format={fmt}", f"output_dir={tmp_path / 'out'}"]) == 0
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {"backbone.pth", "backbone.safetensors", "backbone_timm.pth", "backbone_timm.json"}
    assert load_backbone(tmp_path / "out" / "backbone.safetensors")[1]["format"] == "ibot-suite-backbone"
    assert export_main([src, "format=hf", f"output_dir={tmp_path / 'hf'}"]) == 0
    assert (tmp_path / "hf" / "config.json").is_file() and (tmp_path / "hf" / "model.safetensors").is_file()
    assert export_main([src, "format=hf", f"output_dir={tmp_path / 'hf'}"]) == 2  # exists
    assert export_main([src, "format=hf", f"output_dir={tmp_path / 'hf'}", "overwrite=true"]) == 0
    capsys.readouterr()
    assert export_main([src, f"output_dir={tmp_path}", "name=sub/b.pth"]) == 2
    assert "a file name inside output_dir" in capsys.readouterr().err
    assert export_main([src, "format=hf", f"output_dir={tmp_path / 'hf2'}", "name=x"]) == 2
    assert export_main([src, f"output_dir={tmp_path / 'out' / 'backbone.pth'}"]) == 2  # a file, not a folder
    assert "is a file" in capsys.readouterr().err


def test_export_help_imports_no_torch():
    code = (
        "import sys; from pretrain.export import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "checkpoint_key = 'teacher'  # teacher | student" in out.stdout


def test_missing_safetensors_names_the_extra(tmp_path, monkeypatch, capsys):
    export_backbone(tiny_vit(), tmp_path / "b.safetensors", format="safetensors")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed: import raises ImportError
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ImportError, match=r"pip install 'ibot-suite\[hf\]'"):
        export_backbone(tiny_vit(), tmp_path / "c.safetensors", format="safetensors")
    with pytest.raises(CheckpointError, match=r"b.safetensors: cannot read.*ibot-suite\[hf\]"):
        load_backbone(tmp_path / "b.safetensors")
    args = [
        f"pretrained={reference_path('official_backbone_A.pth')}",
        "format=safetensors",
        f"output_dir={tmp_path / 'd'}",
    ]
    assert export_main(args) == 2
    assert "ibot-suite[hf]" in capsys.readouterr().err
