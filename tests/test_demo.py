"""The demo: its stages end to end on a tiny budget, the schedule sized to a budget, its user errors."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from demo import DemoConfig, size_schedule
from demo.__main__ import main
from demo.schedule import planned_seconds
from demo.summary import ROWS, Row, verdict
from demo.work import pretraining_threads
from plumbing import auto_threads

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("live", "reference", "random_init")
# 8 classes x 8 train / 4 val images, 8 + 4 scenes per dense set; the recipe's batches of 16 (4 steps an epoch)
TINY_WORLD = ["world.n_train=8", "world.n_val=4", "world.coco_n_train=8", "world.coco_n_val=4", "world.ade_n_train=8",
              "world.ade_n_val=4"]  # fmt: skip
TINY = ["minutes=0.3", "eval_scale=0.02", "threads=1", *TINY_WORLD]


@pytest.mark.parametrize(
    "budget_s, step_s, iters, overhead_s, knn_s",
    [(420.0, 0.93, 25, 0.7, 4.0), (420.0, 2.7, 25, 0.7, 12.0), (60.0, 0.1, 4, 0.2, 0.5), (3.0, 1.0, 4, 0.0, 1.0),
     (7200.0, 0.05, 100, 0.3, 2.0)],
)  # fmt: skip
def test_schedule_fills_the_budget_without_passing_it(budget_s, step_s, iters, overhead_s, knn_s):
    s = size_schedule(budget_s, step_s, iters, overhead_s, knn_s, points=8)
    epoch_s = iters * step_s + overhead_s
    assert s.planned_s == pytest.approx(planned_seconds(s.epochs, s.every, epoch_s, knn_s))
    if s.epochs > 1 or s.planned_s <= budget_s:  # one epoch is the floor even when it does not fit
        assert s.planned_s <= budget_s
    assert planned_seconds(s.epochs + 1, s.every, epoch_s, knn_s) > budget_s  # one more epoch would not fit
    assert 1 <= s.every and s.epochs // s.every <= 8 + 1  # about `points` monitor calls, never one per step
    with pytest.raises(ValueError):
        size_schedule(0.0, step_s, iters)


def test_schedule_of_the_measured_cpu_step():
    """The bench's 2-core step (0.93 s, 25 steps of 64 images an epoch) in 7 minutes: ~17 epochs, not 90."""
    s = size_schedule(0.95 * 405, 0.93, 25, 0.75, 4.0)
    assert 14 <= s.epochs <= 17 and s.planned_s <= 0.95 * 405


@pytest.mark.parametrize("cores, workers, threads", [(2, 1, 1), (16, 1, 15), (1, 1, 1), (4, 0, 4), (8, 10, 1)])
def test_cpu_pretraining_threads_leave_the_loader_workers_their_cores(monkeypatch, cores, workers, threads):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert auto_threads(workers) == threads
    torch.set_num_threads(2)
    with pretraining_threads(0, workers, "cpu"):
        assert torch.get_num_threads() == threads
    assert torch.get_num_threads() == 2  # the evaluations get every core again
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # device=auto on a GPU machine
    with pretraining_threads(3, workers, "cpu"), pretraining_threads(0, workers, "auto"):
        assert torch.get_num_threads() == 2  # threads given (set for the whole run) or a GPU: left alone


