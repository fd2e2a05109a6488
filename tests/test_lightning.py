"""The Lightning module trains exactly as the plain loop: same per-step losses, weights and centers,
in one process and in two (DDP on gloo); Trainer settings that would change the step are refused."""

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plumbing import ConfigError, parse_config
from pretrain import IBOTLightningModule, TrainConfig, load_backbone, safe_load, train, weights_fingerprint
from tests.helpers.lightning_worker import fit_lightning, weights
from tests.helpers.worlds import write_blobs

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "arch=vit_tiny", "depth=2", "patch_size=8", "out_dim=64", "patch_out_dim=64", "head_hidden_dim=32",
    "head_bottleneck_dim=16", "global_crop_size=32", "local_crop_size=16", "local_crops_number=2",
    "warmup_epochs=1", "warmup_teacher_temp_epochs=1", "num_workers=0", "precision=fp32", "saveckp_freq=0",
    "lr=0.002", "momentum_teacher=0.9", "epochs=2", "max_steps_per_epoch=2", "freeze_last_layer=1",
]  # fmt: skip
KEYS = ("loss", "cls", "patch", "lr", "wd", "momentum")


def cfg_for(out: Path, data: Path, *extra: str) -> TrainConfig:
    return parse_config(TrainConfig, [*TINY, f"data_path={data}", f"output_dir={out}", *extra])


def plain_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def assert_same_steps(rows: list[dict], reference: list[dict]) -> None:
    """Equal to the last bit: the same operations in the same order on the same thread count (and under
    DDP, gradients averaged over 2 ranks: a sum of two numbers, whatever the buckets)."""
    assert [r["step"] for r in rows] == [r["step"] for r in reference] == list(range(4))  # 2 epochs x 2 steps
    for k in KEYS:
        assert [r[k] for r in rows] == [r[k] for r in reference], k


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_blobs(tmp_path_factory.mktemp("world") / "train", n_per_class=8)  # 16 images: 2 batches of 8


def test_one_process_matches_plain_loop(tmp_path, data, one_thread):
    """Drop-path, KoLeo and the last-layer freeze (epoch 0 only) on: the random stream, the extra loss
    term and the epoch-dependent pieces all line up."""
    extra = ["batch_size_per_gpu=8", "drop_path_rate=0.1", "koleo_weight=0.1"]
    train(cfg_for(tmp_path / "plain", data, *extra))
    module, _ = fit_lightning(cfg_for(tmp_path / "lightning", data, *extra))
    reference = plain_rows(tmp_path / "plain")
    assert_same_steps(module.history, reference)
    assert [r["koleo"] for r in module.history] == [r["koleo"] for r in reference]
    assert len({round(r["loss"], 6) for r in reference}) == 4  # the steps differ: a real comparison
    state = safe_load(tmp_path / "plain" / "checkpoint.pth")
    assert max_diff(weights(module.student), state["student"]) == 0.0
    assert max_diff(weights(module.teacher), state["teacher"]) == 0.0
    assert max_diff(weights(module.loss_fn), state["ibot_loss"]) == 0.0  # centers
    ours, _ = load_backbone(tmp_path / "lightning" / "backbone.pth")  # the exported teacher, for evaluations
    theirs, _ = load_backbone(tmp_path / "plain" / "backbone.pth")
    assert weights_fingerprint(ours) == weights_fingerprint(theirs)


def test_resume_from_lightning_checkpoint_at_epoch_end(tmp_path, data, one_thread):
    """Lightning's checkpoint after epoch 0 (+ the random stream the module adds) continues as the
    uninterrupted run, drop-path draws included."""
    extra = ["batch_size_per_gpu=8", "drop_path_rate=0.1"]
    full, _ = fit_lightning(cfg_for(tmp_path / "full", data, *extra))
    first, trainer = fit_lightning(cfg_for(tmp_path / "first", data, *extra), max_epochs=1)
    trainer.save_checkpoint(tmp_path / "epoch0.ckpt")
    resumed, _ = fit_lightning(cfg_for(tmp_path / "resumed", data, *extra), ckpt_path=str(tmp_path / "epoch0.ckpt"))
    assert [r["step"] for r in resumed.history] == [2, 3]
    assert first.history + resumed.history == full.history
    assert max_diff(weights(resumed.teacher), weights(full.teacher)) == 0.0
    loaded = IBOTLightningModule.load_from_checkpoint(tmp_path / "epoch0.ckpt", cfg=first.cfg)
    assert max_diff(weights(loaded.teacher), weights(first.teacher)) == 0.0


def test_two_processes_match_plain_loop(tmp_path, data):
    """torchrun, 2 ranks x 4 images on gloo: Lightning's DDP and the plain loop's DDP give the same
    per-step losses (means over ranks), and the ranks stay identical."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "tests/helpers/lightning_worker.py", *TINY, f"data_path={data}", f"output_dir={out}",
           "batch_size_per_gpu=4", "drop_path_rate=0.0"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert_same_steps(r0["history"], plain_rows(out / "plain"))
    assert r0["history"] == r1["history"]  # logged values are means over the ranks
    for part in ("student", "teacher", "loss"):
        assert max_diff(r0["lightning"][part], r1["lightning"][part]) == 0.0, part  # DDP kept the ranks equal
        assert max_diff(r0["lightning"][part], r0["plain"][part]) == 0.0, part


@pytest.mark.parametrize(
    "trainer_kw, message",
    [({"max_epochs": None, "max_steps": 3}, "max_epochs"), ({"max_epochs": 5}, "max_epochs"),
     ({"precision": "bf16-mixed"}, "cfg.precision")],
)  # fmt: skip
def test_trainer_settings_that_change_the_step_are_refused(tmp_path, data, trainer_kw, message, one_thread):
    with pytest.raises(ConfigError, match=message):
        fit_lightning(cfg_for(tmp_path, data, "batch_size_per_gpu=8"), **trainer_kw)


def test_batch_norm_becomes_sync_batch_norm():
    from pretrain.training.lightning import sync_batchnorm

    plain = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    assert sync_batchnorm(plain) == (plain, False)
    bn = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    weight = bn[1].weight
    converted, had = sync_batchnorm(bn)
    assert had and isinstance(converted[1], torch.nn.SyncBatchNorm) and converted[1].weight is weight


def test_core_imports_without_lightning(monkeypatch):
    """Only pretrain/training/lightning.py imports lightning, and without it the error says what to install."""
    for path in (ROOT / "pretrain").rglob("*.py"):
        if path.name != "lightning.py":
            tops = {a.name.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.Import) for a in n.names}  # fmt: skip
            tops |= {n.module.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                     if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}  # fmt: skip
            assert "lightning" not in tops, path
    monkeypatch.setitem(sys.modules, "lightning", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "pretrain.training.lightning", raising=False)
    with pytest.raises(ImportError, match=r"ibot-suite\[lightning\]"):
        importlib.import_module("pretrain.training.lightning")


def test_missing_lightning_is_a_missing_extra(monkeypatch):
    from plumbing import MissingExtraError

    monkeypatch.setitem(sys.modules, "lightning", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "pretrain.training.lightning", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'ibot-suite\[lightning\]'"):
        importlib.import_module("pretrain.training.lightning")
