"""Issue 32 (part A): what hostile probes found in the evaluations and the plumbing, one test each.

Items: 4 (a command writes into another command's run), 5 (non-finite weights or features), 6 (a typo'd
train_list entry), 7 (phantom video objects), 10 (one-class datasets), 11 (malformed YAML), 13 (numeric
ranges and NaN), 16 (an empty lock), 17 (the disk-full line).
"""

import errno
import json
import logging
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import plumbing.results as results_mod
import plumbing.runfolder as runfolder_mod
import pretrain
from eval_knn.__main__ import main as knn_main
from eval_knn.unsup import main as unsup_main
from eval_linear import LinearConfig
from eval_linear.__main__ import main as linear_main
from eval_linear.logreg import main as logreg_main
from evalkit import extract_features, image_splits
from plumbing import (
    ConfigError,
    DatasetError,
    NonFiniteError,
    RunIdentity,
    RunLock,
    UserError,
    atomic_write,
    check_range,
    disk_full_message,
    parse_config,
    write_identity,
    write_results,
)
from pretrain import TrainConfig, export_backbone
from retrieval.__main__ import main as retrieval_main
from retrieval.copydays import main as copydays_main
from tests.helpers.eval_world import export_tiny, tiny_backbone, write_split_world
from video_seg.__main__ import main as video_main

FAST = ["image_size=32", "batch_size_per_gpu=8", "num_workers=0", "progress=false", "device=cpu"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("probes_world")
    write_split_world(root / "data", n_train=4, n_val=2)
    export_tiny(root / "tiny.pth")
    return root


def _knn(world: Path, out: Path, *extra: str) -> int:
    return knn_main([f"pretrained={world / 'tiny.pth'}", f"data_path={world / 'data'}", f"output_dir={out}",
                     "ks=[3]", *FAST, *extra])  # fmt: skip


def _one_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{prog}: error: ") and "\n" not in err, err
    return err


# ----------------------------------------------------------------- 4: no command writes into another's run
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_an_evaluation_refuses_a_pretraining_run_folder(world, tmp_path, capsys):
    run = tmp_path / "pretrain_run"
    run.mkdir()
    (run / "config.yaml").write_text("arch: vit_small\n")
    (run / "checkpoint.pth").write_bytes(b"weights")
    (run / "log.jsonl").write_text('{"step": 0}\n')
    write_results({"epoch": 1, "completed": True}, run, prog="pretrain", cfg=TrainConfig())
    before = _snapshot(run)
    assert _knn(world, run) == 2
    err = _one_line(capsys, "eval_knn")
    assert "pretrain" in err and "another command" in err
    assert _snapshot(run) == before and not (run / ".lock").exists()


def test_an_evaluation_refuses_an_older_pretraining_folder_without_provenance(world, tmp_path, capsys):
    run = tmp_path / "old_run"
    run.mkdir()
    (run / "checkpoint.pth").write_bytes(b"weights")
    (run / "log.jsonl").write_text('{"step": 0}\n')
    (run / "config.yaml").write_text("arch: vit_small\n")
    before = _snapshot(run)
    assert _knn(world, run) == 2
    assert "pre-training run" in _one_line(capsys, "eval_knn")
    assert _snapshot(run) == before


def test_an_evaluation_refuses_a_folder_whose_identity_another_command_wrote(world, tmp_path, capsys):
    run = tmp_path / "linear_run"  # an eval_linear run killed before its results.json
    write_identity(run, RunIdentity(weights={"backbone": "abc"}, dataset="d", config=vars(LinearConfig())))
    before = _snapshot(run)
    assert _knn(world, run) == 2
    assert "run_identity.json" in _one_line(capsys, "eval_knn")
    assert _snapshot(run) == before


def test_a_command_reruns_in_its_own_folder_but_not_in_another_evaluations(world, tmp_path, capsys):
    out = tmp_path / "knn"
    assert _knn(world, out) == 0
    assert _knn(world, out) == 0  # the same command again: allowed (its results are replaced)
    capsys.readouterr()
    before = _snapshot(out)
    argv = [f"pretrained={world / 'tiny.pth'}", f"data_path={world / 'data'}", f"output_dir={out}", *FAST]
    assert logreg_main(argv) == 2
    assert "eval_knn" in _one_line(capsys, "eval_linear.logreg")
    assert _snapshot(out) == before


# ---------------------------------------------------------------------- 5: non-finite weights or features
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_stop_the_run_naming_the_tensor(world, tmp_path, capsys, bad):
    backbone = tiny_backbone()
    with torch.no_grad():
        backbone.blocks[1].mlp.fc1.weight[3, 5] = bad
    export_backbone(backbone, tmp_path / "broken.pth")
    out = tmp_path / "out"
    argv = [f"pretrained={tmp_path / 'broken.pth'}", f"data_path={world / 'data'}", f"output_dir={out}", "ks=[3]"]
    assert knn_main([*argv, *FAST]) == 2
    err = _one_line(capsys, "eval_knn")
    assert "blocks.1.mlp.fc1.weight" in err and "NaN" in err
    assert not out.exists()


class _Numbers(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        return torch.full((2,), float(i)), 0, i


def test_non_finite_features_stop_the_extraction_naming_the_first_bad_batch():
    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 6, torch.full_like(x, float("nan")), x)  # images 6.. give NaN

    with pytest.raises(NonFiniteError, match=r"batch 2 .*image 6") as caught:
        extract_features(fn, _Numbers(), batch_size=3, progress=False)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, FloatingPointError)
    features, _ = extract_features(lambda x: x, _Numbers(), batch_size=3, progress=False)
    assert torch.isfinite(features).all()


