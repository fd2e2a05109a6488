"""`python -m pretrain.export pretrained=FILE format=... output_dir=FOLDER`: extract and convert a backbone.

The config (`pretrain.config.ExportConfig`) is parsed and checked before torch is imported, so `--help`
answers at once; the work is `pretrain.export_work.run_export` (the formats are described there).

    python -m pretrain.export pretrained=checkpoint.pth checkpoint_key=teacher format=safetensors \\
        output_dir=exported with_head=true        # writes exported/backbone.safetensors
"""

from __future__ import annotations

import logging
import sys

from plumbing import parse_config, run_command

from .config import ExportConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m pretrain.export key=value ...`; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    return run_command("pretrain.export", lambda: _export(argv))


def _export(argv: list[str] | None) -> int:
    cfg = parse_config(ExportConfig, argv, prog="pretrain.export")
    cfg.check()
    from .export_work import run_export  # the work imports torch: only after the config parsed

    done = run_export(cfg)
    head = " + head" if done["head"] else ""
    print(f"wrote {done['arch']}{head} ({done['source_format']} -> {cfg.format}): {done['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
