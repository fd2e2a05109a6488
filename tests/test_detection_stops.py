"""How detection's training stops early.

`time_limit_min`: training stops at the first iteration boundary after the limit, the model as trained is
written and evaluated, the results say where it stopped, and a rerun still resumes exactly (checkpoint.pth
stays at the last complete epoch). A non-finite loss: LossDivergedError (a user error)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import detection.engine
from detection import DetectionConfig, load_detector
from evalkit import ScalarLog
from plumbing import ConfigError, LossDivergedError, UserError
from tests.test_detection import config, make_world, run_file

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory)


def test_a_tiny_limit_stops_after_the_first_iteration_and_still_evaluates(world, tmp_path):
    cfg = config(world, tmp_path / "run", epochs=2, lr_steps=[], warmup_iters=1, time_limit_min=1e-5)
    results = run_file(cfg)
    assert results["stopped"]["time_limit_min"] == 1e-5
    assert results["stopped"]["iterations"] == 1 and results["stopped"]["epochs"] == pytest.approx(1 / 3, abs=1e-3)
    assert [(row["epoch"], row["iterations"]) for row in results["train"]] == [(1, 1)]
    assert 0 <= results["metrics"]["bbox_AP50"] <= 100 and 0 <= results["metrics"]["segm_AP50"] <= 100
    assert (tmp_path / "run" / "detector.pth").is_file()
    assert not (tmp_path / "run" / "checkpoint.pth").exists()  # no epoch completed: nothing to resume from


def test_a_run_cut_mid_epoch_resumes_exactly(world, tmp_path, monkeypatch):
    short = dict(epochs=2, lr_steps=[1], warmup_iters=2, flip_prob=0.5)
    whole = run_file(config(world, tmp_path / "a", **short))
    assert "stopped" not in whole
    calls = []  # the clock says "out of time" after the 5th iteration (the 2nd of epoch 2's 3)
    monkeypatch.setattr(detection.engine, "out_of_time", lambda *a: calls.append(1) or len(calls) == 5)
    cut = run_file(config(world, tmp_path / "b", **short, time_limit_min=1.0))
    assert cut["stopped"]["iterations"] == 5 and len(cut["train"]) == 2 and cut["train"][-1]["iterations"] == 2
    assert load_detector(tmp_path / "b" / "checkpoint.pth")[1]["epoch"] == 1
    monkeypatch.undo()
    resumed = run_file(config(world, tmp_path / "b", **short))  # another time limit: the same run, resumed
    assert "stopped" not in resumed and [r["epoch"] for r in resumed["train"]] == [1, 2]
    a, _ = load_detector(tmp_path / "a" / "detector.pth")
    b, _ = load_detector(tmp_path / "b" / "detector.pth")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_a_negative_limit_is_refused(world, tmp_path):
    with pytest.raises(ConfigError, match="time_limit_min must be >= 0"):
        config(world, tmp_path, time_limit_min=-1.0).check()
    assert DetectionConfig.time_limit_min == 0.0


def test_a_non_finite_loss_raises_loss_diverged(tmp_path):
    class Diverged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, images, targets):
            return {"loss_box_reg": self.w * float("nan")}

    model = Diverged()
    opt = torch.optim.SGD([{"params": list(model.parameters()), "lr_scale": 1.0}], lr=0.1)
    batch = ([torch.zeros(3, 8, 8)], [{"boxes": torch.zeros(0, 4), "image_id": 1}])
    cfg, cpu = DetectionConfig(progress=False), torch.device("cpu")
    with pytest.raises(LossDivergedError, match="at iteration 0") as e:
        detection.engine.train_one_epoch(model, opt, [batch], np.ones(1), 0, cfg, cpu, ScalarLog(tmp_path))
    assert isinstance(e.value, UserError)
