"""Public names of a package, imported on first use (PEP 562).

Every package of the suite lists its public names in one table; `import pkg` costs nothing until a
name is used, so `python -m <command> --help` answers before torch is imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`table`: public name -> "submodule" (same name there) or "submodule:name". Returns the package's
    `__getattr__` and `__dir__`."""

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = table[name].partition(":")
        value = getattr(importlib.import_module(f"{package}.{module}"), attr or name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(table) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
