"""The revisited Oxford/Paris ground truth: layout, a restricted unpickler, validation.

`<root>/gnd_<dataset>.pkl` is one dict: `imlist` (database names), `qimlist` (query names, not in
imlist) and `gnd` (one dict per query, in qimlist order: `bbx` [x1, y1, x2, y2] in original pixels and
`easy`, `hard`, `junk` 0-based indices into imlist). Images are `<root>/jpg/<name>.jpg`.

The file is a Python pickle, so it is read with `GroundTruthUnpickler`, which builds plain containers,
strings and numbers and admits no global except numpy's array and scalar reconstruction (in case a copy
stores arrays); anything else (e.g. `os.system`) is refused with one error before it is called. Numpy
values are turned into plain lists and numbers.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plumbing import DatasetError

# numpy's reconstruction of arrays and scalars under its 1.x and 2.x module names; nothing else is admitted
_NUMPY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype")}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle that names a global the ground-truth reader does not admit."""


class GroundTruthUnpickler(pickle.Unpickler):
    """Unpickler for data files: plain types, numpy arrays; every other global raises `RefusedGlobal`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_GLOBALS:
            raise RefusedGlobal(f"refusing to unpickle the global {module}.{name}")
        import numpy as np

        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
        return getattr(multiarray, name)


def _plain(value: Any) -> Any:
    """Numpy arrays and scalars -> lists and Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy array or scalar
        return value.tolist()
    return value


def restricted_load(path: str | Path) -> Any:
    """Read a pickled data file with `GroundTruthUnpickler`; DatasetError (one line) if it cannot be read."""
    data = Path(path).read_bytes()
    try:
        return _plain(GroundTruthUnpickler(io.BytesIO(data)).load())
    except RefusedGlobal as e:
        raise DatasetError(f"{path}: {e}: a ground-truth file holds only lists, dicts, strings and numbers") from None
    except Exception as e:  # truncated or not a pickle: a data error, reported on one line
        raise DatasetError(f"{path}: not a readable ground-truth pickle ({type(e).__name__}: {e})") from None


@dataclass
class GroundTruth:
    """A revisited dataset: its folder, database and query names, per-query dicts (bbx, easy, hard, junk)."""

    root: Path
    imlist: list[str]
    qimlist: list[str]
    gnd: list[dict]

    def image(self, name: str) -> Path:
        """Path of the image of a list entry (entries carry no extension)."""
        return self.root / "jpg" / f"{name}.jpg"


def dataset_root(data_path: str | Path, dataset: str) -> Path:
    """The folder holding gnd_<dataset>.pkl: `data_path/<dataset>` or `data_path` itself."""
    name = f"gnd_{dataset}.pkl"
    for root in (Path(data_path) / dataset, Path(data_path)):
        if (root / name).is_file():
            return root
    raise DatasetError(
        f"data_path={str(data_path)!r}: {dataset}/{name} not found "
        f"(expected the revisitop layout: <data_path>/{dataset}/{name} and <data_path>/{dataset}/jpg/)"
    )


def _check(raw: Any, where: Path) -> None:
    """Raise DatasetError unless `raw` has the ground-truth structure with indices in range."""

    def fail(msg: str) -> None:
        raise DatasetError(f"{where}: {msg}")

    if not isinstance(raw, dict) or not {"imlist", "qimlist", "gnd"} <= set(raw):
        fail("expected a dict with imlist, qimlist and gnd")
    lists = [raw["imlist"], raw["qimlist"], raw["gnd"]]
    if not all(isinstance(x, list) for x in lists) or not all(isinstance(x, str) for x in lists[0] + lists[1]):
        fail("imlist and qimlist must be lists of names, gnd a list")
    n_db = len(raw["imlist"])
    if len(raw["gnd"]) != len(raw["qimlist"]):
        fail(f"{len(raw['gnd'])} gnd entries for {len(raw['qimlist'])} queries")
    for q, g in enumerate(raw["gnd"]):
        if not isinstance(g, dict) or not {"easy", "hard", "junk"} <= set(g):
            fail(f"gnd[{q}] lacks easy/hard/junk")
        for key in ("easy", "hard", "junk"):
            if not all(isinstance(i, int) and 0 <= i < n_db for i in g[key]):
                fail(f"gnd[{q}][{key!r}] holds indices outside 0..{n_db - 1}")
        if "bbx" in g and (len(g["bbx"]) != 4 or not all(isinstance(v, (int, float)) for v in g["bbx"])):
            fail(f"gnd[{q}]['bbx'] must be 4 numbers x1, y1, x2, y2")


def load_ground_truth(data_path: str | Path, dataset: str, need_boxes: bool = False) -> GroundTruth:
    """Read and check `gnd_<dataset>.pkl` and that every listed image exists; DatasetError otherwise."""
    root = dataset_root(data_path, dataset)
    where = root / f"gnd_{dataset}.pkl"
    raw = restricted_load(where)
    _check(raw, where)
    gt = GroundTruth(root, list(raw["imlist"]), list(raw["qimlist"]), list(raw["gnd"]))
    if need_boxes and not all("bbx" in g for g in gt.gnd):
        raise DatasetError(f"{where}: crop_queries=true needs a bbx for every query")
    missing = [n for n in gt.imlist + gt.qimlist if not gt.image(n).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} listed images missing under {root / 'jpg'}, e.g. {missing[0]}.jpg")
    return gt
