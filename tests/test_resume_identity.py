"""A resumed evaluation never reports one backbone's numbers under another's name: resuming a run folder
with other weights is refused with one line; resume=false moves the old run aside (linear probe,
fine-tuning; detection and segmentation go through the same evalkit.open_evaluation_folder)."""

import json
from pathlib import Path

import pytest

from eval_linear.__main__ import main as linear_main
from finetune.__main__ import main as finetune_main
from tests.helpers.eval_world import export_tiny, write_split_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_world")
    write_split_world(root / "data")
    export_tiny(root / "a.pth", seed=0)
    export_tiny(root / "b.pth", seed=1)  # same architecture, other weights
    return root


def _linear(world: Path, out: Path, backbone: str, *extra: str) -> list[str]:
    return [f"pretrained={world / backbone}", f"data_path={world / 'data'}", f"output_dir={out}", "image_size=32",
            "lrs=[1.0]", "epochs=1", "batch_size_per_gpu=12", "num_workers=0", "progress=false", *extra]  # fmt: skip


def test_linear_resume_with_another_backbone_is_refused(world, tmp_path, capsys):
    out = tmp_path / "lin"
    assert linear_main(_linear(world, out, "a.pth")) == 0
    results = (out / "results.json").read_text()
    capsys.readouterr()
    assert linear_main(_linear(world, out, "b.pth", "epochs=2")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("eval_linear: error:") and "backbone weights" in err and "resume=false" in err
    assert (out / "results.json").read_text() == results  # nothing of A's run was relabelled as B's
    # more epochs with the same backbone: a compatible change, resumed
    assert linear_main(_linear(world, out, "a.pth", "epochs=2")) == 0
    assert json.loads((out / "results.json").read_text())["backbone"]["format"]


def test_linear_resume_false_moves_the_old_run_aside(world, tmp_path):
    out = tmp_path / "lin"
    assert linear_main(_linear(world, out, "a.pth")) == 0
    first = json.loads((out / "results.json").read_text())
    assert linear_main(_linear(world, out, "b.pth", "resume=false")) == 0
    aside = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and json.loads((aside[0] / "results.json").read_text()) == first


def test_finetune_default_does_not_overwrite_an_existing_run(world, tmp_path, capsys):
    out = tmp_path / "ft"
    argv = [f"pretrained={world / 'a.pth'}", f"data_path={world / 'data'}", f"output_dir={out}", "image_size=32",
            "epochs=1", "warmup_epochs=0", "batch_size_per_gpu=12", "num_workers=0", "max_steps_per_epoch=1",
            "progress=false"]  # fmt: skip
    assert finetune_main(argv) == 0
    before = (out / "checkpoint.pth").read_bytes()
    assert finetune_main([*argv[:-1], "seed=3", "progress=false"]) == 0  # resume=false (the default)
    aside = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and (aside[0] / "checkpoint.pth").read_bytes() == before
    capsys.readouterr()
    other = [a.replace("a.pth", "b.pth") for a in argv]
    assert finetune_main([*other, "resume=true"]) == 2
    assert "backbone weights" in capsys.readouterr().err


def test_classifier_errors_name_the_file_and_the_mismatch(world, tmp_path):
    """A detector or backbone given as a classifier, and a head on a backbone of another depth: one line each."""
    import torch
    from torch import nn

    from evalkit import load_classifier, save_linear_head
    from plumbing import CheckpointError
    from pretrain import atomic_save, build_backbone

    torch.save({"format": "ibot-suite/detector", "model": {}}, tmp_path / "det.pth")
    with pytest.raises(CheckpointError, match=r"is a detector \(python -m detection.eval detector=\)"):
        load_classifier(tmp_path / "det.pth")
    with pytest.raises(CheckpointError, match=r"is an exported backbone \(give it as pretrained=\)"):
        load_classifier(world / "a.pth")
    atomic_save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "authors.pth")
    with pytest.raises(CheckpointError, match="a backbone or training checkpoint"):
        load_classifier(tmp_path / "authors.pth")
    head = nn.Linear(192 * 4, 3)  # the ViT-S recipe: the last 4 blocks' [CLS]
    save_linear_head(tmp_path / "head.pth", head, "cls", 4, {})
    shallow = build_backbone("vit_tiny", depth=2, img_size=32, patch_size=8)
    with pytest.raises(CheckpointError, match="reads the last 4 blocks but the backbone has 2"):
        load_classifier(tmp_path / "head.pth", shallow)
