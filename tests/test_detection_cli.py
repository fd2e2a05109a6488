"""Detection's command-line interface: the COCO 2017 data_path layout, TensorBoard from the CLI, --help
without torch and with the common keys, user errors before any work (model tests: test_detection.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import plumbing
from detection import (
    DetectionConfig,
    DetectorEvalConfig,
)
from detection import __main__ as det_main
from detection import eval as det_eval
from evalkit import COMMON_KEYS
from tests.test_detection import ROOT, config, make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return make_world(tmp_path_factory)


# ------------------------------------------------------------------------------- interface
def coco2017(world, root: Path) -> Path:
    """The test images in COCO 2017's layout (train = val), as links."""
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        (root / f"{split}2017").symlink_to(world["images"], target_is_directory=True)
        (root / "annotations" / f"instances_{split}2017.json").symlink_to(world["ann"])
    return root


def test_data_path_is_the_coco2017_layout(world, tmp_path):
    cfg = DetectionConfig(data_path="/data/coco")
    assert cfg.train_split() == ("/data/coco/train2017", "/data/coco/annotations/instances_train2017.json")
    assert cfg.val_split() == ("/data/coco/val2017", "/data/coco/annotations/instances_val2017.json")
    override = dataclasses.replace(cfg, val_annotations="/other/val.json")
    assert override.val_split() == ("/data/coco/val2017", "/other/val.json")
    stored = {"data_path": "/data/coco", "val_images": "", "val_annotations": ""}
    assert DetectorEvalConfig().val_split(stored) == cfg.val_split()
    explicit = DetectorEvalConfig(data_path="/x").val_split(stored)
    assert explicit == ("/x/val2017", "/x/annotations/instances_val2017.json")
    with pytest.raises(plumbing.ConfigError, match="data_path"):
        DetectionConfig().train_split()
    root = coco2017(world, tmp_path / "coco")
    DetectionConfig(data_path=str(root)).check()  # every derived path exists
    with pytest.raises(plumbing.ConfigError, match="train2017"):
        DetectionConfig(data_path=str(tmp_path)).check()


def test_cli_on_data_path_writes_tensorboard(world, tmp_path):
    """`python -m detection` through the shell with data_path only; TensorBoard gets losses, lr and AP."""
    base = config(world, tmp_path / "unused", epochs=1, lr_steps=[], warmup_iters=1, max_val_images=1)
    base = dataclasses.replace(base, train_images="", train_annotations="", val_images="", val_annotations="")
    recipe = plumbing.save_config(base, tmp_path / "recipe")
    out = tmp_path / "run"
    argv = ["--config", str(recipe), f"data_path={coco2017(world, tmp_path / 'coco')}", f"output_dir={out}"]
    assert det_main.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["backbone"]["arch"] == "vit_tiny" and len(results["train"]) == 1
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/loss_classifier", "train/loss_mask", "val/bbox_AP", "val/segm_AP"} <= tags
    assert [e.step for e in acc.Scalars("train/lr")] == [1, 2, 3]  # one per iteration (3 images, 1 per step)


@pytest.mark.parametrize("prog", ["detection", "detection.eval"])
def test_help_is_fast_and_lists_the_common_keys(prog):
    """`--help` answers within 2 s without importing torch, and lists every common key with its default."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{prog!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_module({prog!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert "TORCH False" in done.stdout, "--help imported torch"
    for key in COMMON_KEYS:
        assert f"\n  {key} = " in done.stdout, key
    assert f"output_dir = 'runs/{prog}'" in done.stdout
    assert elapsed < 2.0, f"{prog} --help took {elapsed:.2f} s"


@pytest.mark.parametrize("prog", ["detection", "detection.eval"])
def test_user_errors_stop_before_any_work(world, tmp_path, capsys, prog):
    """batch_size_per_gpu=0 and an output_dir that is a file: exit 2, one line, nothing written."""
    main = det_main.main if prog == "detection" else det_eval.main
    first = f"pretrained={world['backbone']}" if prog == "detection" else f"detector={world['backbone']}"
    out = tmp_path / "out"
    assert main([first, f"output_dir={out}", "batch_size_per_gpu=0"]) == 2
    assert not out.exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main([first, f"output_dir={a_file}"]) == 2
    assert a_file.read_text() == "x"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == f"{prog}: error: batch_size_per_gpu must be >= 1, got 0"
    assert err[1].startswith(f"{prog}: error: output_dir=") and "existing file" in err[1]
