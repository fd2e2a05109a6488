"""Run folders never mix two runs: locks, resume identities, moving an old run aside, leftover temp files,
a full disk. Pre-training here; the evaluations' resumes use the same core helpers."""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pretrain.checkpoints.saving as saving_mod
from plumbing import (
    RunFolderError,
    RunIdentity,
    RunLock,
    check_resume,
    disk_full_message,
    move_aside,
    remove_stale_temps,
    write_identity,
)
from pretrain import load_backbone
from pretrain.__main__ import main as cli_main
from tests.helpers.worlds import write_blobs
from tests.test_pretrain_loop import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_blobs(tmp_path_factory.mktemp("world") / "train", n_per_class=8)


def _args(out: Path, data: Path, *extra: str) -> list[str]:
    return [*TINY, f"data_path={data}", f"output_dir={out}", "epochs=1", *extra]


def test_incompatible_resume_is_refused_and_config_untouched(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert cli_main(_args(out, data)) == 0
    config = (out / "config.yaml").read_text()
    capsys.readouterr()
    assert cli_main(_args(out, data, "out_dim=32", "epochs=2")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pretrain: error:") and "\n" not in err and "out_dim" in err
    assert "resume=false" in err and "new output_dir" in err
    assert (out / "config.yaml").read_text() == config  # nothing rewritten


def test_compatible_change_is_allowed_and_logged(tmp_path, data, caplog):
    out = tmp_path / "run"
    assert cli_main(_args(out, data)) == 0
    with caplog.at_level("WARNING"):
        assert cli_main(_args(out, data, "epochs=2")) == 0
    assert "epochs: 1 -> 2" in caplog.text
    assert json.loads((out / "results.json").read_text())["epoch"] == 2


def test_resume_false_moves_the_old_run_aside(tmp_path, data):
    out = tmp_path / "run"
    assert cli_main(_args(out, data)) == 0
    first = load_backbone(out / "backbone.pth")[0].state_dict()
    assert cli_main(_args(out, data, "out_dim=32", "resume=false")) == 0
    aside = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and (aside[0] / "checkpoint.pth").is_file()
    kept = load_backbone(aside[0] / "backbone.pth")[0].state_dict()
    assert all(torch.equal(first[k], kept[k]) for k in first)
    assert torch.load(out / "checkpoint.pth", weights_only=True)["config"]["out_dim"] == 32


def test_check_resume_names_weights_dataset_and_keys(tmp_path):
    write_identity(tmp_path, RunIdentity(weights={"backbone": "aaa"}, dataset="d1", config={"lr": 0.1, "epochs": 5}))
    same = RunIdentity(weights={"backbone": "aaa"}, dataset="d1", config={"lr": 0.1, "epochs": 9})
    assert check_resume(tmp_path, same, compatible={"epochs"}) == ["epochs: 5 -> 9"]
    with pytest.raises(RunFolderError, match="backbone weights"):
        check_resume(tmp_path, RunIdentity(weights={"backbone": "bbb"}, dataset="d1", config={"lr": 0.1}), {"epochs"})
    with pytest.raises(RunFolderError, match="dataset"):
        check_resume(tmp_path, RunIdentity(weights={"backbone": "aaa"}, dataset="d2", config={"lr": 0.1}), {"epochs"})
    with pytest.raises(RunFolderError, match="lr=0.1 there, 0.2 now"):
        check_resume(tmp_path, RunIdentity(weights={"backbone": "aaa"}, dataset="d1", config={"lr": 0.2}), {"epochs"})


def test_lock_refuses_a_second_process_and_takes_over_a_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from plumbing import RunLock\n"
         f"with RunLock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"in use by pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock file is still there, and is taken over
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid
    with RunLock(tmp_path) as lock:
        assert lock.held and json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_second_pretraining_on_a_locked_folder_is_refused(tmp_path, data, capsys):
    out = tmp_path / "run"
    with RunLock(out):  # another run holds the folder (this process: re-entrant, so fake a foreign pid)
        (out / ".lock").write_text(json.dumps({"pid": 1, "host": os.uname().nodename, "started": "earlier"}))
        assert cli_main(_args(out, data)) == 2
    err = capsys.readouterr().err
    assert "is in use by pid 1" in err and not (out / "checkpoint.pth").exists()


def test_leftover_temp_files_are_removed_on_the_next_start(tmp_path, data):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.pth.abc123.tmp").write_bytes(b"half a checkpoint")
    assert remove_stale_temps(tmp_path / "missing") == []
    assert cli_main(_args(out, data)) == 0
    assert not list(out.glob(".*.tmp"))


def test_move_aside_keeps_the_lock_and_earlier_runs(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / ".lock").write_text("{}")
    first = move_aside(tmp_path)
    (tmp_path / "b.txt").write_text("b")
    time.sleep(0.01)
    second = move_aside(tmp_path)
    assert (first / "a.txt").is_file() and (second / "b.txt").is_file() and first != second
    assert (tmp_path / ".lock").is_file() and move_aside(tmp_path) is None


def test_output_dir_that_is_a_file_is_refused_before_work(tmp_path, data, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert cli_main(_args(target, data)) == 2
    err = capsys.readouterr().err
    assert "is an existing file" in err and target.read_text() == "x"


def test_disk_full_is_one_line_and_the_previous_checkpoint_loads(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "run"
    assert cli_main(_args(out, data)) == 0
    before = torch.load(out / "checkpoint.pth", weights_only=True)["epoch"]
    real_save = torch.save

    def full(obj, f, *a, **k):  # torch's zip writer wraps the OSError in a RuntimeError
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "checkpoint.pth"))
        except OSError as e:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from e

    monkeypatch.setattr(saving_mod.torch, "save", full)
    capsys.readouterr()
    assert cli_main(_args(out, data, "epochs=2")) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar's lines
    assert err.startswith("pretrain: error: disk full writing") and "MiB free" in err and "\n" not in err
    monkeypatch.setattr(saving_mod.torch, "save", real_save)
    assert torch.load(out / "checkpoint.pth", weights_only=True)["epoch"] == before == 1
    assert not list(out.glob(".*.tmp"))
    assert disk_full_message(ValueError("other")) is None
