"""`python -m benchmark launcher=slurm|submitit_local`: jobs through submitit.

- submitit's LocalExecutor runs two real evaluations (k-NN, logistic regression) end to end on the CPU;
- SLURM is played by stand-in `sbatch`, `srun`, `sacct`, `squeue` and `scontrol` executables written here:
  they record what is submitted and run the job scripts on this machine, so the sbatch scripts' resources
  are checked and a job that is preempted (SIGUSR2, as SLURM sends before the end) is requeued by
  submitit's checkpoint protocol and resumes its task's run folder.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from benchmark import SlurmSpec, read_state
from benchmark.__main__ import main
from benchmark.launch import slurm_parameters
from tests.helpers.eval_world import export_tiny, write_split_world
from tests.test_benchmark import events, stand_in

try:  # in the dev extra: a missing submitit is a broken install, said in one line (not a silent skip)
    import submitit  # noqa: F401
except ImportError:
    pytest.fail("the SLURM tests need submitit (the dev extra): pip install -e '.[dev]'", pytrace=False)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# sbatch: record the script, give it an id, run it (attempt 1) in the background.
SBATCH = f"""#!{PY}
import os, subprocess, sys
from pathlib import Path
d = Path(os.environ["FAKE_SLURM"])
counter = d / "next_id"
jid = int(counter.read_text()) if counter.exists() else 1000
counter.write_text(str(jid + 1))
(d / f"job{{jid}}.sbatch").write_text(Path(sys.argv[-1]).read_text())
(d / f"job{{jid}}.start1").write_text("")
with open(d / "calls.log", "a") as f:
    f.write(f"sbatch {{jid}}\\n")