# --------------------------------------------------------------------------- 6: a typo'd train_list entry
def test_a_listed_path_that_does_not_exist_is_an_error_naming_it(world, tmp_path, capsys):
    listing = tmp_path / "train_list.txt"
    listing.write_text("red_rows/000.png\nred_rowz/001.png\ngren_cols/002.png\nblue_checks/003.png\n")
    with pytest.raises(DatasetError, match=r"2 listed.*red_rowz/001\.png.*gren_cols/002\.png"):
        image_splits(world / "data", None, None, train_list=str(listing))
    assert _knn(world, tmp_path / "out", f"train_list={listing}") == 2
    assert "red_rowz/001.png" in _one_line(capsys, "eval_knn")
    listing.write_text("red_rows/000.png\ngreen_cols/001.png\nblue_checks/003.png 2\n")  # a valid list
    train, _ = image_splits(world / "data", None, None, train_list=str(listing))
    assert [p.relative_to(world / "data" / "train").as_posix() for p, _ in train.samples] == [
        "red_rows/000.png", "green_cols/001.png", "blue_checks/003.png"]  # fmt: skip


# ------------------------------------------------------------------------------- 10: one-class datasets
def _one_class_world(tmp_path: Path) -> Path:
    data = write_split_world(tmp_path / "data", n_train=3, n_val=2)
    for split in ("train", "val"):
        for name in ("green_cols", "blue_checks"):
            shutil.rmtree(data / split / name)
    return data


@pytest.mark.parametrize("main, prog", [(knn_main, "eval_knn"), (linear_main, "eval_linear")])
def test_one_class_datasets_are_refused(world, tmp_path, capsys, main, prog):
    data = _one_class_world(tmp_path)
    out = tmp_path / "out"
    argv = [f"pretrained={world / 'tiny.pth'}", f"data_path={data}", f"output_dir={out}", *FAST, "epochs=1"]
    assert main(argv if prog == "eval_linear" else [*argv[:-1], "ks=[3]"]) == 2
    assert "at least 2 classes" in _one_line(capsys, prog)
    assert not out.exists()


def test_a_train_list_of_one_class_is_refused(world, tmp_path, capsys):
    listing = tmp_path / "one_class.txt"
    listing.write_text("red_rows/000.png\nred_rows/001.png\n")
    assert _knn(world, tmp_path / "out", f"train_list={listing}") == 2
    assert "at least 2 classes" in _one_line(capsys, "eval_knn")


