"""Benchmark tools that a researcher runs: the learning-recipe sweep, its world options, the supervised reference."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from demo_world import write_world
from plumbing import ConfigError, parse_config
from pretrain import TrainConfig, build_models

REPO = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_learning_sweep_runs_compares_and_continues(tmp_path, capsys):
    """Two recipes on one shared (tiny) world, written from the sweep's world options: a table and
    sweep.json with each run's k-NN curve; a bad recipe is reported, not fatal; a second call reuses
    finished runs instead of training again."""
    out = tmp_path / "sweep"
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        "common: [num_classes=3, n_train=8, n_val=4, epochs=2, export_every=1, minutes=5, warmup_epochs=1,"
        " warmup_teacher_temp_epochs=1, depth=1,"
        " batch_size_per_gpu=8, local_crops_number=0, num_workers=0, out_dim=64, patch_out_dim=64]\n"
        "runs:\n  a: [lr=0.001]\n  b: [momentum_teacher=0.99]\n  broken: [no_such_key=1]\n"
    )
    sweep = _module("learning_sweep")
    rows = {r["name"]: r for r in sweep.main([f"sweep={spec}", f"out={out}", "parallel=2", "threads=1"])}
    for name in "ab":
        r = rows[name]
        assert [c["epoch"] for c in r["curve"]] == [0, 1, 2, 2]  # random init, two exports, the final one
        assert r["steps"] == 6  # 24 train images / batch 8 = 3 steps per epoch
        assert r["gain"] == round(r["final"] - r["random_init"], 2)
        assert r["random_init"] == rows["a"]["random_init"]  # same architecture, same world, same seed
    assert "exit 2" in rows["broken"]["error"] and "no_such_key" in (out / "broken.log").read_text()
    assert json.loads((out / "sweep.json").read_text())[0]["name"] == "a"
    assert (out / "sweep.png").stat().st_size > 0
    table = capsys.readouterr().out
    assert "broken" in table and "exit 2" in table

    before = (out / "a" / "results.json").stat().st_mtime_ns
    again = {r["name"]: r for r in sweep.main([f"sweep={spec}", f"out={out}", "parallel=2", "threads=1"])}
    assert (out / "a" / "results.json").stat().st_mtime_ns == before  # finished runs are not run again
    assert again["a"]["final"] == rows["a"]["final"]


def test_learning_world_options_refuse_a_different_world(tmp_path):
    """World options (`object_scale=`, `min_contrast=`, ...) change the benchmark world; a world folder
    written with other values, or not as the benchmark world, is refused (a run must not be scored on a
    world it did not ask for)."""
    learning = _module("learning")
    world = tmp_path / "world"
    world.mkdir()
    config = {**learning.WORLD, "image_size": 64, "object_scale": [0.3, 0.7], "min_contrast": 0.2}
    (world / "world.json").write_text(json.dumps({"config": config}))
    learning.ensure_world(world, 64)  # the same world: reused as it is
    learning.ensure_world(world, **learning.world_options({"object_scale": "0.3,0.7", "min_contrast": "0.2"}))
    for key, value in (("object_scale", (0.5, 0.9)), ("min_contrast", 0.35), ("num_classes", 4), ("n_val", 100)):
        with pytest.raises(SystemExit, match=f"different world.*{key}"):
            learning.ensure_world(world, 64, **{key: value})
    with pytest.raises(SystemExit, match="silhouette=yes: expected true or false"):
        learning.world_options({"silhouette": "yes"})
    (world / "world.json").write_text(json.dumps({"config": {**config, "grayscale": False}}))
    with pytest.raises(SystemExit, match="different world.*grayscale"):  # not the benchmark's world
        learning.ensure_world(world, 64)


def test_supervised_reference_starts_from_the_learning_benchmarks_random_init(tmp_path):
    """`bench/supervised.py` trains the recipe's backbone with labels: its first row is the same random-init
    backbone that `bench/learning.py` scores (same k-NN), it evaluates every `eval_every` steps and at the
    end, and a missing world is refused with what to do."""
    world = tmp_path / "world"
    write_world(world, seed=0, progress=False, num_classes=3, n_train=8, n_val=4, photo_fraction=0.0,
                grayscale=True, coco=False, ade=False, backgrounds=False)  # fmt: skip
    sup = _module("supervised")
    tiny = ["depth=1", "batch_size_per_gpu=8", "out_dim=64", "patch_out_dim=64"]
    res = sup.main([f"world={world}", f"out={tmp_path / 'sup'}", "max_steps=5", "eval_every=2", *tiny])
    assert [r["step"] for r in res["curve"]] == [0, 2, 4, 5]
    assert json.loads((tmp_path / "sup" / "results.json").read_text())["curve"] == res["curve"]

    learning = _module("learning")
    cfg = parse_config(TrainConfig, ["--config", str(learning.RECIPE), f"data_path={world}", *tiny])
    torch.manual_seed(cfg.seed)
    assert res["curve"][0]["knn_top1"] == learning.knn_top1(build_models(cfg)[1].backbone, world)

    with pytest.raises(SystemExit, match="no world.*bench/learning.py"):
        sup.main([f"world={tmp_path / 'nowhere'}"])


def test_dense_seeds_compares_two_backbones_over_worlds_and_reuses_finished_runs(tmp_path, capsys):
    """bench/dense_seeds.py runs the demo's linear-head config for two backbones on two worlds: each score is
    the run folder's mIoU, the table's margin their difference and the spread max - min; a second call reads
    the finished runs instead of training again, a changed key trains new ones, a missing world is refused."""
    from demo.config import WORLD
    from pretrain import export_backbone

    worlds, tiny = [tmp_path / "w0", tmp_path / "w1"], dict(n_train=2, n_val=2, coco_n_train=2, coco_n_val=2)
    for seed, world in enumerate(worlds):
        write_world(world, **{**WORLD, **tiny, "seed": seed, "ade_n_train": 3, "ade_n_val": 2, "backgrounds": False,
                              "progress": False})  # fmt: skip
    learning = _module("learning")
    cfg = parse_config(TrainConfig, ["--config", str(learning.RECIPE), "data_path=unused"])
    torch.manual_seed(0)
    export_backbone(build_models(cfg)[1].backbone, tmp_path / "random.pth")
    models = f"models={REPO / 'demo/reference/vit_tiny_silhouette.pth'},{tmp_path / 'random.pth'}"
    dense = _module("dense_seeds")
    args = ["task=linear", f"worlds={worlds[0]},{worlds[1]}", models, f"out={tmp_path / 'out'}", "seg_linear_iters=2"]
    rows = dense.main(args)
    table = capsys.readouterr().out
    runs = sorted((tmp_path / "out" / "linear").glob("*/results.json"))
    assert len(runs) == 4  # one folder per (world, model)
    names = {"vit_tiny_silhouette.pth": "0_vit_tiny_silhouette", "random.pth": "1_random"}
    by_world = {r["world"]: r["scores"] for r in rows}
    for p in runs:  # each table score is its run folder's result
        identity, result = json.loads((p.parent / "identity.json").read_text()), json.loads(p.read_text())
        assert result["steps_done"] == 2
        assert by_world[identity["world"]][names[Path(identity["model"]).name]]["mIoU"] == result["mIoU"]
    scores = [[by_world[str(w)][n]["mIoU"] for n in names.values()] for w in worlds]
    for w, (a, b) in zip(worlds, scores, strict=True):
        assert f"  {w} | {a:.1f} | {b:.1f} | {a - b:+.1f}" in table.splitlines()
    spread = max(a for a, _ in scores) - min(a for a, _ in scores)
    assert f"spread (max - min) | {spread:.1f} |" in table
    assert json.loads((tmp_path / "out" / "linear.json").read_text())["rows"] == rows

    before = [p.stat().st_mtime_ns for p in runs]
    assert dense.main(args) == rows  # read again, not retrained
    assert [p.stat().st_mtime_ns for p in runs] == before
    capsys.readouterr()
    dense.main([*args[:1], f"worlds={worlds[0]}", *args[2:], "lr=2e-2"])
    assert "a spread needs two or more worlds" in capsys.readouterr().out  # no verdict from one world
    changed = sorted((tmp_path / "out" / "linear").glob("*/results.json"))
    assert len(changed) == 6 and {json.loads(p.read_text())["lr"] for p in changed} == {0.01, 0.02}
    with pytest.raises(ConfigError, match="nowhere/config.yaml"):
        dense.main([*args[:1], f"worlds={tmp_path / 'nowhere'}", *args[2:]])
    with pytest.raises(ConfigError, match=r"^unknown key .lrr. \(command line\); did you mean lr\?"):  # before any run
        dense.main([*args, "lrr=0.1", f"out={tmp_path / 'refused'}"])
    assert not (tmp_path / "refused").exists()
    with pytest.raises(ConfigError, match="'linear': arguments are KEY=VALUE"):
        dense.main(["linear", *args[1:]])
