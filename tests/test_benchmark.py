"""`python -m benchmark`: bad input, the plan, the local launcher, resumption and the status table.

The runner is exercised on stand-in commands (a few lines of Python written here, named in a task table
written here), so every test is seconds long; the real evaluations run in test_benchmark_slurm.py.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark import load_table, read_state
from benchmark.__main__ import main
from tests.helpers.eval_world import export_tiny, write_split_world

ROOT = Path(__file__).resolve().parents[1]

# A stand-in evaluation: `python -m fake_eval output_dir=D [steps=N] [fail=true] [hang_once=I] [needs=FILE]`.
# Each step leaves a mark in its run folder; a second start skips the marked steps (its resume). It holds the
# folder's lock and reports user errors through plumbing's shell, as the evaluations do.
FAKE_EVAL = """
import json, sys, time
from pathlib import Path
from plumbing import RunLock, UserError, run_command

def work():
    args = dict(a.split("=", 1) for a in sys.argv[1:])
    out = Path(args["output_dir"])
    if args.get("needs") and not Path(args["needs"]).is_file():
        raise UserError(f"{args['needs']} not found")
    if args.get("fail") == "true":
        raise UserError("it failed on purpose")
    with RunLock(out):  # as every evaluation holds its run folder
        for i in range(int(args.get("steps", 1))):
            if (out / f"step{i}.done").exists():
                continue
            with open(out / "events.txt", "a") as f:
                f.write(f"step {i}\\n")
            if args.get("hang_once") == str(i) and not (out / "hung").exists():
                (out / "hung").write_text("")
                time.sleep(600)
            (out / f"step{i}.done").write_text("")
        (out / "results.json").write_text(json.dumps({"top1": 1.0, "precision": args.get("precision")}))

sys.exit(run_command("fake_eval", work))
"""

TABLE = """
datasets:
  imagenet: {folder: imagenet, world: classification}
  coco: {folder: coco, world: coco}
tasks:
  alpha:
    command: fake_eval
    keys: {data_path: "{imagenet}", precision: fp32}
    gpus: 8
  beta:
    command: fake_eval
    keys: {data_path: "{imagenet}", fail: true}
  gamma:
    command: fake_eval
    keys: {data_path: "{imagenet}", needs: "{task:alpha}/results.json", steps: 2}
  delta:
    command: fake_eval
    keys: {data_path: "{coco}"}
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return stand_in(tmp_path, monkeypatch)


