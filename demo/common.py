"""What every stage of the demo shares: where things are, and building evaluation configs.

The stages write no results.json themselves: every evaluation runs through `evalkit.evaluate`, the same
shell as its command (checks, run folder, config.yaml, results.json with provenance)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class NotRun(Exception):
    """An evaluation this tree or this run cannot do (a missing package or public name, an earlier stage not
    run): the closing table says why instead of failing."""


@dataclass
class Context:
    """The run folder, the world, the backbone file of each model and the evaluation budgets."""

    out: Path
    world: Path
    models: dict[str, Path]  # model folder name (live, reference, random_init) -> backbone file
    budgets: dict[str, float] = field(default_factory=dict)
    device: str = "auto"
    image_size: int = 64  # the classification images' side (the models' training size)
    threads: int = 0  # torch CPU threads of every evaluation (0: every core)

    def folder(self, stage: str, model: str, evaluation: str = "") -> Path:
        """`<out>/<stage>/<model>/<evaluation>`: the report names its rows by the model folder."""
        path = self.out / stage / model
        return path / evaluation if evaluation else path

    @property
    def classification(self) -> Path:
        return self.world / "classification"


def make_config(schema: type, **values: Any) -> Any:
    """`schema(**values)`, with the batch-size key under the name the schema has.

    The evaluation configs moved from `batch_size` to the interface's `batch_size_per_gpu` and gained
    `precision`; a tree with either form runs the demo (keys the schema lacks among these are dropped).
    """
    names = {f.name for f in dataclasses.fields(schema)}
    if "batch_size_per_gpu" in values and "batch_size_per_gpu" not in names and "batch_size" in names:
        values["batch_size"] = values.pop("batch_size_per_gpu")
    for optional in ("precision", "device", "seed", "progress", "threads"):
        if optional in values and optional not in names:
            values.pop(optional)
    return schema(**values)


def write_json(path: Path, data: Any) -> None:
    """A side file of the demo (not a results.json: the report reads those as evaluations)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
