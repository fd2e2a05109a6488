"""Public names of a package whose modules import torch, imported on first use (PEP 562).

A package lists those names as ordinary imports under `if TYPE_CHECKING:` in its `__init__.py`, so an
IDE, mypy and a call-graph walk follow them to their definitions; `lazy_package(__name__)` reads the
same lines and imports each name when it is first used. `import pkg` therefore costs nothing and
`python -m <command> --help` answers before torch is imported. A renamed import (`as`) is refused:
a public name is the name of its definition.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(package: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def declared_names(package: str, init_file: str | Path) -> tuple[dict[str, str], list[str]]:
    """(lazy table: name -> module, eager names) read from a package's `__init__.py`: the `from X import
    name` lines under `if TYPE_CHECKING:` are lazy, the other top-level `from .X import name` are eager."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    lazy: dict[str, str] = {}
    eager: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for line in node.body:
                if isinstance(line, ast.ImportFrom):
                    for alias in line.names:
                        if alias.asname and alias.asname != alias.name:
                            raise ImportError(f"{package}: renamed re-export {alias.name} as {alias.asname}")
                        lazy[alias.name] = _absolute(package, line)
        elif isinstance(node, ast.ImportFrom) and node.level:
            eager += [a.asname or a.name for a in node.names]
    return lazy, eager


def lazy_package(package: str) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """The package's `__getattr__`, `__dir__` and `__all__` (the lazy and the eager public names)."""
    table, eager = declared_names(package, sys.modules[package].__file__)

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(table) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, sorted(set(table) | {n for n in eager if not n.startswith("_")})