def stand_in(tmp_path: Path, monkeypatch) -> Path:
    """A data root with imagenet/ (no coco/), the stand-in command on PYTHONPATH and a table naming it."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "fake_eval.py").write_text(FAKE_EVAL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "mods"), str(ROOT)]))
    (tmp_path / "data" / "imagenet").mkdir(parents=True)
    (tmp_path / "tasks.yaml").write_text(TABLE)
    return tmp_path


def bench(fake, checkpoint, *extra):
    return main([f"pretrained={checkpoint}", f"data_root={fake / 'data'}", f"output_dir={fake / 'out'}",
                 f"table={fake / 'tasks.yaml'}", "report=false", *extra])  # fmt: skip


def events(folder: Path) -> list[str]:
    path = folder / "events.txt"
    return path.read_text().splitlines() if path.is_file() else []


def test_help_answers_without_torch():
    code = "import sys; from benchmark.__main__ import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\n"
    out = subprocess.run([sys.executable, "-c", code + "print('torch' in sys.modules)"], capture_output=True,
                         text=True, cwd=ROOT)  # fmt: skip
    assert "launcher" in out.stdout and "slurm.partition" in out.stdout
    assert out.stdout.strip().endswith("False")


def test_unknown_task_is_one_line_naming_the_closest(fake, checkpoint, capsys):
    assert bench(fake, checkpoint, "tasks=[alpah]") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("benchmark: error: unknown task 'alpah'; did you mean alpha?")
    assert not (fake / "out").exists()


def test_unreadable_checkpoint_is_one_line_before_any_task(fake, capsys):
    bad = fake / "notes.pth"
    bad.write_text("not a checkpoint")
    assert bench(fake, bad) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("benchmark: error:") and str(bad) in err
    assert not (fake / "out" / "benchmark.json").exists() and events(fake / "out" / "alpha") == []
    assert bench(fake, fake / "missing.pth") == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_runs_nothing(fake, checkpoint, capsys):
    times = fake / "times.json"
    measured = {"task": "alpha", "settings": "paper", "arch": "vit_tiny/8", "device": "cuda", "processes": 8,
                "seconds": 900, "machine": "one H100", "date": "2026-12-01"}  # fmt: skip
    times.write_text(json.dumps({"measurements": [measured]}))
    assert bench(fake, checkpoint, "dry_run=true", f"throughput={times}", "launcher=slurm") == 0
    out = capsys.readouterr().out
    alpha = out.split("alpha", 1)[1].split("\n", 2)
    assert "8 GPU(s);" in alpha[0] and "est. 2 GPU-h (one H100, 2026-12-01)" in alpha[0]  # 900 s x 8 GPUs
    assert alpha[1].strip().startswith("torchrun --nproc_per_node=8 -m fake_eval pretrained=")
    assert f"output_dir={fake / 'out' / 'alpha'}" in alpha[1] and "precision=fp32" in alpha[1]
    assert "beta " in out and "est. unmeasured" in out
    assert f"delta                skipped: no data at {fake / 'data' / 'coco'}" in out
    assert not (fake / "out").exists()
    assert bench(fake, checkpoint, "dry_run=true", "gpus=2", "tasks=[alpha]") == 0
    out = capsys.readouterr().out
    assert "2 GPU(s) (the paper's run: 8)" in out and "torchrun --nproc_per_node=2 -m fake_eval" in out
    assert bench(fake, checkpoint, "dry_run=true", "tasks=[alpha]") == 0  # local on a CPU: one process
    assert "\n      python -m fake_eval pretrained=" in capsys.readouterr().out


def test_the_paper_settings_follow_the_architecture(tmp_path, checkpoint, capsys):
    """The real table on a ViT-T/8: tasks without ViT-T settings are skipped (saying why), k-NN runs in fp32."""
    write_split_world(tmp_path / "data" / "imagenet", n_train=2, n_val=1)
    common = [f"pretrained={checkpoint}", f"data_root={tmp_path / 'data'}", f"output_dir={tmp_path / 'out'}"]
    assert main([*common, "dry_run=true", "launcher=slurm"]) == 0
    out = capsys.readouterr().out
    assert "(vit_tiny/8, teacher," in out
    knn = out.split("\n  knn ", 1)[1].split("\n")[1].strip()
    assert knn.startswith("torchrun --nproc_per_node=8 -m eval_knn pretrained=") and "precision=fp32" in knn
    assert "linear               skipped: the paper gives no linear settings for vit_tiny/8" in out
    assert "unsup                skipped:" in out and "holds no iBOT head" in out
    assert "detection            skipped: the paper gives no detection settings for vit_tiny/8" in out
    assert f"roxford5k            skipped: no data at {tmp_path / 'data' / 'roxford5k'}" in out
    assert "precision=auto" not in knn
    assert main([*common, "dry_run=true", "precision=auto", "tasks=[knn]"]) == 0
    assert "precision=auto" in capsys.readouterr().out


def test_every_task_of_the_table_names_a_command_and_known_datasets():
    table = load_table(ROOT / "benchmark" / "recipes" / "tasks.yaml")
    assert {"knn", "linear", "finetune", "detection", "seg_upernet", "roxford5k", "davis", "imagenet_c"} <= set(
        table.tasks
    )
    for spec in table.tasks.values():
        assert (ROOT / spec.command.replace(".", "/")).with_suffix(".py").is_file() or (
            ROOT / spec.command.replace(".", "/") / "__main__.py"
        ).is_file(), spec.command
        for arch in spec.archs.values():
            assert "recipe" not in arch or (ROOT / arch["recipe"]).is_file(), arch


def test_a_failure_does_not_stop_the_others_and_done_tasks_are_not_run_again(fake, checkpoint, capsys):
    assert bench(fake, checkpoint) == 1
    out = capsys.readouterr().out
    table = out.split("\n  task ", 1)[1]
    assert "alpha                        done" in table and "gamma                        done" in table
    assert "beta                         failed       fake_eval: error: it failed on purpose (log: " in table
    assert f"{fake / 'out' / 'beta' / 'log.txt'})" in table
    assert "delta                        skipped      no data at" in table
    assert "4 tasks: 2 done, 1 failed, 1 skipped" in table
    assert events(fake / "out" / "gamma") == ["step 0", "step 1"]
    state = read_state(fake / "out" / "alpha")
    assert state["status"] == "done" and state["precision"] == "fp32" and state["attempts"] == 1
    plan = json.loads((fake / "out" / "benchmark.json").read_text())
    assert [t["task"] for t in plan["tasks"]] == ["alpha", "beta", "gamma", "delta"]
    # the next call: done tasks are not run again, the failed one stays failed (exit 1)
    assert bench(fake, checkpoint) == 1
    out = capsys.readouterr().out
    assert "alpha                done (finished before)" in out and "beta                 failed before" in out
    assert events(fake / "out" / "alpha") == ["step 0"] and read_state(fake / "out" / "beta")["attempts"] == 1
    # retry_failed=true runs it again; changed settings run a done task again
    assert bench(fake, checkpoint, "retry_failed=true", "keys.beta.fail=false", "keys.alpha.steps=2") == 0
    assert read_state(fake / "out" / "beta")["status"] == "done"
    assert events(fake / "out" / "alpha") == ["step 0", "step 1"]  # step 0 was kept: the task's own resume
    assert main(["status", f"output_dir={fake / 'out'}"]) == 0
    assert "4 tasks: 3 done, 1 skipped" in capsys.readouterr().out


def test_a_task_waits_for_the_task_it_reads(fake, checkpoint, capsys):
    assert bench(fake, checkpoint, "tasks=[gamma]") == 0
    assert "gamma                skipped: needs alpha, which is not done: add it to tasks=" in capsys.readouterr().out
    assert bench(fake, checkpoint, "tasks=[alpha,gamma]", "keys.alpha.fail=true") == 1
    out = capsys.readouterr().out
    assert "gamma                        failed       not run: needs alpha, which is failed" in out
    assert events(fake / "out" / "gamma") == []
    assert bench(fake, checkpoint, "tasks=[alpha,gamma]", "keys.alpha.fail=true") == 1  # alpha stays failed
    assert "gamma                skipped: needs alpha, which is failed" in capsys.readouterr().out


def test_status_prints_the_table_and_several_checkpoints_get_a_folder_each(fake, checkpoint, capsys):
    other = export_tiny(fake / "b" / "tiny.pth", seed=1)
    assert bench(fake, f"[{checkpoint},{other}]", "skip=[beta]") == 0
    capsys.readouterr()
    plan = json.loads((fake / "out" / "benchmark.json").read_text())
    names = list(plan["models"])  # the order given; equal stems get their folder's name in front
    assert names == [f"{Path(checkpoint).parent.name}_tiny", "b_tiny"]
    for name in names:
        assert plan["models"][name]["folder"] == name and plan["models"][name]["arch_key"] == "vit_tiny/8"
        assert json.loads((fake / "out" / name / "alpha" / "results.json").read_text())["top1"] == 1.0
    assert main(["status", f"output_dir={fake / 'out'}"]) == 0
    out = capsys.readouterr().out
    assert "b_tiny/alpha" in out and "6 tasks: 4 done, 2 skipped" in out
    assert main(["status", f"output_dir={fake / 'nothing'}"]) == 2
    assert "holds no benchmark" in capsys.readouterr().err


def test_a_task_killed_midway_resumes_on_the_next_call(fake, checkpoint, capsys):
    args = [sys.executable, "-m", "benchmark", f"pretrained={checkpoint}", f"data_root={fake / 'data'}",
            f"output_dir={fake / 'out'}", f"table={fake / 'tasks.yaml'}", "report=false", "tasks=[alpha]",
            "keys.alpha.steps=3", "keys.alpha.hang_once=1"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = fake / "out" / "alpha"
    deadline = time.time() + 120
    while events(folder) != ["step 0", "step 1"] and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert events(folder) == ["step 0", "step 1"], proc.stderr.read() if proc.poll() is not None else ""
    os.killpg(proc.pid, signal.SIGKILL)  # the machine goes away: the runner and the task die together
    proc.wait()
    assert read_state(folder)["status"] == "running"
    main(["status", f"output_dir={fake / 'out'}"])
    assert "alpha                        interrupted  stopped before it finished" in capsys.readouterr().out
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert events(folder) == ["step 0", "step 1", "step 1", "step 2"]  # step 0 was not done again
    state = read_state(folder)
    assert state["status"] == "done" and state["attempts"] == 2


def test_measured_task_times_become_the_plan_s_estimates(fake, checkpoint, capsys, monkeypatch):
    """bench/benchmark_times.py folds a finished run's task times into the table the dry run reads."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_times", ROOT / "bench" / "benchmark_times.py")
    times = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "benchmark_times", times)  # its dataclass looks its module up there
    spec.loader.exec_module(times)
    assert bench(fake, checkpoint, "tasks=[alpha,beta]") == 1
    table = fake / "times.json"
    assert times.main([f"output_dir={fake / 'out'}", "machine=test VM", "device=cpu", f"into={table}"]) == 0
    recorded = json.loads(table.read_text())["measurements"]
    assert [(m["task"], m["settings"], m["arch"], m["device"]) for m in recorded] == [
        ("alpha", "paper", "vit_tiny/8", "cpu")
    ]  # the failed task has no time
    capsys.readouterr()
    assert bench(fake, checkpoint, "dry_run=true", f"throughput={table}", "tasks=[alpha,beta]") == 0
    out = capsys.readouterr().out
    assert "CPU-h (test VM, 20" in out.split("alpha", 1)[1].split("\n")[0]
    assert "est. unmeasured" in out.split("beta", 1)[1].split("\n")[0]