# ------------------------------------------------------------------------------------ 11: malformed YAML
def test_malformed_yaml_is_one_line_naming_the_file_and_line(world, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ks: [10\ntemperature: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*line 2"):
        parse_config(LinearConfig, ["--config", str(bad)])
    assert knn_main(["--config", str(bad), f"output_dir={tmp_path / 'o'}"]) == 2
    err = _one_line(capsys, "eval_knn")
    assert str(bad) in err and "line 2" in err
    listing = tmp_path / "list.yaml"
    listing.write_text("- ks\n- temperature\n")
    assert video_main(["--config", str(listing)]) == 2
    assert "list.yaml" in _one_line(capsys, "video_seg")


# ----------------------------------------------------------------- 13: numeric ranges, checked up front
RANGE_CASES = [
    (knn_main, "eval_knn", "temperature=nan", "temperature"),
    (knn_main, "eval_knn", "temperature=inf", "temperature"),
    (knn_main, "eval_knn", "ks=[5,0]", "ks"),
    (knn_main, "eval_knn", "image_size=0", "image_size"),
    (knn_main, "eval_knn", "seed=-1", "seed"),
    (unsup_main, "eval_knn.unsup", "image_size=-1", "image_size"),
    (linear_main, "eval_linear", "image_size=-5", "image_size"),
    (linear_main, "eval_linear", "lrs=[0.1,nan]", "lrs"),
    (linear_main, "eval_linear", "wds=[nan]", "wds"),
    (linear_main, "eval_linear", "momentum=nan", "momentum"),
    (linear_main, "eval_linear", "momentum=1.5", "momentum"),
    (linear_main, "eval_linear", "n_last_blocks=0", "n_last_blocks"),
    (logreg_main, "eval_linear.logreg", "lambdas=[nan]", "lambdas"),
    (logreg_main, "eval_linear.logreg", "tol=nan", "tol"),
    (retrieval_main, "retrieval", "image_size=0", "image_size"),
    (retrieval_main, "retrieval", "ks=[0]", "ks"),
    (copydays_main, "retrieval.copydays", "top_k=0", "top_k"),
    (video_main, "video_seg", "temperature=nan", "temperature"),
    (video_main, "video_seg", "short_side=0", "short_side"),
    (video_main, "video_seg", "n_last_frames=-1", "n_last_frames"),
]


@pytest.mark.parametrize("main, prog, arg, key", RANGE_CASES, ids=[f"{c[1]}:{c[2]}" for c in RANGE_CASES])
def test_numeric_ranges_are_checked_before_any_work(tmp_path, capsys, monkeypatch, main, prog, arg, key):
    def never(*a, **k):
        raise AssertionError("the backbone was loaded: the range check came too late")

    monkeypatch.setattr(pretrain, "load_backbone", never)
    (tmp_path / "w.pth").write_bytes(b"never read")
    out = tmp_path / "out"
    assert main([f"pretrained={tmp_path / 'w.pth'}", f"data_path={tmp_path}", f"output_dir={out}", arg]) == 2
    err = _one_line(capsys, prog)
    assert f"{key} must" in err, err
    assert not out.exists()


def test_check_range_reads_numbers_lists_and_optional_values():
    class Cfg:
        lr, lrs, ratio, n, none, flag = 0.1, [0.1, 1.0], 0.5, 3, None, True

    cfg = Cfg()
    check_range(cfg, "lr", gt=0)
    check_range(cfg, ("lrs", "ratio"), ge=0, le=1)
    check_range(cfg, "n", ge=1)
    check_range(cfg, "none", gt=0)  # None: an optional key left unset
    cases = [
        (dict(lr=float("nan")), "lr", dict(gt=0), "lr must be a finite number > 0, got nan"),
        (dict(lr=0.0), "lr", dict(gt=0), "lr must be > 0, got 0.0"),
        (dict(ratio=1.5), "ratio", dict(ge=0, le=1), "ratio must be in [0, 1], got 1.5"),
        (dict(lrs=[0.1, -1.0]), "lrs", dict(gt=0), "lrs must each be > 0, got [0.1, -1.0]"),
        (dict(n=0), "n", dict(ge=1), "n must be >= 1, got 0"),
        (dict(n=2), "n", dict(lt=2), "n must be < 2, got 2"),
        (dict(flag="x"), "flag", dict(ge=0), "flag must be a number, got 'x'"),
    ]
    for values, key, bounds, message in cases:
        bad = Cfg()
        for k, v in values.items():
            setattr(bad, k, v)
        with pytest.raises(ConfigError) as caught:
            check_range(bad, key, **bounds)
        assert str(caught.value) == message


# ----------------------------------------------------------------- 7: phantom objects in video_seg
def test_a_stray_id_in_the_first_annotation_is_refused_not_scored(tmp_path, capsys):
    from demo_world import write_world
    from video_seg import read_indexed_png, write_indexed_png

    write_world(tmp_path / "w", seed=0, video_count=1, video_frames=4, classification=False, backgrounds=False,
                coco=False, ade=False, video=True, progress=False)  # fmt: skip
    davis = tmp_path / "w" / "video"
    first = davis / "Annotations" / "480p" / "shapes000" / "00000.png"
    ids = read_indexed_png(first)
    objects = sorted(set(np.unique(ids).tolist()) - {0, 255})
    ids[0, 0] = 200
    write_indexed_png(first, ids)
    out = tmp_path / "out"
    argv = [f"pretrained={export_tiny(tmp_path / 'tiny.pth')}", f"data_path={davis}", f"output_dir={out}"]
    assert video_main([*argv, "short_side=72", "device=cpu", "num_workers=0", "progress=false"]) == 2
    err = _one_line(capsys, "video_seg")
    assert "00000.png" in err and "200 (1 pixel)" in err and str(objects) in err.replace(", 200]", "]")
    assert not (out / "results.json").exists()


def test_only_the_objects_present_in_frame_0_are_scored():
    from video_seg import object_ids

    ann = np.zeros((8, 8), np.uint8)
    ann[:2, :2], ann[4:, 4:], ann[0, 7] = 1, 2, 255
    assert object_ids(ann, "a.png") == [1, 2]
    assert object_ids(np.zeros((4, 4), np.uint8), "empty.png") == []
    ann[7, 0] = 9
    with pytest.raises(DatasetError, match=r"a\.png.*\[1, 2, 9\].*9 \(1 pixel\)"):
        object_ids(ann, "a.png")


# ------------------------------------------------------------------------------------- 16: the run lock
def test_an_empty_or_unreadable_lock_is_stale(tmp_path, caplog):
    for content in ("", "{not json"):
        (tmp_path / ".lock").write_text(content)
        with caplog.at_level(logging.WARNING), RunLock(tmp_path) as lock:
            assert lock.held and json.loads((tmp_path / ".lock").read_text())["pid"] > 0
        assert "empty or unreadable" in caplog.text
        assert not (tmp_path / ".lock").exists()
        caplog.clear()


def test_a_lock_that_cannot_be_written_leaves_no_lock(tmp_path, monkeypatch):
    import os

    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, *a):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    with monkeypatch.context() as m:
        m.setattr(os, "fdopen", lambda *a, **k: Full(real(*a, **k)))
        with pytest.raises(OSError) as caught:
            RunLock(tmp_path).acquire()
    assert caught.value.errno == errno.ENOSPC and f"writing {tmp_path / '.lock'} (" in disk_full_message(caught.value)
    assert not (tmp_path / ".lock").exists() and not list(tmp_path.glob(".*.tmp"))
    with RunLock(tmp_path) as lock:  # the disk has room again: nothing blocks the folder
        assert lock.held


def test_a_file_system_without_hard_links_still_locks(tmp_path, monkeypatch):
    import os

    def no_links(*a):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with RunLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(UserError, match="in use by pid"):
            other = RunLock(tmp_path)
            monkeypatch.setattr(other, "owner", lambda: {"pid": 1, "host": "elsewhere"})
            other.acquire()
    assert not (tmp_path / ".lock").exists() and not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------------------- 17: the disk-full line
Usage = namedtuple("Usage", "total used free")


def _full(f):
    raise OSError(errno.ENOSPC, "No space left on device")  # a failed write() carries no file name


def test_disk_full_names_the_file_and_the_free_space_of_its_disk(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(runfolder_mod.shutil, "disk_usage", lambda p: asked.append(Path(p)) or Usage(1, 1, 25 * 2**20))
    target = tmp_path / "deep" / "results.json"
    with pytest.raises(OSError) as caught:
        atomic_write(target, _full)
    line = disk_full_message(caught.value)
    assert line == f"disk full writing {target} (25 MiB free there): free space or choose another output_dir"
    assert asked == [target.parent] and not list(target.parent.glob(".*.tmp"))
    temp_name = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".checkpoint.pth.k2j4.tmp"))
    assert f"writing {tmp_path / 'checkpoint.pth'} " in disk_full_message(temp_name)
    assert "writing a file" not in disk_full_message(OSError(errno.ENOSPC, "No space left on device"))


def test_a_full_disk_is_exit_1_and_one_line_in_an_evaluation(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results_mod, "atomic_write_text", lambda path, text: atomic_write(path, _full))
    out = tmp_path / "out"
    assert _knn(world, out) == 1
    err = _one_line(capsys, "eval_knn")
    assert f"disk full writing {out / 'results.json'} (" in err and "MiB free there" in err
