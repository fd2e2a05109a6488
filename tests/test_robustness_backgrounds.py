"""The backgrounds challenge on a world without backgrounds (objects on one uniform colour: every variant is
the original picture) is skipped with one line why; a world with textured backgrounds still gives numbers."""

import json
import logging

import pytest
import torch
from torch import nn

import analysis.robustness.backgrounds as backgrounds_cli
from analysis import BackgroundsConfig, run_backgrounds
from analysis.robustness.backgrounds_work import no_backgrounds
from evalkit import load_classifier, save_linear_head
from pretrain import export_backbone
from tests.helpers.eval_world import tiny_backbone

VARIANTS = ["mixed_rand", "mixed_same", "no_fg", "only_fg", "original"]


def world(tmp_path_factory, name: str, **kw):
    from demo_world import write_world

    out = tmp_path_factory.mktemp(name) / "world"
    write_world(out, seed=0, num_classes=3, image_size=32, n_train=1, n_val=3, coco=False, ade=False, progress=False,
                **kw)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def silhouette(tmp_path_factory):
    """White shapes on black (the demo's world): the backgrounds are one colour."""
    return world(tmp_path_factory, "silhouette", silhouette=True, photo_fraction=0.0, grayscale=True)


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    """The default world: photo crops, gradients and noise behind the shapes."""
    return world(tmp_path_factory, "textured", photo_fraction=1.0)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("bg_classifier")
    export_backbone(tiny_backbone(), root / "backbone.pth")
    torch.manual_seed(2)
    classes = ["circle", "square", "triangle"]
    save_linear_head(root / "head.pth", nn.Linear(192, 3), "cls", 1, {"classes": classes, "image_size": 32})
    return root / "head.pth", root / "backbone.pth"


def config(world_dir, out) -> BackgroundsConfig:
    return BackgroundsConfig(
        data_path=str(world_dir / "backgrounds"), class_map="identity", challenge=True,
        mask_dir=str(world_dir / "classification" / "masks" / "val"), bg_dir=str(world_dir / "backgrounds" / "no_fg"),
        max_foregrounds=2, max_backgrounds=4, batch_size_per_gpu=8, num_workers=0, device="cpu", progress=False,
        output_dir=str(out),
    )  # fmt: skip


def test_a_world_without_backgrounds_is_skipped_in_one_line(silhouette, classifier, tmp_path, caplog):
    model, info = load_classifier(*classifier)
    with caplog.at_level(logging.WARNING):
        res = run_backgrounds(model, config(silhouette, tmp_path / "run"), info)
    assert set(res) == {"skipped", "image_size", "variants"} and res["variants"] == VARIANTS  # no accuracy numbers
    reason = res["skipped"]
    assert "no backgrounds" in reason and "only_fg" in reason and "mixed_rand" in reason
    assert "\n" not in reason and not (tmp_path / "run" / "backgrounds.png").exists()
    logged = [r.getMessage() for r in caplog.records if "backgrounds skipped" in r.getMessage()]
    assert logged == [f"backgrounds skipped: {reason}"]


def test_the_command_records_the_skip(silhouette, classifier, tmp_path):
    head, backbone = classifier
    out = tmp_path / "cli"
    argv = [f"classifier={head}", f"pretrained={backbone}", f"data_path={silhouette / 'backgrounds'}",
            "class_map=identity", "num_workers=0", "device=cpu", f"output_dir={out}"]  # fmt: skip
    assert backgrounds_cli.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert "no backgrounds" in res["skipped"] and "top1" not in res and "bg_gap" not in res
    assert res["classifier"]["kind"] == "linear" and res["provenance"]


def test_textured_backgrounds_still_give_numbers(textured, classifier, tmp_path):
    root = textured / "backgrounds"
    assert no_backgrounds(root, VARIANTS) is None
    assert no_backgrounds(root, ["no_fg"]) is None  # nothing swaps the background: nothing to compare
    model, info = load_classifier(*classifier)
    res = run_backgrounds(model, config(textured, tmp_path / "run"), info)
    assert "skipped" not in res and set(res["top1"]) == set(VARIANTS)
    assert res["bg_gap"] == pytest.approx(res["top1"]["mixed_same"] - res["top1"]["mixed_rand"])
    assert res["challenge"]["num_foregrounds"] == 2 and (tmp_path / "run" / "backgrounds.png").is_file()
