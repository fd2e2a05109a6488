"""One task as one process: `TaskJob()` runs the task's command line, logs it and records how it ended.

The same callable runs in this process (launcher=local) and inside a submitit job (launcher=slurm or
submitit_local). It follows submitit's checkpoint protocol: on preemption or at the time limit submitit
calls `checkpoint()`, which stops the command (SIGINT, see below) and returns a DelayedSubmission of
this same TaskJob; the requeued job runs the command again and the task resumes from its run folder.
A command is stopped with SIGINT: Python unwinds it, so its run-folder lock is released and the requeued
job (on any node) can take the folder; a lock left on another node by a killed attempt of the same job is
removed before the command starts again.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plumbing import RunLock

from .state import LOG, read_state, write_state

STOP_GRACE_S = 60  # how long a stopped command may take to unwind before it is killed (SLURM gives 90 s)


@dataclass
class TaskJob:
    """Run `argv` (the task's module and its key=value arguments) in `folder`; `gpus` processes per node."""

    folder: str
    module_args: list[str]  # [module, (--config FILE), key=value, ...]
    gpus: int = 1
    identity: str = ""
    precision: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    _proc: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:  # the running process is not part of a (re)submission
        return {k: v for k, v in self.__dict__.items() if k != "_proc"} | {"_proc": None}

    def launcher(self) -> list[str]:
        """python -m, or torchrun (`python -m torch.distributed.run`) over the job's nodes."""
        nodes, node_rank, master = _job_nodes()
        if self.gpus <= 1 and nodes <= 1:
            return [sys.executable, "-m"]
        run = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={self.gpus}"]
        if nodes <= 1:
            return [*run, "--standalone", "-m"]
        return [*run, f"--nnodes={nodes}", f"--node_rank={node_rank}", f"--master_addr={master}",
                "--master_port=29500", "-m"]  # fmt: skip

    def __call__(self) -> dict[str, Any]:
        """Run the command to its end; returns (and records, on the first node) the task's final state."""
        folder = Path(self.folder)
        _, node_rank, _ = _job_nodes()
        argv = [*self.launcher(), *self.module_args]
        first = node_rank == 0
        previous = read_state(folder) or {}
        attempts = int(previous.get("attempts", 0)) + 1
        if first:
            _clear_own_lock(folder, previous)
            write_state(folder, status="running", pid=os.getpid(), host=socket.gethostname(), job_id=_job_id(),
                        started=time.strftime("%Y-%m-%dT%H:%M:%S"), attempts=attempts, identity=self.identity,
                        precision=self.precision, reason="", log=str(folder / LOG))  # fmt: skip
        t0 = time.time()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LOG, "a") as log:
            log.write(f"\n=== attempt {attempts} on {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                      f"{' '.join(argv)}\n")  # fmt: skip
            log.flush()
            env = {**os.environ, **self.env}
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_child_signals
            )
            try:
                rc = _poll_until_exit(self._proc)
            except KeyboardInterrupt:
                self.stop()
                write_state(folder, status="interrupted", reason="stopped by the user")
                raise
            finally:
                self._proc = None
        seconds = round(time.time() - t0, 1)
        if not first:
            return {"status": "done" if rc == 0 else "failed"}
        ok = rc == 0 and (folder / "results.json").is_file()
        reason = "" if ok else failure_reason(folder / LOG, rc)
        return write_state(folder, status="done" if ok else "failed", reason=reason, seconds=seconds,
                           finished=time.strftime("%Y-%m-%dT%H:%M:%S"), returncode=rc)  # fmt: skip

    def stop(self) -> None:
        """Ask the running command to stop (SIGINT: it unwinds, releasing its lock), kill it after STOP_GRACE_S.
        Safe inside a signal handler: it waits with os.waitpid, never through the Popen the interrupted frame
        may be waiting on."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.time() + STOP_GRACE_S
        while time.time() < deadline:
            if _reaped(proc.pid):
                return
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        while not _reaped(proc.pid):
            time.sleep(0.1)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue hook: stop the command and resubmit this same task (it resumes its run folder)."""
        from submitit.helpers import DelayedSubmission  # only ever called inside a submitit job

        self.stop()
        if _job_nodes()[1] == 0:
            write_state(self.folder, status="submitted", reason="requeued (preempted or at its time limit)")
        return DelayedSubmission(self, *args, **kwargs)


def _poll_until_exit(proc: subprocess.Popen) -> int:
    """The command's exit status. Polled, not waited on: a signal handler (submitit's requeue) may stop the
    command meanwhile, and Popen.wait would hold a lock that the handler's own wait then needs."""
    while (rc := proc.poll()) is None:
        time.sleep(0.2)
    return rc


def _reaped(pid: int) -> bool:
    """Whether process `pid` (a child) has ended; reaps it."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped already
        return True
    return done == pid


def _child_signals() -> None:
    """In the command's process: ignore SLURM's preemption warning (SIGUSR2, whose default ends a process;
    the job's submitit process handles it and stops the command), and take SIGINT as Python does by
    default (a batch shell may have started the job with SIGINT ignored)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _clear_own_lock(folder: Path, previous: dict[str, Any]) -> None:
    """A requeued job (the same job id as the task's last attempt) is the only holder of the task's folder: a
    run-folder lock that attempt left on its node (killed, so never released) goes. Any other lock stays,
    and the command says who holds it."""
    job = _job_id()
    if not job or previous.get("job_id") != job:
        return
    lock = RunLock(folder)
    owner = lock.owner()
    if owner and owner.get("host") == previous.get("host"):
        lock.path.unlink(missing_ok=True)


def _job_id() -> str | None:
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")


def _job_nodes() -> tuple[int, int, str]:
    """(nodes, this node's rank, first host) of the SLURM job this runs in ((1, 0, localhost) outside one)."""
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1") or 1)
    if nodes <= 1:
        return 1, 0, "localhost"
    from submitit import JobEnvironment  # a multi-node job is always a submitit job

    env = JobEnvironment()
    return nodes, env.node, env.hostnames[0]


def failure_reason(log: Path, returncode: int) -> str:
    """One line: the command's `prog: error: ...` line, else the last line of its traceback, else the status."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    attempt = max((i for i, line in enumerate(lines) if line.startswith("=== attempt")), default=-1)
    lines = lines[attempt + 1 :]
    errors = [line for line in lines if ": error: " in line]
    if errors:
        return errors[-1]
    if returncode == 0:
        return "exited 0 but wrote no results.json"
    if lines and "Traceback" in "\n".join(lines[-40:]):
        return lines[-1][:300]
    killed = f" (signal {-returncode})" if returncode < 0 else ""
    return f"exit status {returncode}{killed}" + (f": {lines[-1][:200]}" if lines else "")
