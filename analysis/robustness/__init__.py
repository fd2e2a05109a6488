"""Robustness suite (issue 9; reference §3.8): occlusion, patch shuffle, common corruptions,
backgrounds challenge, natural adversarial examples and part-wise linear probing.

Each test is `run(classifier, cfg[, info]) -> dict` plus `python -m analysis.robustness.<test>
classifier=FILE [backbone=FILE] key=value` writing config.yaml, results.json and a plot into
`output_dir`. `load_classifier` reads eval_linear's head (+ its backbone file) or a fine-tuned
classifier; `demo_robustness` is the short run on the demo world.
"""

from typing import Any

from .common import load_classifier, load_output_map

__all__ = ["demo_robustness", "load_classifier", "load_output_map"]


def __getattr__(name: str) -> Any:
    # Imported on first use: importing the tests here would make `python -m analysis.robustness.<test>`
    # find its own module already loaded (runpy's RuntimeWarning).
    if name == "demo_robustness":
        from .demo import demo_robustness

        return demo_robustness
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
