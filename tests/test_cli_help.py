"""Every command that evaluates or analyses a backbone takes the same common keys with the same meaning and
defaults, and `--help` prints every key with its default and meaning without importing torch."""

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit import COMMON_KEYS, EvalConfig

ROOT = Path(__file__).resolve().parents[1]
# the in-process runs below execute command modules that earlier tests imported already
pytestmark = pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
# every command built on the evaluation interface: python -m <command>
COMMANDS = [
    "eval_knn", "eval_knn.unsup", "eval_linear", "eval_linear.logreg", "finetune", "detection", "segmentation",
    "analysis.attention", "analysis.correspondence", "analysis.explore", "analysis.patterns", "analysis.pca",
    "analysis.robustness.occlusion", "analysis.robustness.shuffle", "analysis.robustness.corruptions",
    "analysis.robustness.backgrounds", "analysis.robustness.natural_adv", "analysis.robustness.partwise",
    "retrieval", "retrieval.copydays", "video_seg",
]  # fmt: skip
# other commands: --help must be instant too, keys of their own
OTHER_COMMANDS = ["pretrain", "detection.eval", "demo_world", "pretrain.export", "report", "demo", "benchmark"]
SAME_DEFAULT = {k: v.default for k, v in EvalConfig.__dataclass_fields__.items()}
# Defaults a protocol fixes (the reason is in each command's --help): the authors ran these in fp32 or with
# another seed, and the commands reproduce their numbers by default. The keys still mean the same.
PROTOCOL_DEFAULTS = {
    ("analysis.attention", "precision"): "fp32",  # the thresholded masks move under bf16
    ("analysis.explore", "precision"): "fp32",  # the thresholded masks move under bf16
    ("analysis.correspondence", "seed"): 1,  # the authors' seed
    ("retrieval", "precision"): "fp32",
    ("retrieval.copydays", "precision"): "fp32",
    ("video_seg", "precision"): "fp32",
}

PROBE = """
import json, runpy, sys
sys.argv = [{mod!r}, "--help"]
try:
    runpy.run_module({mod!r}, run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as e:
    code = e.code
print("\\n@@" + json.dumps({{"code": code, "torch": "torch" in sys.modules}}))
"""


def help_of(command: str) -> tuple[str, dict]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(mod=command)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    text, _, tail = proc.stdout.rpartition("\n@@")
    assert tail, proc.stderr
    return text, json.loads(tail)


def key_lines(text: str) -> dict[str, str]:
    """`  key = default  # meaning` lines -> {key: line}."""
    return {ln.split("=", 1)[0].strip(): ln for ln in text.splitlines() if ln.startswith("  ") and " = " in ln}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_the_common_keys_with_the_same_defaults(command):
    text, probe = help_of(command)
    assert probe == {"code": 0, "torch": False}, probe  # answered before torch was imported
    assert text.startswith(f"usage: python -m {command} "), text.splitlines()[:1]
    keys = key_lines(text)
    assert set(COMMON_KEYS) <= set(keys), set(COMMON_KEYS) - set(keys)
    for key in COMMON_KEYS:
        line = keys[key]
        assert "  # " in line, f"{command}: {key} has no meaning"
        default = line.split(" = ", 1)[1].split("  # ")[0]
        if key == "output_dir":
            assert default == repr(f"runs/{command}"), line
        elif key == "batch_size_per_gpu":
            assert int(default) >= 1, line
        else:
            assert default == repr(PROTOCOL_DEFAULTS.get((command, key), SAME_DEFAULT[key])), line
    undocumented = [k for k, ln in keys.items() if "  # " not in ln]
    assert not undocumented, f"{command}: keys without a meaning: {undocumented}"


@pytest.mark.parametrize("command", OTHER_COMMANDS)
def test_other_commands_answer_help_without_torch(command):
    if not (ROOT / command.split(".")[0]).is_dir():
        pytest.fail(f"{command}: package missing")
    text, probe = help_of(command)
    assert probe == {"code": 0, "torch": False}, probe
    assert text.startswith(f"usage: python -m {command} "), text.splitlines()[:1]
    keys = key_lines(text)
    assert keys and all("  # " in ln for ln in keys.values()), [k for k, ln in keys.items() if "  # " not in ln]


def run_command(command: str, argv: list[str]) -> int:
    """`python -m command argv...` in this process; returns the exit code."""
    saved = sys.argv
    sys.argv = [command, *argv]
    try:
        runpy.run_module(command, run_name="__main__", alter_sys=False)
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = saved
    return 0


@pytest.mark.parametrize("command", COMMANDS)
def test_batch_size_zero_is_refused_before_any_work(command, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        run_command(command, [f"output_dir={out}", "batch_size_per_gpu=0", f"pretrained={tmp_path / 'none.pth'}"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "batch_size_per_gpu must be >= 1" in err and "\n" not in err and not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_output_dir_that_is_a_file_is_refused_before_any_work(command, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    assert run_command(command, [f"output_dir={target}", f"pretrained={tmp_path / 'none.pth'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is an existing file" in err and "\n" not in err and target.read_text() == "x"
