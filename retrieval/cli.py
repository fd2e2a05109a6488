"""The two commands' entry points (light: the evaluation modules are imported after the config parsed)."""

from __future__ import annotations

from evalkit import run_backbone_cli

from .config import CopydaysConfig, RetrievalConfig


def main(argv: list[str] | None = None) -> int:
    """`python -m retrieval key=value ...`: revisited Oxford/Paris retrieval; returns the exit code."""
    return run_backbone_cli(RetrievalConfig, argv, "retrieval", "retrieval.evaluate:run")


def main_copydays(argv: list[str] | None = None) -> int:
    """`python -m retrieval.copydays key=value ...`: Copydays copy detection; returns the exit code."""
    return run_backbone_cli(CopydaysConfig, argv, "retrieval.copydays", "retrieval.copy_detection:run")
