"""A tiny, trivially separable ImageFolder with train/ and val/ splits, and a tiny exported ViT."""

from pathlib import Path

import numpy as np
from PIL import Image

from pretrain import IBOTHead, build_backbone, export_backbone

CLASSES = ("red_rows", "green_cols", "blue_checks")


def _image(c: int, rng: np.random.Generator, size: int) -> np.ndarray:
    img = rng.integers(0, 60, (size, size, 3)).astype(np.int64)  # dark noise
    yy, xx = np.mgrid[:size, :size]
    pattern = [(yy // 4) % 2 == 0, (xx // 4) % 2 == 0, ((yy // 4) + (xx // 4)) % 2 == 0][c]
    img[..., c] += np.where(pattern, 190, 90)  # the class colour, striped by the class pattern
    return np.clip(img, 0, 255).astype(np.uint8)


def write_split_world(root: Path, n_train: int = 12, n_val: int = 6, size: int = 32, seed: int = 0) -> Path:
    """root/{train,val}/<class>/<i>.png for 3 classes differing by colour and pattern."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_image(c, rng, size)).save(d / f"{i:03d}.png")
    return root


def tiny_backbone(seed: int = 0):
    """A random 2-block ViT for 32 px images (patch 8)."""
    import torch

    torch.manual_seed(seed)
    return build_backbone("vit_tiny", depth=2, img_size=32, patch_size=8).eval()


def export_tiny(path: Path, with_head: bool = False, seed: int = 0) -> Path:
    """Export `tiny_backbone` (optionally with a small shared iBOT head, 8 prototypes) to `path`."""
    backbone = tiny_backbone(seed)
    head = None
    if with_head:
        head = IBOTHead(192, out_dim=8, patch_out_dim=8, shared_head=True, hidden_dim=64, bottleneck_dim=32)
    export_backbone(backbone, path, head=head)
    return path


def check_help(main, prog: str, capsys) -> str:
    """`main(["--help"])` exits 0 before any work and lists every key: the common keys with the common
    defaults (output_dir: runs/<prog>), and a one-line meaning for each key of the command's own."""
    import dataclasses

    import pytest

    from evalkit import COMMON_KEYS, EvalConfig

    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code in (0, None)
    text = capsys.readouterr().out
    keys = text.split("keys (default): meaning\n", 1)[1].splitlines()
    lines = {line.split(" = ")[0].strip(): line for line in keys if line.startswith("  ") and " = " in line}
    assert text.startswith(f"usage: python -m {prog} ")
    assert lines["output_dir"].startswith(f"  output_dir = 'runs/{prog}'")
    defaults = {f.name: f.default for f in dataclasses.fields(EvalConfig)}
    for key in COMMON_KEYS:
        if key not in ("output_dir", "batch_size_per_gpu"):
            assert lines[key].startswith(f"  {key} = {defaults[key]!r}"), lines[key]
    own = [k for k in lines if k not in COMMON_KEYS]
    assert own and all("  # " in lines[k] for k in own), [lines[k] for k in own if "  # " not in lines[k]]
    return text


def config_errors_before_work(main, argv: list[str], tmp_path: Path, capsys) -> None:
    """batch_size_per_gpu=0 and an output_dir that is a file: one line, exit 2, nothing written.

    `argv` names a data_path that does not exist: the config checks must answer before anything is read.
    """
    out = tmp_path / "never_written"
    assert main([*argv, f"output_dir={out}", "batch_size_per_gpu=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "batch_size_per_gpu must be >= 1" in err, err
    assert not out.exists()
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    assert main([*argv, f"output_dir={a_file}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is an existing file" in err, err
    assert a_file.read_text() == "not a folder"


def torch_free_imports(modules: list[str]) -> None:
    """Importing `modules` (configs, CLI shells, packages) does not import torch: `--help` stays instant."""
    import subprocess
    import sys

    code = f"import sys\nfor m in {modules!r}: __import__(m)\nassert 'torch' not in sys.modules, 'torch imported'\n"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def scalar_events(output_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars written under output_dir/tensorboard: {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(output_dir / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
