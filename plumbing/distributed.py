"""Process set-up shared by every command: devices, torchrun process groups, rank and world size.

One process without torchrun; under `torchrun` (one or many nodes) the process joins the group
(NCCL on CUDA, gloo on CPU). `shutdown` meets the other ranks at a barrier first: gloo aborts at exit
otherwise.
"""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist

from .errors import DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU; `cpu`, `cuda`, `cuda:N` as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise DeviceError(f"bad device {name!r}: {e}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={name!r} but CUDA is not available; use device=cpu (or auto)")
    return device


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins torchrun's process group when launched by torchrun.

    `device`: auto (CUDA when available), cpu, cuda or cuda:N. Without torchrun's environment this
    only resolves the device. Under torchrun each process takes the GPU of its LOCAL_RANK.
    """
    if not launched_by_torchrun():
        return 0, 1, resolve_device(device)
    use_cuda = resolve_device(device).type == "cuda"
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True in the process that writes files: rank 0, read from torchrun's environment before the
    group exists so that nothing is written twice during set-up."""
    return get_rank() == 0 if is_distributed() else int(os.environ.get("RANK", "0")) == 0


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over processes (returns `x` itself in one process)."""
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
    return x


def shutdown_distributed() -> None:
    """All ranks meet at a barrier first: gloo aborts at exit otherwise."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def out_of_time(start: float, limit_min: float, device: torch.device | str = "cpu") -> bool:
    """Whether `limit_min` minutes (0: no limit) passed since `start` (time.time()) on any process: every
    rank gets the same answer, so all stop after the same iteration (the `time_limit_min` key)."""
    late = bool(limit_min) and time.time() - start > 60 * limit_min
    if not limit_min or not is_distributed():
        return late
    return bool(all_reduce_sum(torch.tensor([float(late)], device=device)).item())
