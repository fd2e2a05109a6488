"""The demo's stages are orchestration: each evaluation is its command's `run(backbone, cfg)` through
`evalkit.evaluate` (results.json with provenance), with a config sized to the demo's budget."""

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from demo.common import Context
from demo.dense import segmentation_config
from demo.evaluations import finetune
from demo.robustness import robustness_tests
from evalkit import evaluate, save_linear_head
from plumbing import ConfigError
from pretrain import export_backbone, load_backbone
from segmentation import run as segmentation_run
from tests.helpers.eval_world import tiny_backbone
from tests.test_robustness import shapes_world  # noqa: F401 (a fixture)
from tests.test_segmentation import tiny_vit, write_ade


@pytest.mark.parametrize("extra_installed", [True, False])
def test_demo_robustness_on_the_shapes_world(shapes_world, tmp_path, monkeypatch, extra_installed):  # noqa: F811
    if not extra_installed:  # without the optional imagecorruptions the other tests run and the summary says why

        def missing():
            raise ConfigError("corruptions on the fly need the optional package imagecorruptions")

        monkeypatch.setattr("demo.robustness.require_imagecorruptions", missing)
    backbone = tiny_backbone()
    torch.manual_seed(2)
    classes = ["circle", "square", "triangle"]
    save_linear_head(tmp_path / "head.pth", nn.Linear(192, 3), "cls", 1, {"classes": classes, "image_size": 32})
    export_backbone(backbone, tmp_path / "backbone.pth")

    out = robustness_tests(tmp_path / "head.pth", tmp_path / "backbone.pth", shapes_world, tmp_path / "demo", 32, "cpu")
    assert set(out["background_top1"]) == {"mixed_rand", "mixed_same", "no_fg", "only_fg", "original"}
    top1 = out["results"]["backgrounds"]["top1"]
    assert out["bg_gap"] == pytest.approx(top1["mixed_same"] - top1["mixed_rand"])
    assert 0 <= out["vulnerable_percent"] <= 100 and out["results"]["backgrounds"]["challenge"]["num_foregrounds"] == 8
    assert list(out["shuffle_top1"]) == ["2x2", "4x4", "8x8"]
    if extra_installed:
        assert len(out["results"]["corruptions"]["errors"]) == 3 and out["skipped"] == {}
        assert out["corruption_mean_error"] == out["results"]["corruptions"]["mean_error"]
    else:
        assert out["corruption_mean_error"] is None and "imagecorruptions" in out["skipped"]["corruptions"]
        assert "corruptions" not in out["results"] and not (tmp_path / "demo" / "corruptions").exists()
    for test in ("occlusion", "shuffle", "backgrounds") + (("corruptions",) if extra_installed else ()):
        assert (tmp_path / "demo" / test / "results.json").is_file() and (
            tmp_path / "demo" / test / "config.yaml"
        ).is_file()
        # written by the one shell: the command that reproduces it, with the classifier it ran
        command = json.loads((tmp_path / "demo" / test / "results.json").read_text())["provenance"]["command"]
        assert command.startswith(f"python -m analysis.robustness.{test} ") and "classifier=" in command
    flat = json.loads((tmp_path / "demo" / "summary.json").read_text())  # what the closing table reads
    assert flat == {k: v for k, v in out.items() if k != "results"}


def test_demo_segmentation_reruns_in_the_same_folder(tmp_path):
    """The demo's step count depends on its budget; a second run (another count) in the same folder trains
    afresh instead of refusing the first run's checkpoint as a different run (seen on `make demo` re-runs)."""
    write_ade(tmp_path / "world" / "ade")
    export_backbone(tiny_vit(), tmp_path / "vit.pth")
    backbone, info = load_backbone(tmp_path / "vit.pth")
    ctx = Context(tmp_path / "run", tmp_path / "world", {}, {"upernet_iters": 2, "upernet_s": 60.0})
    out = str(tmp_path / "demo")

    def once() -> dict:
        cfg = dataclasses.replace(segmentation_config(ctx, "upernet", 16, "cpu", out), val_limit=1, n_figure=0)
        return evaluate(segmentation_run, backbone, cfg, "segmentation", info)

    first = once()
    ctx.budgets["upernet_iters"] = 3
    second = once()
    assert first["steps_done"] == 2 and second["steps_done"] == 3 and math.isfinite(second["mIoU"])


def test_demo_finetuning_is_the_commands_run_with_the_demos_budget(tmp_path):
    """The fine-tuning stage: `finetune.run` through the shell, `finetune_epochs` epochs, the time limit of the
    budget; results.json records the command line that repeats it."""
    from demo_world import write_world

    world = tmp_path / "world"
    write_world(world, seed=0, num_classes=3, image_size=32, n_train=22, n_val=4, coco=False, ade=False,
                backgrounds=False, progress=False)  # fmt: skip
    export_backbone(tiny_backbone(), tmp_path / "backbone.pth")
    budgets = {"finetune_epochs": 2, "finetune_s": 1e-6}  # stopped after the first epoch
    ctx = Context(tmp_path / "run", world, {"m": tmp_path / "backbone.pth"}, budgets, "cpu")
    finetune(ctx, "m")
    res = json.loads((tmp_path / "run" / "finetune" / "m" / "results.json").read_text())
    assert res["epochs_done"] == 1 and res["stopped"]["epochs"] == 1 and not res["completed"]
    assert res["stopped"]["time_limit_min"] == pytest.approx(1e-6 / 60)
    assert res["backbone"]["fingerprint"] and "time_limit_min=" in res["provenance"]["command"]
    assert res["provenance"]["command"].startswith("python -m finetune ")
