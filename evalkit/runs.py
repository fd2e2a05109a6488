"""Resumable evaluations (linear probe, fine-tuning, detection, segmentation) start through one gate.

`open_evaluation_folder(cfg, checkpoint, weights, dataset)` runs on every process before any training state is
read: rank 0 removes leftover temporary files of a killed write, compares what this start is made of
(the fingerprints of the weights it starts from and of the dataset's files, the result-changing config keys) with
what the folder's run was made of (`run_identity.json`, pretrain.RunIdentity), and
- `resume=true`: a difference stops with one line naming it (RunFolderError, exit 2); compatible keys
  (more epochs, other workers, ...) are allowed and logged;
- `resume=false`: an earlier run in the folder is moved aside (`previous-<time>/`), never overwritten.
The other ranks wait at a barrier, then read the (checked) checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn

from plumbing import (
    RunIdentity,
    dataset_fingerprint,
    get_rank,
    is_distributed,
    open_run_folder,
    to_plain,
    upgrade_identity,
)
from pretrain import weights_fingerprint

# Evaluation keys that never change a result, beside the core's BOOKKEEPING (output_dir, epochs, ...).
EVAL_BOOKKEEPING = frozenset({"cache_dir", "max_val_images", "val_limit", "max_figures", "stop_after"})


def run_identity(cfg: Any, weights: Mapping[str, nn.Module | None], dataset: str) -> RunIdentity:
    """Fingerprints of `weights` (name -> module), the dataset's description and the config keys."""
    prints = {name: weights_fingerprint(m) for name, m in weights.items() if m is not None}
    return RunIdentity(weights=prints, dataset=dataset, config=to_plain(cfg))


def open_evaluation_folder(
    cfg: Any,
    checkpoint: str | os.PathLike,
    weights: Mapping[str, nn.Module | None],
    dataset: str,
    compatible: Iterable[str] = (),
    what: str = "run",
) -> list[str]:
    """Check (resume) or clear (resume=false) `cfg.output_dir` for this start; returns the compatible
    changes found (logged). Call on every rank before reading `checkpoint`."""
    changes: list[str] = []
    if get_rank() == 0:
        identity, resume = run_identity(cfg, weights, dataset), getattr(cfg, "resume", True)
        upgrade_identity(cfg.output_dir, dataset)  # a run recorded before dataset fingerprints
        changes = open_run_folder(cfg.output_dir, identity, resume, Path(checkpoint).is_file(),
                                       EVAL_BOOKKEEPING | set(compatible), what)  # fmt: skip
    if is_distributed():
        dist.barrier()
    return changes


def describe_datasets(**splits: Any) -> str:
    """`train=ds, val=ds` -> "train: ROOT (N images, C classes, fingerprint X); val: ..." (what a resume
    compares). The fingerprint (`plumbing.dataset_fingerprint`: relative paths, sizes, modification times,
    sampled contents) covers the files of `ds.files()` (a dataset that reads more than its images, e.g. an
    annotation file) or of `ds.samples`; a dataset with neither is described by its size alone."""
    parts = []
    for name, ds in splits.items():
        root = getattr(ds, "root", None) or getattr(ds, "img_dir", None) or type(ds).__name__
        classes = getattr(ds, "classes", None)
        extra = f", {len(classes)} classes" if classes is not None else ""
        files = list(ds.files()) if callable(getattr(ds, "files", None)) else None
        if files is None and getattr(ds, "samples", None) is not None:
            files = [sample[0] for sample in ds.samples]
        if files is not None:
            extra += f", fingerprint {dataset_fingerprint(files, root)}"
        parts.append(f"{name}: {root} ({len(ds)} images{extra})")
    return "; ".join(parts)
