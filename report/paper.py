"""The published numbers (`report/data/published.json`) and their lookup by metric and architecture."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "published.json"


@dataclass(frozen=True)
class Published:
    """One published number: metric id (as in `registry`), architecture label, value and where it is from."""

    metric: str
    arch: str
    value: float
    method: str
    source: str  # key into the file's `sources`
    variant: str = ""  # '' = the default entry shown beside the cells; else e.g. 'rand masks'
    note: str = ""


@dataclass(frozen=True)
class PublishedNumbers:
    """All entries and the text of their sources."""

    entries: tuple[Published, ...]
    sources: dict[str, str]
    about: str

    def lookup(self, metric: str, arch: str) -> Published | None:
        """The default (no variant) published number for `metric` at `arch`, or None."""
        return next((e for e in self.entries if e.metric == metric and e.arch == arch and not e.variant), None)

    def archs(self, metrics: list[str]) -> list[tuple[str, str]]:
        """(method, arch) pairs with a default number for any of `metrics`, in file order."""
        seen: list[tuple[str, str]] = []
        for e in self.entries:
            if e.metric in metrics and not e.variant and (e.method, e.arch) not in seen:
                seen.append((e.method, e.arch))
        return seen

    def row(self, method: str, arch: str, metrics: list[str]) -> list[Published | None]:
        """The default entries of (method, arch) for each of `metrics`."""
        return [
            next((e for e in self.entries if (e.metric, e.arch, e.method) == (m, arch, method) and not e.variant), None)
            for m in metrics
        ]


@cache
def load_published(path: str | None = None) -> PublishedNumbers:
    """Read the published-numbers file (default: the one shipped in `report/data/`)."""
    data = json.loads(Path(path or DATA).read_text())
    entries = tuple(
        Published(
            e["metric"], e["arch"], float(e["value"]), e["method"], e["source"], e.get("variant", ""), e.get("note", "")
        )  # fmt: skip
        for e in data["numbers"]
    )
    return PublishedNumbers(entries, dict(data["sources"]), data.get("about", ""))
