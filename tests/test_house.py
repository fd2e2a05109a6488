"""The house rules a reader and a tool rely on, checked from the source: calls that can be followed (no
"module:function" strings, no renamed re-exports, every public name defined under its own name), one
base class for user errors and one place that prints them, one writer of results.json."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import plumbing
from plumbing import declared_names
from tests.test_layers import LAYERS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [p for p in LAYERS if (ROOT / p / "__init__.py").is_file() and p != "bench"]
SOURCES = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
STRING_TARGET = re.compile(r"""["'][a-z_]+(\.[a-z_]+)*:[a-z_]+["']""")


def _inits() -> list[Path]:
    return [p for p in SOURCES if p.name == "__init__.py"]


def test_no_module_function_strings_as_call_targets():
    found = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
             if STRING_TARGET.search(line) and "import_module" not in line]  # fmt: skip
    assert found == []


def test_no_renamed_reexports_in_any_package():
    renamed = []
    for init in _inits():
        for node in ast.walk(ast.parse(init.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                renamed += [f"{init.relative_to(ROOT)}: {a.name} as {a.asname}" for a in node.names if a.asname]
    assert renamed == []


@pytest.mark.parametrize("init", _inits(), ids=lambda p: str(p.parent.relative_to(ROOT)))
def test_every_public_name_is_its_definitions_name(init):
    package = ".".join(init.parent.relative_to(ROOT).parts)
    lazy, eager = declared_names(package, init)
    module = importlib.import_module(package)
    for name in sorted(set(lazy) | set(eager)):
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__name__ == name, f"{package}.{name} is {value.__module__}.{value.__name__}"
        if name in lazy:  # the declared module is where it lives (or imports it from)
            assert hasattr(importlib.import_module(lazy[name]), name)


def test_user_errors_share_one_base():
    errors = [v for v in vars(plumbing).values() if inspect.isclass(v) and issubclass(v, Exception)]
    assert len(errors) >= 10 and all(issubclass(e, plumbing.UserError) for e in errors)


def test_only_the_shell_prints_error_lines():
    """`prog: error: ...` is printed by plumbing.shell only (every command returns through run_command)."""
    shell = Path("plumbing/shell.py")
    printers = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
                if re.search(r"print\(.*: error:", line) and p.relative_to(ROOT) != shell]  # fmt: skip
    assert printers == []


def test_one_writer_of_results_json():
    """Only plumbing.results writes results.json; everything else calls its write_results."""
    writers = []
    for p in SOURCES:
        if p.relative_to(ROOT) == Path("plumbing/results.py"):
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if "results.json" in line and re.search(r"write_text|open\(|json\.dump\(", line):
                writers.append(f"{p.relative_to(ROOT)}:{i}")
    assert writers == []


def test_every_console_script_is_a_command_main():
    """Each `ibot-*` script points at the `main` of the file `python -m` runs for that command."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) >= 27
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        assert function == "main", name
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{name}: {path} does not exist"
        tree = ast.parse(path.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{name}: {path}"


def _calls_into_work(tree: ast.Module, function: ast.FunctionDef, seen: set[str]) -> bool:
    """Whether `function` (or a function of the same file it names) imports from a `*work` module and calls
    what it imported (or hands it to a call): the one hop from a command's `main` to its `run`."""
    local = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    imported = {a.asname or a.name for n in ast.walk(function) if isinstance(n, ast.ImportFrom)
                and (n.module or "").split(".")[-1].endswith("work") for a in n.names}  # fmt: skip
    calls = [n for n in ast.walk(function) if isinstance(n, ast.Call)]  # called, or handed to a call
    used = {a.id for c in calls for a in [c.func, *c.args] if isinstance(a, ast.Name)}
    if imported & used:
        return True
    named = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)} & set(local)
    return any(_calls_into_work(tree, local[m], seen | {m}) for m in sorted(named - seen))


def test_every_command_main_reaches_its_work():
    """A walk from each command's `main` (the console scripts' targets) reaches the work it runs: a call to a
    name imported from its `*work` module, in `main` or in a function of the command file that `main` names."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    lost = []
    for name, target in sorted(scripts.items()):
        path = ROOT / (target.partition(":")[0].replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        if not _calls_into_work(tree, main, {"main"}):
            lost.append(f"{name}: {path.relative_to(ROOT)}")
    assert lost == []


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
