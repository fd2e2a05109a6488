"""The report's format-free blocks (`render` writes them as Markdown and HTML) and the data they are made from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paper import Paper
from .records import Result
from .tables import Cell


@dataclass(frozen=True)
class Heading:
    """A heading of `level` 1-3."""

    level: int
    text: str


@dataclass(frozen=True)
class Para:
    """One paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Grid:
    """A table: header texts and rows of cells (a Cell, or plain text)."""

    headers: list[str]
    rows: list[list[Cell | str]]


@dataclass(frozen=True)
class Code:
    """A folded block of text (a config.yaml), shown under its summary line."""

    summary: str
    text: str
    language: str = "yaml"  # the Markdown fence's language


@dataclass(frozen=True)
class Figure:
    """A PNG embedded in the page, with its caption."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Link:
    """A link to a file beside the report (an interactive page), with the text shown."""

    path: Path
    text: str


Block = Heading | Para | Grid | Code | Figure | Link


@dataclass
class ReportData:
    """What the report shows, gathered by `work.run`."""

    title: str
    run_dir: Path
    results: list[Result]
    paper: Paper
    figures: dict[str, list[Path]] = field(default_factory=dict)  # group -> PNGs found in the run folder
    curves: list[tuple[Path, str, str]] = field(default_factory=list)  # (png, caption, result folder) drawn here
    unreadable: list[str] = field(default_factory=list)
    max_figures_per_folder: int = 0
    demo: dict[str, Any] | None = None  # the demo's summary.json, when the folder is a demo's
    order: list[str] = field(default_factory=list)  # model names in the order the user gave them (benchmark.json)
