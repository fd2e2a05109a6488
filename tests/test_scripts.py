"""Console scripts: every `[project.scripts]` target of pyproject.toml is a `main(argv=None) -> int`."""

import importlib
import inspect
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
PRESENT = {name: target for name, target in SCRIPTS.items() if (ROOT / target.split(".")[0].split(":")[0]).is_dir()}


def resolve(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def test_every_present_target_resolves_to_a_callable():
    # the packages of this tree: the core, the evaluations, the analysis tools, the demo and the world
    for name in ("ibot-pretrain", "ibot-export", "ibot-knn", "ibot-linear", "ibot-segment", "ibot-pca", "ibot-world"):
        assert name in PRESENT
    assert len(PRESENT) >= 22
    bad = {name: target for name, target in PRESENT.items() if not callable(resolve(target))}
    assert not bad


def test_every_present_target_runs_as_a_console_script():
    """The script wrapper calls `main()` with no arguments and passes its return value to sys.exit."""
    bad = []
    for name, target in PRESENT.items():
        sig = inspect.signature(resolve(target))
        try:
            sig.bind()
        except TypeError as e:
            bad.append(f"{name} -> {target}: main() {e}")
        if sig.return_annotation not in (int, "int"):
            bad.append(f"{name} -> {target}: returns {sig.return_annotation}, not an exit status (int)")
    assert not bad, "\n".join(bad)