def test_missing_reference_is_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([f"output_dir={out}", f"reference={tmp_path / 'nowhere.pth'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reference checkpoint" in err and "nowhere.pth" in err
    assert "bench/learning.py" in err and not out.exists()  # says how to remake it; nothing written
    # the same without the reference: nothing asks for it
    DemoConfig(output_dir=str(out), models="live,random_init", reference=str(tmp_path / "nowhere.pth")).check()
    assert main([f"output_dir={out}", "stages=world,bogus"]) == 2 and "bogus" in capsys.readouterr().err


def test_foreign_output_folder_is_refused(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("not a demo run")
    assert main([f"output_dir={tmp_path}", "models=live,random_init", "stages=world"]) == 2
    assert "holds no demo run" in capsys.readouterr().err and (tmp_path / "mine.txt").is_file()


def test_verdicts_say_which_way_and_when_within_noise():
    row = Row("k-NN", "f/{m}", ("x",), margin=2.0)
    assert verdict(row, 31.5, 21.8) == ("learned", pytest.approx(9.7))
    assert verdict(row, 22.5, 21.8)[0].startswith("no better than random init")
    assert verdict(row, 15.0, 21.8)[0] == "worse than random init"
    assert verdict(Row("error", "f/{m}", ("x",), 2.0, higher_is_better=False), 70.0, 80.0)[0] == "learned"
    assert verdict(row, None, 21.8)[0] == "not run"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole demo on a tiny world: seconds of pre-training and evaluations cut to their minimum."""
    out = tmp_path_factory.mktemp("demo") / "out"  # the default reference: the shipped demo/reference checkpoint
    args = [f"output_dir={out}", "stages=world,pretrain,frozen,finetune,robustness,analysis,report", *TINY]
    code = main(args)
    return code, out


def test_tiny_demo_runs_end_to_end(tiny_run):
    code, out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary["errors"]
    assert set(summary["stage_seconds"]) == {"world", "pretrain", "frozen", "finetune", "robustness", "analysis",
                                             "report"}  # fmt: skip
    rows = {r["metric"]: r for r in summary["rows"]}
    for metric in ("k-NN top-1 (k=20, %)", "linear probe top-1 (%)", "attention Jaccard, best head"):
        assert set(rows[metric]["values"]) == set(MODELS)
        assert all(isinstance(v, float) for v in rows[metric]["values"].values())
        assert set(rows[metric]["verdicts"]) == {"live", "reference"}
        line = rows[metric]["line"]
        assert line.startswith(metric) and "live" in line and "reference" in line and "random" in line
    assert summary["lines"][0].startswith("live pre-training:")  # the live run first, then one line per row
    assert len(summary["lines"]) == len(summary["rows"]) + 1
    # every evaluation writes its config and results into <out>/<stage>/<model>/<evaluation>/
    for model in MODELS:
        for evaluation in ("frozen/{m}/knn", "frozen/{m}/linear", "finetune/{m}", "analysis/{m}/attention",
                           "analysis/{m}/pca"):  # fmt: skip
            folder = out / evaluation.format(m=model)
            assert (folder / "results.json").is_file() and (folder / "config.yaml").is_file(), folder
    assert list((out / "analysis" / "live" / "attention").rglob("*.png"))  # the figures are there too
    html = (out / "report" / "report.html").read_text()
    assert all(m in html for m in MODELS) and "<img" in html
    # the reference checkpoint's interactive page, linked from the report
    assert (out / "analysis" / "reference" / "explore" / "explore.html").is_file()
    assert '<a href="../analysis/reference/explore/explore.html">' in html


def test_tiny_demo_sized_its_schedule_and_monitored(tiny_run):
    _, out = tiny_run
    sched = json.loads((out / "pretrain" / "demo_schedule.json").read_text())
    res = json.loads((out / "pretrain" / "results.json").read_text())
    assert sched["schedule"]["epochs"] >= 1 and sched["schedule"]["planned_s"] <= 0.3 * 60
    assert 0.0 <= sched["knn_random_init"] <= 100.0
    run_cfg = yaml.safe_load((out / "pretrain" / "config.yaml").read_text())
    assert run_cfg["epochs"] == sched["schedule"]["epochs"] and 0 < run_cfg["time_limit_min"] <= 0.3  # safety stop
    assert res["backbone"] and (out / "models" / "random_init.pth").is_file()
    assert sched["stage_minutes"] <= 0.3 + 0.2  # at most the budget (and the final export)


def test_dense_and_retrieval_stages_on_one_model(tiny_run, tmp_path):
    """The other stages' code path, on the random init alone (each model runs the same code)."""
    _, first = tiny_run
    out = tmp_path / "out"
    shutil.copytree(first / "world", out / "world")
    shutil.copytree(first / "models", out / "models")
    (out / ".demo_out").write_text("")
    assert main([f"output_dir={out}", "models=random_init", "stages=dense,retrieval,video", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    metrics = {r["metric"] for r in summary["rows"]}
    assert {"detection box AP50", "segmentation mIoU (UperNet)", "segmentation mIoU (linear head)"} <= metrics
    assert {"retrieval mAP (Medium, %)", "copy detection mAP (strong, %)"} <= metrics
    for folder in (
        "dense/random_init/detection",
        "dense/random_init/segmentation_linear",
        "retrieval/random_init/copydays",
    ):
        assert (out / folder / "results.json").is_file() and (out / folder / "config.yaml").is_file()
    assert all(r["verdicts"] == {} and "random" in r["line"] for r in summary["rows"])  # no trained model: no verdict
    video = [n for n in summary["not_run"] if n.startswith("video/")]
    if importlib.util.find_spec("video_seg") is not None:
        assert "video segmentation J&F (%)" in metrics and not video
    else:  # a tree without the video evaluation says so instead of failing
        assert video and all("video_seg" in n for n in video)


def test_help_answers_without_torch():
    code = "import sys, runpy; sys.argv = ['demo', '--help']\ntry:\n    runpy.run_module('demo', run_name='__main__')\n"
    code += "except SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "minutes" in proc.stdout and "reference" in proc.stdout


def test_every_closing_row_names_a_folder_the_demo_writes():
    stages = {"frozen", "finetune", "dense", "robustness", "analysis", "retrieval", "video"}
    assert all(r.folder.split("/")[0] in stages and "{m}" in r.folder for r in ROWS)


def test_world_typos_and_missing_worlds_are_one_line_before_any_work(tmp_path, capsys):
    """A world.* key the world does not have names the closest one; a stage that reads the world without it,
    and a report of a folder where nothing ran, say what to run (issue 32 item 15): exit 2, nothing written."""
    assert main([f"output_dir={tmp_path / 'a'}", "world.nclasses=3", "stages=world"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "world.nclasses" in err and "world.num_classes" in err
    assert main([f"output_dir={tmp_path / 'b'}", "stages=frozen"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stages=world,frozen" in err
    assert main([f"output_dir={tmp_path / 'c'}", "stages=report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no stage of a demo run" in err
    assert not any((tmp_path / d).exists() for d in "abc")
