"""TensorBoard scalars of every trainer (linear probe, fine-tuning, detection, segmentation).

`ScalarLog(output_dir)` writes `output_dir/tensorboard/` on the main process only (other ranks and
`enabled=False` write nothing); TensorBoard is imported on first use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from plumbing import is_main_process


class ScalarLog:
    """`log(scalars, step, prefix)` adds every finite number of `scalars` as `prefix/name`."""

    def __init__(self, output_dir: str | os.PathLike, enabled: bool = True):
        self.dir = Path(output_dir) / "tensorboard"
        self.enabled = enabled and is_main_process()
        self._writer: Any = None

    def log(self, scalars: dict[str, Any], step: int, prefix: str = "train") -> None:
        if not self.enabled:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.dir))
        for name, value in scalars.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                self._writer.add_scalar(f"{prefix}/{name}", float(value), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
