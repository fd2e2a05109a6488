"""The layers of the suite, checked from the source: imports go downward only, through public names.

0 plumbing (`plumbing`: errors, shell, configs, run folders, devices) -> 1 core (`pretrain`) -> 2 shared
evaluation layer (`evalkit`) and the data generator (`demo_world`) -> 3 evaluations (never importing each
other) -> 4 orchestration (`demo`, `report`, `benchmark`) -> `bench/`.
A package reaches another only through the names its `__init__` exports (`from pkg import name`), never
`pkg.submodule`. Tests are exempt (they may test internals).
"""

import ast
import sys
from pathlib import Path

import pytest

from plumbing import declared_names

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "plumbing": 0,
    "pretrain": 1,
    "evalkit": 2,
    "demo_world": 2,
    "eval_knn": 3,
    "eval_linear": 3,
    "finetune": 3,
    "detection": 3,
    "segmentation": 3,
    "analysis": 3,
    "retrieval": 3,
    "video_seg": 3,
    "demo": 4,
    "report": 4,
    "benchmark": 4,
    "bench": 5,
}
PACKAGES = [p for p in LAYERS if (ROOT / p).is_dir()]


def public_names(package: str) -> set[str]:
    """The names a package's `__init__` imports from its own modules (eagerly, or under TYPE_CHECKING for
    `plumbing.lazy_package`), read from the source, not imported."""
    lazy, eager = declared_names(package, ROOT / package / "__init__.py")
    return set(lazy) | set(eager)


def imports(path: Path):
    """(top package, submodule path or '', imported names) for every absolute import of a suite package."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top, _, rest = alias.name.partition(".")
                yield node.lineno, top, rest, set()
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top, _, rest = node.module.partition(".")
            yield node.lineno, top, rest, {a.name for a in node.names}


def violations(package: str) -> list[str]:
    layer = LAYERS[package]
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        where = path.relative_to(ROOT)
        for line, top, rest, names in imports(path):
            if top not in LAYERS or top == package:
                continue
            if LAYERS[top] > layer or (LAYERS[top] == layer and package != "bench"):
                found.append(f"{where}:{line}: layer {layer} ({package}) imports {top} (layer {LAYERS[top]})")
            elif rest:
                found.append(f"{where}:{line}: imports {top}.{rest}: use the names {top}/__init__.py exports")
            elif names - public_names(top):
                found.append(f"{where}:{line}: {sorted(names - public_names(top))} are not public names of {top}")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_down_through_public_names(package):
    assert violations(package) == []


def test_the_rule_catches_violations(tmp_path, monkeypatch):
    """The checker itself: an upward import, a sibling import, a submodule and a private name are all caught."""
    fake = tmp_path / "root"
    for pkg, body in {
        "pretrain": "from evalkit import run_cli\n",  # upward
        "eval_knn": "from eval_linear import run\n",  # sibling evaluation
        "evalkit": "from pretrain.loop import Run\nfrom pretrain import _hidden\n",  # submodule, private
        "eval_linear": "from pretrain import build_backbone\n",  # fine
    }.items():
        (fake / pkg).mkdir(parents=True)
        header = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
        init = header + "    from .mod import build_backbone, run, run_cli\n"
        (fake / pkg / "__init__.py").write_text(init)
        (fake / pkg / "mod.py").write_text(body)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake)
    assert len(violations("pretrain")) == 1 and "imports evalkit" in violations("pretrain")[0]
    assert len(violations("eval_knn")) == 1
    assert len(violations("evalkit")) == 2
    assert violations("eval_linear") == []
