"""The one shell of every evaluation and analysis command.

`run_cli(Schema, argv, prog, body)`: parse the config (`--help` prints every key without importing
torch), check the common keys before any work (output_dir usable and not another command's run, sizes
in range, device and precision known, the backbone file present), join torchrun's process group, run
`body(cfg)`, and write `config.yaml` and `results.json` (with its provenance) on rank 0. A backbone
whose weights hold NaN or inf stops the run (NonFiniteError naming the tensor) before any work. Errors go through
`plumbing.run_command`: a user error is one line `prog: error: ...` and exit 2, and nothing is
written for a run that failed on bad input; a full disk is one line naming the path (exit 1).

`run_backbone_cli` loads `pretrained=` first and calls `run(backbone, cfg)`; `evaluate(run, backbone,
cfg, prog)` is the same in-process (the demo and the benchmark call it): the one writer of an
evaluation's results.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from plumbing import ConfigError, check_folder_owner, check_range, parse_config, run_command

Body = Callable[[Any], dict]
Run = Callable[[Any, Any], dict]


def check_common(cfg: Any, require_pretrained: bool = False) -> None:
    """The checks every command shares; then the schema's own `check()` when it has one."""
    from plumbing import check_output_dir, check_precision, resolve_device

    names = {f.name for f in dataclasses.fields(cfg)}
    check_range(cfg, sorted(n for n in names if n.startswith("batch_size") or n == "epochs"), ge=1)
    check_range(cfg, [n for n in ("max_images", "num_workers", "seed", "threads") if n in names], ge=0)
    if "precision" in names:
        check_precision(cfg.precision)
    if "device" in names:
        resolve_device(cfg.device)
    if "output_dir" in names:
        check_output_dir(cfg.output_dir)
    if require_pretrained:
        if not cfg.pretrained:
            raise ConfigError("pretrained=PATH is required (an exported backbone or a training checkpoint)")
        if not Path(cfg.pretrained).exists():  # a file, or the suite's own Hugging Face export folder
            raise ConfigError(f"checkpoint not found: pretrained={cfg.pretrained} (check the path; nothing was loaded)")
    if callable(getattr(cfg, "check", None)):
        cfg.check()


def _check_owner(cfg: Any, prog: str) -> None:
    """No evaluation writes into another command's run (a pre-training run, another evaluation's)."""
    if hasattr(cfg, "output_dir"):
        check_folder_owner(cfg.output_dir, prog, [f.name for f in dataclasses.fields(cfg)])


def _precision_ran(cfg: Any) -> tuple[str | None, str | None]:
    """(precision that ran, device) for the provenance record."""
    if not hasattr(cfg, "device"):
        return None, None
    from plumbing import resolve_device, resolve_precision

    device = resolve_device(cfg.device)
    ran = resolve_precision(cfg.precision, device) if hasattr(cfg, "precision") else None
    return ran, str(device)


@contextlib.contextmanager
def _run_folder(cfg: Any) -> Iterator[None]:
    """Hold `cfg.output_dir`'s lock (rank 0), the process group and the CPU thread rule (`threads`) for the
    life of the run; a run that failed before writing anything leaves no empty folders behind."""
    from plumbing import RunLock, cpu_threads, init_distributed, is_main_process, shutdown_distributed

    out = Path(cfg.output_dir)
    created = [p for p in (out, *out.parents) if not p.exists()]  # folders this run may create
    try:
        with RunLock(out) if is_main_process() else contextlib.nullcontext():
            _, _, device = init_distributed(getattr(cfg, "device", "auto"))
            # threads=0: every core of the process. An evaluation's loader workers only decode and resize, so the
            # core rule's subtraction does not pay here: k-NN with 1 worker ran 1.48x slower on 1 thread than on
            # 2 on the quiet 2-core VM (bench/README.md, "The CPU thread rule").
            with cpu_threads(getattr(cfg, "threads", 0), 0, str(device)):
                yield
    finally:
        shutdown_distributed()
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _write(results: dict, cfg: Any, prog: str) -> Path | None:
    """config.yaml and results.json on rank 0 (None on the other ranks)."""
    from plumbing import is_main_process, save_config, write_results

    if not is_main_process():
        return None
    save_config(cfg, cfg.output_dir)
    precision, device = _precision_ran(cfg)
    return write_results(results, cfg.output_dir, prog=prog, cfg=cfg, precision=precision, device=device)


def run_cli(schema: type, argv: list[str] | None, prog: str, body: Body, require_pretrained: bool = False) -> int:
    """Parse, check, run `body(cfg) -> results`, write config.yaml + results.json (rank 0). Returns the exit code."""
    main_rank = os.environ.get("RANK", "0") == "0"  # torchrun's rank, known before torch is imported
    logging.basicConfig(level=logging.INFO if main_rank else logging.WARNING, format="%(message)s")

    def work() -> int:
        cfg = parse_config(schema, argv, prog)
        check_common(cfg, require_pretrained)
        _check_owner(cfg, prog)
        with _run_folder(cfg):
            path = _write(body(cfg), cfg, prog)
        if path is not None:
            print(f"{prog}: results written to {path}")
        return 0

    return run_command(prog, work)


def backbone_results(run: Run, backbone: Any, info: dict, cfg: Any) -> dict:
    """`run(backbone, cfg)` and the backbone it ran on (architecture, format, weights fingerprint)."""
    from pretrain import weights_fingerprint

    from .features import check_finite_weights

    check_finite_weights(backbone, getattr(cfg, "pretrained", "") or "the backbone")
    fingerprint = weights_fingerprint(backbone)  # of the weights the run starts from, before it runs
    return {**run(backbone, cfg), "backbone": {**info, "fingerprint": fingerprint}}


def run_backbone_cli(schema: type, argv: list[str] | None, prog: str, run: Run) -> int:
    """`run_cli` for evaluations of one backbone: loads `cfg.pretrained` (key `cfg.checkpoint_key`), then
    `run(backbone, cfg)`. A command passes a function of its own whose body imports its work (and torch),
    so `--help` and bad input answer before torch is imported."""

    def body(cfg: Any) -> dict:
        from pretrain import load_backbone

        backbone, info = load_backbone(cfg.pretrained, cfg.checkpoint_key)
        return backbone_results(run, backbone, info, cfg)

    return run_cli(schema, argv, prog, body, require_pretrained=True)


def evaluate(run: Run, backbone: Any, cfg: Any, prog: str, info: dict | None = None) -> dict:
    """In-process `run(backbone, cfg)` with everything the command line does around it: the common checks,
    the run folder's lock, config.yaml and results.json with provenance. Returns the results."""
    check_common(cfg)
    _check_owner(cfg, prog)
    info = info or {"arch": getattr(backbone, "arch", None) or type(backbone).__name__, "format": "in-memory"}
    with _run_folder(cfg):
        results = backbone_results(run, backbone, info, cfg)
        _write(results, cfg, prog)
    return results
