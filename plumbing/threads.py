"""How many torch threads a CPU run uses: the cores its loader workers leave, unless the user says.

On a 2-core VM, one loader worker beside torch's default two threads made each pre-training step about
4x slower than one thread (kernel time: the threads and the worker contend for the same cores;
bench/README.md). The rule: `threads=N` (N > 0) is used as given; `threads=0` means the cores this
process may run on (shared among torchrun's processes on the machine) minus its loader workers, at least
one. On a GPU the rule leaves torch's default. Pre-training (plain loop and Lightning) applies it; the
evaluations take every core for `threads=0` (their loader workers only decode and resize: k-NN ran 1.48x
faster on 2 threads than on the 1 the rule leaves beside 1 worker); both take `threads=N` as given.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_threads(num_workers: int, cores: int | None = None) -> int:
    """Torch threads beside `num_workers` loader processes: this process's share of the cores (torchrun's
    LOCAL_WORLD_SIZE processes share them) less its workers, at least 1."""
    if cores is None:
        cores = available_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, cores - max(0, num_workers))


def check_threads(threads: int) -> None:
    from .errors import ConfigError

    if threads < 0:
        raise ConfigError(f"threads must be >= 0 (0 = the cores the loader workers leave), got {threads}")


@contextlib.contextmanager
def cpu_threads(threads: int, num_workers: int, device: str = "cpu") -> Iterator[int]:
    """Set torch's thread count for the block by the rule above (restored after); yields the count used.
    `device` is a resolved device name: on anything but the CPU only an explicit `threads` is applied."""
    import torch

    check_threads(threads)
    before = torch.get_num_threads()
    if threads:
        chosen = threads
    elif str(device).startswith("cpu"):
        chosen = auto_threads(num_workers)
    else:
        chosen = before
    if chosen != before:
        torch.set_num_threads(chosen)
        log.info("%d torch thread(s) beside %d loader worker(s) (threads=%d)", chosen, num_workers, threads)
    try:
        yield chosen
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
