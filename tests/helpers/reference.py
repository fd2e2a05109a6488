"""The one way tests reach the authors' reference fixtures (../shared/fixtures/reference, or elsewhere).

The folder is `$IBOT_REFERENCE_DIR` when set, else `../shared/fixtures/reference` beside the checkout.
Tests take every size, setting and name from the files themselves (`settings(name)`, the tensors' shapes),
so the same tests run unchanged on another fixture set with the same file names.

`load_reference` unpickles `.pt` / `.pth` files (`weights_only=False`): tests only, where the fixtures are
trusted files; production code never loads like this.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "IBOT_REFERENCE_DIR"
DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "reference"


def reference_dir() -> Path:
    """The fixture folder: `$IBOT_REFERENCE_DIR`, else ../shared/fixtures/reference beside the repo."""
    folder = Path(os.environ[ENV]).expanduser() if os.environ.get(ENV) else DEFAULT
    if not folder.is_dir():
        raise FileNotFoundError(f"reference fixtures not found at {folder}: set {ENV} or check out ../shared")
    return folder


def reference_path(name: str) -> Path:
    """Path of one fixture file (it must exist)."""
    path = reference_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"reference fixture {name} not found in {path.parent}")
    return path


def load_reference(name: str) -> Any:
    """A fixture's contents: JSON for `.json`, else `torch.load` of the (trusted) file."""
    path = reference_path(name)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    import torch  # only the tensor fixtures need it

    return torch.load(path, weights_only=False)


def settings(name: str) -> dict[str, Any]:
    """The `settings` dict a fixture file stores (the configuration that produced it)."""
    data = load_reference(name)
    if not isinstance(data, dict) or "settings" not in data:
        raise KeyError(f"reference fixture {name} holds no settings")
    return data["settings"]
