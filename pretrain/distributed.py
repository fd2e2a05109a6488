"""Process-group set-up under `torchrun` (one or many nodes); single process otherwise."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: str = "auto") -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins torchrun's process group (NCCL on CUDA, gloo on CPU).

    `device`: auto (CUDA when available), cpu, cuda or cuda:N. Without torchrun's environment this
    only resolves the device.
    """
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        if device not in ("auto", "cpu") and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available; use device=cpu")
        return 0, 1, torch.device(device if device != "auto" else ("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def shutdown() -> None:
    """All ranks meet at a barrier first: gloo aborts at exit otherwise."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()