def test_a_requeued_job_takes_over_the_lock_its_killed_attempt_left(fake, monkeypatch):
    """A requeue kills the job's processes wherever they ran: their lock (another node's, so never stale here)
    is the job's own and goes; a lock of another job stays and the task fails saying who holds the folder."""
    from benchmark import TaskJob
    from benchmark.state import write_state

    folder = fake / "out" / "alpha"
    folder.mkdir(parents=True)
    lock = json.dumps({"pid": 4242, "host": "node-a", "started": "2026-12-01 10:00:00"})
    (folder / ".lock").write_text(lock)
    write_state(folder, status="submitted", job_id="77", host="node-a", attempts=1)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    job = TaskJob(str(folder), ["fake_eval", f"output_dir={folder}"])
    assert job()["status"] == "done" and not (folder / ".lock").exists()
    (folder / "results.json").unlink()
    (folder / ".lock").write_text(lock)
    write_state(folder, job_id="76", host="node-a")  # the lock was left by another job
    state = job()
    assert state["status"] == "failed" and "in use by pid 4242 on node-a" in state["reason"]
    assert state["reason"].startswith("fake_eval: error: output_dir=")


def test_small_settings_on_the_demo_world(tmp_path, capsys):
    """The embedded world's folders are found by its marker; three real tasks at small settings on the shipped
    reference checkpoint (make benchmark runs every task the world has data for)."""
    from demo_world import write_world

    world = tmp_path / "world"
    write_world(world, silhouette=True, photo_fraction=0.0, grayscale=True, n_train=6, n_val=3, coco=False,
                ade=False, backgrounds=False, retrieval=True, video=True, video_count=1, video_frames=4,
                progress=False)  # fmt: skip
    reference = ROOT / "demo" / "reference" / "vit_tiny_silhouette.pth"
    args = [f"pretrained={reference}", f"data_root={world}", f"output_dir={tmp_path / 'out'}", "small=true",
            "report=false", "tasks=[knn,roxford5k,davis,detection]"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"detection            skipped: no data at {world / 'coco'}" in out
    assert "3 done, 1 skipped" in out
    knn = json.loads((tmp_path / "out" / "knn" / "results.json").read_text())
    assert knn["provenance"]["precision"] == {"requested": "fp32", "ran": "fp32"}
    assert f"data_path={world / 'classification'}" in knn["provenance"]["command"]
    assert "image_size=64" in knn["provenance"]["command"]  # the small settings


def test_one_runner_per_output_folder(fake, checkpoint, capsys):
    import socket

    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (fake / "out").mkdir()
        lock = {"pid": owner.pid, "host": socket.gethostname(), "started": "2026-12-01 10:00:00"}
        (fake / "out" / ".lock").write_text(json.dumps(lock))  # another benchmark runs on this folder
        assert bench(fake, checkpoint) == 2
        assert f"is in use by pid {owner.pid}" in capsys.readouterr().err
        assert not (fake / "out" / "benchmark.json").exists() and events(fake / "out" / "alpha") == []
    finally:
        owner.kill()
        owner.wait()
    assert bench(fake, checkpoint, "tasks=[alpha]") == 0  # its lock, now stale, is taken over
