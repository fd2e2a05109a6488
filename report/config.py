"""The report's config (imports no torch: `python -m report --help` answers at once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plumbing import ConfigError, check_output_dir, check_range


@dataclass
class ReportConfig:
    """Set a run folder's results beside the paper's published numbers: writes report.md and report.html."""

    run_dir: str = ""  # folder to read: evaluation folders (results.json + config.yaml) and the authors' log folders
    output_dir: str = ""  # folder for report.md, report.html and drawn curves ('' = <run_dir>/report)
    arch: str = ""  # architecture of results that record none, e.g. ViT-S/16 ('' = unknown)
    title: str = "iBOT suite report"  # heading of the report
    max_figures_per_folder: int = 40  # figures embedded per evaluation folder (0 = all); the others are listed
    curves: bool = True  # draw learning curves from training logs (log.jsonl, knn.jsonl, the authors' log.txt)

    def report_dir(self) -> Path:
        """Where the report goes."""
        return Path(self.output_dir) if self.output_dir else Path(self.run_dir) / "report"

    def check(self) -> None:
        """One-line ConfigError for values that cannot work, before anything is read or written."""
        if not self.run_dir:
            raise ConfigError("run_dir=FOLDER is required (a folder holding evaluation output folders)")
        if not Path(self.run_dir).is_dir():
            raise ConfigError(f"run_dir={self.run_dir!r} is not a folder")
        check_range(self, "max_figures_per_folder", ge=0)
        check_output_dir(self.report_dir())
