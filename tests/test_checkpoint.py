"""Checkpoint loading: real files, our exports, foreign layouts, and bad or malicious files."""

import os

import pytest
import torch

from plumbing import CheckpointError
from pretrain import IBOTHead, build_backbone, export_backbone, load_backbone, load_head, to_timm
from tests.helpers.reference import load_reference, reference_path


def tiny(**kw):
    return build_backbone("vit_tiny", depth=2, img_size=32, patch_size=8, **kw)


def test_export_round_trip_with_head(tmp_path):
    backbone = tiny()
    head = IBOTHead(192, out_dim=32, patch_out_dim=24, shared_head=False, hidden_dim=16, bottleneck_dim=8)
    path = tmp_path / "export.pth"
    export_backbone(backbone, path, head=head, meta={"epoch": 7})
    payload = torch.load(path, weights_only=True)  # plain types only: no allow-list needed
    assert payload["backbone_kwargs"]["depth"] == 2
    loaded, info = load_backbone(path)
    assert info["format"] == "ibot-suite-backbone" and info["epoch"] == 7 and not loaded.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), backbone.eval()(x))
    head2, hinfo = load_head(path)
    assert hinfo["patch_out_dim"] == 24
    with torch.no_grad():
        t = backbone(x)
        assert all(torch.equal(a, b) for a, b in zip(head2(t), head.eval()(t), strict=True))


def test_timm_interop_same_tokens(tmp_path):
    backbone = tiny()
    export_backbone(backbone, tmp_path / "b.pth")
    loaded, _ = load_backbone(tmp_path / "b.pth")
    timm_vit = to_timm(loaded)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (timm_vit.forward_features(x) - loaded(x)).abs().max() <= 1e-5


def test_plain_timm_and_dino_layouts(tmp_path):
    backbone = tiny(use_mask_token=False)
    sd = backbone.state_dict()
    # timm-named state dict with a classifier: the classifier is set aside, shapes give the architecture.
    torch.save({**sd, "head.weight": torch.zeros(10, 192), "head.bias": torch.zeros(10)}, tmp_path / "timm.pth")
    loaded, info = load_backbone(tmp_path / "timm.pth")
    assert info["format"] == "plain-state-dict" and info["patch_size"] == 8 and info["depth"] == 2
    # DINO-style full checkpoint: student with DDP prefix, teacher with backbone./head. prefixes.
    dino = {
        "student": {f"module.backbone.{k}": v + 1 for k, v in sd.items()},
        "teacher": {**{f"backbone.{k}": v for k, v in sd.items()}, "head.mlp.0.weight": torch.zeros(4, 192)},
        "epoch": 100,
    }
    torch.save(dino, tmp_path / "dino.pth")
    teacher, tinfo = load_backbone(tmp_path / "dino.pth", key="teacher")
    student, _ = load_backbone(tmp_path / "dino.pth", key="student")
    assert tinfo["epoch"] == 100
    assert torch.equal(teacher.cls_token, sd["cls_token"]) and torch.equal(student.cls_token, sd["cls_token"] + 1)


def test_missing_key_in_full_checkpoint_names_what_exists(tmp_path):
    ckpt = load_reference("official_checkpoint_A.pth")
    del ckpt["teacher"]
    torch.save(ckpt, tmp_path / "student_only.pth")
    with pytest.raises(CheckpointError, match=r"no 'teacher' weights.*\['student'\]"):
        load_backbone(tmp_path / "student_only.pth", key="teacher")


def test_strict_errors_name_keys(tmp_path):
    sd = tiny().state_dict()
    missing = {k: v for k, v in sd.items() if k != "blocks.1.norm1.weight"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"missing\.pth.*missing keys \['blocks\.1\.norm1\.weight'\]"):
        load_backbone(tmp_path / "missing.pth")
    torch.save({**sd, "blocks.0.attn.extra": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \['blocks\.0\.attn\.extra'\]"):
        load_backbone(tmp_path / "extra.pth")
    torch.save({**sd, "blocks.0.mlp.fc2.bias": torch.zeros(7)}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatches.*blocks\.0\.mlp\.fc2\.bias"):
        load_backbone(tmp_path / "shape.pth")


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_backbone(tmp_path / "nope.pth")
    data = reference_path("official_backbone_A.pth").read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_backbone(tmp_path / "trunc.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pth"):
        load_backbone(tmp_path / "text.pth")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="no weights found"):
        load_backbone(tmp_path / "odd.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "notvit.pth")
    with pytest.raises(CheckpointError, match="not a ViT backbone"):
        load_backbone(tmp_path / "notvit.pth")
    with pytest.raises(CheckpointError, match="no head weights"):
        load_head(reference_path("official_backbone_A.pth"))


class Payload:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    sd = tiny().state_dict()
    torch.save({"state_dict": sd, "evil": Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to load"):
        load_backbone(tmp_path / "evil.pth")
    assert not marker.exists()


def test_authors_checkpoint_needs_only_namespace():
    """The real file holds an argparse.Namespace; it loads without weights_only=False."""
    _, info = load_backbone(reference_path("official_checkpoint_A.pth"))
    assert info["format"] == "ibot-official-full" and info["epoch"] == 3


@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_written_files_respect_the_umask(tmp_path, umask):
    """Atomic writes go through mkstemp (mode 0600); the files end with open()'s mode, 0666 & ~umask."""
    from plumbing import save_config, write_results
    from pretrain import atomic_save

    backbone = tiny()
    atomic_save({"x": torch.zeros(1)}, tmp_path / "state.pth")
    export_backbone(backbone, tmp_path / "b.pth")
    export_backbone(backbone, tmp_path / "b.safetensors", format="safetensors")
    write_results({"acc": 1.0}, tmp_path)
    save_config({"lr": 0.1}, tmp_path)
    expected = 0o666 & ~umask  # 0644 under 022, 0664 under 002
    for name in ("state.pth", "b.pth", "b.safetensors", "results.json", "config.yaml"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_missing_and_unreadable_files_are_user_errors(tmp_path):
    """A missing path is a CheckpointNotFoundError (exit 2 in every command), still a FileNotFoundError."""
    from plumbing import CheckpointNotFoundError, UserError

    with pytest.raises(CheckpointNotFoundError) as missing:
        load_backbone(tmp_path / "nope.pth")
    assert isinstance(missing.value, FileNotFoundError) and isinstance(missing.value, UserError)
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="text.pth"):
        load_backbone(tmp_path / "text.pth")
