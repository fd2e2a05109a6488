"""How segmentation's training stops early.

`time_limit_min`: training stops at the first step boundary after the limit, the checkpoint is written at
that step (a rerun resumes exactly), the model as trained is evaluated, and the results say so. A
non-finite loss: LossDivergedError (a user error)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import segmentation.work
from plumbing import ConfigError, LossDivergedError, UserError, autocast
from segmentation import build_segmentor, run
from segmentation.engine import build_optimizer, load_segmentor, train_step
from tests.test_segmentation import tiny_cfg, tiny_vit, write_ade

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_tiny_limit_stops_after_the_first_step_and_still_evaluates(tmp_path):
    root = write_ade(tmp_path / "ade")  # 6 train images, batch 4
    res = run(tiny_vit(), tiny_cfg(root, tmp_path / "run", iters=4, val_limit=1, n_figure=0, time_limit_min=1e-5))
    assert res["status"] == "time_limit" and res["steps_done"] == 1
    assert res["stopped"]["iterations"] == 1 and res["stopped"]["time_limit_min"] == 1e-5
    assert res["stopped"]["epochs"] == pytest.approx(4 / 6, abs=1e-3) and res["stopped"]["minutes"] >= 0
    assert math.isfinite(res["mIoU"]) and 0 <= res["mIoU"] <= 100
    _, meta = load_segmentor(tmp_path / "run" / "seg_checkpoint.pth")
    assert meta["step"] == 1


def test_a_time_limited_run_resumes_exactly(tmp_path, monkeypatch):
    root = write_ade(tmp_path / "ade")
    cfg = tiny_cfg(root, tmp_path / "a", iters=4, val_limit=1, n_figure=0)
    whole = run(tiny_vit(), cfg)
    assert whole["status"] == "done" and "stopped" not in whole
    calls = []  # the clock says "out of time" after the 2nd step
    monkeypatch.setattr(segmentation.work, "out_of_time", lambda *a: calls.append(1) or len(calls) == 2)
    cut = run(tiny_vit(), replace(cfg, output_dir=str(tmp_path / "b"), time_limit_min=1.0))
    assert cut["status"] == "time_limit" and cut["steps_done"] == 2 and math.isfinite(cut["mIoU"])
    monkeypatch.undo()
    resumed = run(tiny_vit(), replace(cfg, output_dir=str(tmp_path / "b")))  # time_limit_min=0: the same run
    assert resumed["status"] == "done" and resumed["steps_done"] == 4
    a = load_segmentor(tmp_path / "a" / "seg_checkpoint.pth")[0].state_dict()
    b = load_segmentor(tmp_path / "b" / "seg_checkpoint.pth")[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_negative_limit_is_refused(tmp_path):
    root = write_ade(tmp_path / "ade")
    with pytest.raises(ConfigError, match="time_limit_min must be >= 0"):
        tiny_cfg(root, tmp_path / "x", time_limit_min=-0.5).check()


def test_a_non_finite_loss_raises_loss_diverged():
    model = build_segmentor(tiny_vit(), "linear", num_classes=3).train()
    opt = build_optimizer(model, lr=1e-3, layer_decay=1.0, weight_decay=0.05, betas=(0.9, 0.999))
    batch = (torch.full((2, 3, 64, 64), float("nan")), torch.randint(0, 3, (2, 64, 64)))
    with pytest.raises(LossDivergedError, match="non-finite segmentation loss") as e:
        train_step(model, batch, opt, 0.4, autocast("cpu", "fp32"))
    assert isinstance(e.value, UserError)


def test_the_head_initialisation_follows_the_seed(tmp_path):
    """The same seed gives the same segmentation head whatever the global random state was (found measuring the
    demo: the head's draws depended on what ran before it); another seed gives another head."""
    from segmentation.work import make_model

    cfg = tiny_cfg(tmp_path, tmp_path / "out")
    torch.manual_seed(123)
    a, _ = make_model(tiny_vit(), cfg, 3, 0.0)
    torch.rand(1000)  # the global stream moved on
    b, _ = make_model(tiny_vit(), cfg, 3, 0.0)
    c, _ = make_model(tiny_vit(), replace(cfg, seed=1), 3, 0.0)
    heads = [{k: v for k, v in m.state_dict().items() if not k.startswith("backbone")} for m in (a, b, c)]
    assert heads[0].keys() == heads[1].keys() and len(heads[0]) > 4
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    assert any(not torch.equal(heads[0][k], heads[2][k]) for k in heads[0] if heads[0][k].is_floating_point())