here = Path(sys.argv[0]).resolve().parent
subprocess.Popen([sys.executable, str(here / "runjob"), str(jid), "1"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"Submitted batch job {{jid}}")
"""

# runjob JOB ATTEMPT: wait for afterok dependencies, then run the script as SLURM would (its environment).
RUNJOB = f"""#!{PY}
import os, re, subprocess, sys, time
from pathlib import Path
d = Path(os.environ["FAKE_SLURM"])
jid, attempt = sys.argv[1], sys.argv[2]
script = d / f"job{{jid}}.sbatch"
dep = re.search(r"--dependency=afterok:([0-9:]+)", script.read_text())
def latest(j):
    starts = [int(p.name.split("start")[1]) for p in d.glob(f"job{{j}}.start*")]
    rc = d / f"job{{j}}.rc{{max(starts)}}"
    return rc.read_text().strip() if rc.exists() else None
for other in (dep.group(1).split(":") if dep else []):
    while latest(other) is None:
        time.sleep(0.2)
    if latest(other) != "0":
        (d / f"job{{jid}}.rc{{attempt}}").write_text("cancelled")
        sys.exit(0)
env = dict(os.environ, SLURM_JOB_ID=jid, SLURM_JOB_NUM_NODES="1", SLURM_NODEID="0", SLURM_PROCID="0",
           SLURM_LOCALID="0", SLURM_NTASKS="1", SLURM_JOB_NODELIST="localhost")
rc = subprocess.call(["bash", str(script)], env=env)
(d / f"job{{jid}}.rc{{attempt}}").write_text(str(rc))
"""

# srun --unbuffered --output FILE [--error FILE] CMD...: run CMD with its output in FILE.
SRUN = f"""#!{PY}
import os, sys
args, out = sys.argv[1:], None
while args and args[0].startswith("--"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        value = args.pop(0)
        out = out or value
path = out.replace("%j", os.environ["SLURM_JOB_ID"]).replace("%t", "0")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(fd, 1)
os.dup2(fd, 2)
os.execvp(args[0], args)
"""

# sacct -o JobID,State,NodeList --parsable2 -j ID ...: the state of each job's latest attempt.
SACCT = f"""#!{PY}
import os, sys
from pathlib import Path
d = Path(os.environ["FAKE_SLURM"])
ids = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "-j"]
print("JobID|State|NodeList")
for jid in ids:
    starts = [int(p.name.split("start")[1]) for p in d.glob(f"job{{jid}}.start*")]
    rc = d / f"job{{jid}}.rc{{max(starts)}}" if starts else None
    code = rc.read_text().strip() if rc and rc.exists() else None
    state = {{None: "RUNNING", "0": "COMPLETED", "cancelled": "CANCELLED"}}.get(code, "FAILED")
    print(f"{{jid}}|{{state}}|localhost")
"""

# scontrol requeue ID: a new attempt of the same script (the job keeps its id).
SCONTROL = f"""#!{PY}
import os, subprocess, sys
from pathlib import Path
d = Path(os.environ["FAKE_SLURM"])
assert sys.argv[1] == "requeue", sys.argv
jid = sys.argv[2]
attempt = len(list(d.glob(f"job{{jid}}.start*"))) + 1
(d / f"job{{jid}}.start{{attempt}}").write_text("")
with open(d / "calls.log", "a") as f:
    f.write(f"scontrol requeue {{jid}}\\n")
here = Path(sys.argv[0]).resolve().parent
subprocess.Popen([sys.executable, str(here / "runjob"), jid, str(attempt)], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""

SQUEUE = f"""#!{PY}
print("JOBID PARTITION NAME USER ST TIME NODES NODELIST(REASON)")
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """Stand-in SLURM commands on PATH, the stand-in evaluation on PYTHONPATH, its table and a data root."""
    bin_dir, record = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    record.mkdir()
    for name, text in (("sbatch", SBATCH), ("runjob", RUNJOB), ("srun", SRUN), ("sacct", SACCT),
                       ("scontrol", SCONTROL), ("squeue", SQUEUE)):  # fmt: skip
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(record))
    return stand_in(tmp_path, monkeypatch)


def slurm_args(cluster, checkpoint, *extra):
    return [f"pretrained={checkpoint}", f"data_root={cluster / 'data'}", f"output_dir={cluster / 'out'}",
            f"table={cluster / 'tasks.yaml'}", "report=false", "launcher=slurm", "gpus=1", "slurm.partition=gpu",
            "slurm.account=proj", "slurm.qos=high", "slurm.mem_gb=16", "slurm.timeout_min=30",
            "slurm.cpus_per_task=4", *extra]  # fmt: skip


def wait_for(check, seconds: float = 180):
    deadline = time.time() + seconds
    while not check() and time.time() < deadline:
        time.sleep(0.3)
    return check()


def test_without_submitit_slurm_is_one_line_naming_the_extra(cluster, checkpoint, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(slurm_args(cluster, checkpoint)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'ibot-suite[slurm]'" in err


def test_nodes_and_gpus_per_node_from_the_task_processes():
    spec = SlurmSpec(gpus_per_node=8, cpus_per_task=10, partition="gpu", mem_gb=64)
    params, per_node = slurm_parameters(spec, 16, "ibot-m-t")
    assert (params["nodes"], params["gpus_per_node"], per_node, params["cpus_per_task"]) == (2, 8, 8, 80)
    assert params["partition"] == "gpu" and params["mem"] == "64GB" and "account" not in params
    params, per_node = slurm_parameters(spec, 4, "ibot-m-t")
    assert (params["nodes"], params["gpus_per_node"], per_node) == (1, 4, 4)


def test_slurm_jobs_carry_the_resources_and_wait_for_the_task_they_read(cluster, checkpoint, capsys):
    assert main(slurm_args(cluster, checkpoint, "tasks=[alpha,gamma]")) == 0
    out = capsys.readouterr().out
    assert "submitted tiny/alpha: job 1000" in out and "submitted tiny/gamma: job 1001" in out
    alpha = (cluster / "slurm" / "job1000.sbatch").read_text()
    for line in ("--partition=gpu", "--account=proj", "--qos=high", "--mem=16GB", "--time=30", "--nodes=1",
                 "--ntasks-per-node=1", "--gpus-per-node=1", "--cpus-per-task=4", "--signal=USR2@90",
                 "--job-name=ibot-tiny-alpha"):  # fmt: skip
        assert f"#SBATCH {line}\n" in alpha, line
    assert "dependency" not in alpha
    gamma = (cluster / "slurm" / "job1001.sbatch").read_text()
    assert "#SBATCH --dependency=afterok:1000\n" in gamma and "#SBATCH --kill-on-invalid-dep=yes\n" in gamma
    for task in ("alpha", "gamma"):
        state = read_state(cluster / "out" / task)
        assert state["status"] == "done" and state["job_id"] == {"alpha": "1000", "gamma": "1001"}[task]
    assert "2 tasks: 2 done" in out.split("\n  task ", 1)[1]


def test_a_preempted_job_is_requeued_and_resumes_its_run_folder(cluster, checkpoint, capsys):
    args = slurm_args(cluster, checkpoint, "tasks=[alpha]", "keys.alpha.steps=3", "keys.alpha.hang_once=1",
                      "wait=false")  # fmt: skip
    assert main(args) == 0
    assert "jobs: tiny/alpha 1000" in capsys.readouterr().out
    folder = cluster / "out" / "alpha"
    assert wait_for(lambda: events(folder) == ["step 0", "step 1"]), events(folder)
    state = read_state(folder)
    assert state["status"] == "running" and state["job_id"] == "1000"
    os.kill(state["pid"], signal.SIGUSR2)  # SLURM's warning before preemption or the time limit
    assert wait_for(lambda: (read_state(folder) or {}).get("status") == "done"), read_state(folder)
    calls = (cluster / "slurm" / "calls.log").read_text().splitlines()
    assert calls == ["sbatch 1000", "scontrol requeue 1000"]
    assert events(folder) == ["step 0", "step 1", "step 1", "step 2"]  # step 0 was not run again
    assert read_state(folder)["attempts"] == 2
    assert main(["status", f"output_dir={cluster / 'out'}"]) == 0
    assert "alpha                        done" in capsys.readouterr().out


def test_submitit_local_runs_two_real_evaluations_and_the_report(tmp_path, checkpoint, capsys):
    write_split_world(tmp_path / "data" / "imagenet", n_train=8, n_val=4)
    out = tmp_path / "out"
    args = [
        f"pretrained={checkpoint}",
        f"data_root={tmp_path / 'data'}",
        f"output_dir={out}",
        "small=true",
        "launcher=submitit_local",
        "tasks=[knn,logreg]",
        "keys.knn.image_size=32",
        "keys.logreg.image_size=32",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "2 tasks: 2 done" in text
    for task in ("knn", "logreg"):
        results = json.loads((out / task / "results.json").read_text())
        assert results["provenance"]["precision"]["requested"] == "fp32"  # the reference scripts' arithmetic
        assert read_state(out / task)["job_id"]
    assert (out / "report" / "report.md").is_file()
