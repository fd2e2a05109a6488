"""Dataset fingerprints: what a resume compares to know that it reads the same data (cheap at ImageNet scale).

`dataset_fingerprint(files, root)` is a sha256 over the files' paths relative to `root` (sorted), each
file's size and modification time (one `stat` per file, no file read), and the full contents of
`SAMPLED` files picked evenly over the sorted list. So an added, removed or renamed file changes it, and
so does a file rewritten in place (its modification time moves); a sampled file whose bytes changed
changes it even when its size and time were put back.

What it cannot see: a file outside the sample rewritten with the same size and its old modification
time restored (`touch -r`, a copy that keeps times over other bytes). And a copy of the dataset that
does not keep modification times (`cp` without `-p`) reads as another dataset (tar, `cp -p`, `rsync -a`
keep them).

`describe_files(root, files, what)` is the line a run identity records: "ROOT (N images, fingerprint X)";
`upgrade_identity(output_dir, dataset)` lets a run recorded before fingerprints ("ROOT (N images)", the
same otherwise) resume: its identity is rewritten with the fingerprint, once, with a notice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .runfolder import RunIdentity, read_identity, write_identity

log = logging.getLogger(__name__)
SAMPLED = 8  # files whose contents enter the fingerprint
_FINGERPRINT = re.compile(r", fingerprint [0-9a-f]+")


def sampled_indices(n: int, k: int = SAMPLED) -> list[int]:
    """`k` indices spread evenly over range(n), first and last included (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def dataset_fingerprint(files: Iterable[str | os.PathLike], root: str | os.PathLike) -> str:
    """16 hex digits over the sorted relative paths, sizes and modification times of `files`, and the
    contents of `SAMPLED` of them (see the module docstring)."""
    rels = sorted((os.path.relpath(f, root).replace(os.sep, "/"), Path(f)) for f in files)
    h = hashlib.sha256()
    for rel, path in rels:
        st = path.stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    for i in sampled_indices(len(rels)):
        with open(rels[i][1], "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()[:16]


def describe_files(root: str | os.PathLike, files: list, what: str = "images") -> str:
    """ "ROOT (N images, fingerprint X)": what a run identity records of a dataset."""
    return f"{root} ({len(files)} {what}, fingerprint {dataset_fingerprint(files, root)})"


def upgrade_identity(output_dir: str | os.PathLike, dataset: str) -> bool:
    """A run recorded before datasets had fingerprints, on the same description otherwise, gets `dataset`
    (with its fingerprint) in its identity, so that the resume goes on; True when rewritten."""
    old = read_identity(output_dir)
    if not old or old.get("dataset") == dataset or old.get("dataset") != _FINGERPRINT.sub("", dataset):
        return False
    write_identity(output_dir, RunIdentity(weights=old.get("weights", {}), dataset=dataset, config=old["config"]))
    log.warning("%s: the run was recorded before dataset fingerprints; recorded the dataset's now", output_dir)
    return True
