"""What the report knows about one result folder, and how models and architectures are named."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .registry import Evaluation, known_token, tokens

VIT_LETTERS = {"vit_tiny": "T", "vit_small": "S", "vit_base": "B", "vit_large": "L"}
VIT_DEPTH = {"vit_tiny": 12, "vit_small": 12, "vit_base": 12, "vit_large": 24}
SWIN_LETTERS = {"swin_tiny": "T", "swin_small": "S", "swin_base": "B", "swin_large": "L"}
# Parameters of the authors' fine-tuned classifiers (backbone + 1000-way head), in millions -> arch.
PARAM_RANGES = ((20.0, 24.0, "ViT-S/16"), (26.0, 30.0, "Swin-T"), (84.0, 90.0, "ViT-B/16"), (300.0, 310.0, "ViT-L/16"))
_NAME_RE = re.compile(r"(vit|swin)[-_ ]?(tiny|small|base|large|[tsbl])(?![a-z])[-_/ ]?(\d+)?", re.IGNORECASE)


@dataclass
class Result:
    """One evaluation folder (or one authors' log) as the report reads it."""

    folder: Path  # the folder holding results.json (or the log)
    rel: str  # that folder relative to the run folder ('.' for the run folder itself)
    evaluation: Evaluation | None  # None: an unknown results.json ("other results")
    model: str  # row label of the model evaluated
    arch: str  # e.g. ViT-S/16; '' when unknown
    metrics: dict[str, float] = field(default_factory=dict)  # metric id (split-suffixed for 1% / 10%) -> number
    split: str | None = None  # '1%' / '10%' for the semi-supervised label fractions
    source: str = "results.json"  # or the authors' log file name
    config_text: str = ""  # config.yaml as written
    results: dict[str, Any] = field(default_factory=dict)  # results.json (or the parsed log summary)
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # name -> (x, y) points to draw
    mtime: float = 0.0


def arch_label(info: Any) -> str:
    """'ViT-S/16' from a backbone info dict (arch, patch_size, depth), '' when it says nothing useful."""
    if isinstance(info, str):
        info = {"arch": info}
    if not isinstance(info, dict) or not isinstance(info.get("arch"), str):
        return ""
    arch, patch = info["arch"], info.get("patch_size")
    if arch in VIT_LETTERS:
        label = f"ViT-{VIT_LETTERS[arch]}" + (f"/{patch}" if patch else "")  # no guess when the patch is unknown
        depth = info.get("depth")
        return label + (f" (depth {depth})" if isinstance(depth, int) and depth != VIT_DEPTH[arch] else "")
    if arch in SWIN_LETTERS:
        window = info.get("window_size")
        return f"Swin-{SWIN_LETTERS[arch]}" + (f"/{window}" if window else "")
    return arch if re.fullmatch(r"(vit|swin|deit)_\w+", arch) else ""  # not a file name or other text


def arch_from_results(results: dict, config: dict | None) -> str:
    """The architecture recorded by an evaluation: backbone info, a classifier's info, the config's arch keys."""
    for info in (results.get("backbone"), results.get("classifier"), results.get("arch"), results.get("head")):
        label = arch_label(info)
        if label:
            return label
    if config and isinstance(config.get("arch"), str):
        kwargs = config.get("arch_kwargs") if isinstance(config.get("arch_kwargs"), dict) else {}
        return arch_label({**kwargs, "arch": config["arch"], "patch_size": config.get("patch_size"),
                           "depth": config.get("depth"), "window_size": config.get("window_size")})  # fmt: skip
    return ""


def arch_from_name(text: str) -> str:
    """'vit_small_16', 'vits16', 'ViT-B/16', 'swin_tiny_7' in a path -> the label ('' when none).

    For the authors' logs only, which record no architecture: the suite's results.json records its own."""
    m = _NAME_RE.search(text)
    if not m:
        return ""
    family, size, num = m.group(1).lower(), m.group(2).lower()[0].upper(), m.group(3)
    if family == "vit":
        return f"ViT-{size}/{num or 16}"
    return f"Swin-{size}" + (f"/{num}" if num else "")


def arch_from_params(n_parameters: Any) -> str:
    """An authors' fine-tuning log's parameter count -> the architecture it implies ('' when none fits)."""
    if not isinstance(n_parameters, (int, float)):
        return ""
    millions = n_parameters / 1e6
    return next((label for lo, hi, label in PARAM_RANGES if lo <= millions <= hi), "")


def model_label(rel: str, fallback: str = "") -> str:
    """The model a folder's result belongs to: the words of its path that name no evaluation or stage.

    `frozen/trained/knn` -> `trained`; `random_init/eval_linear` -> `random_init`; `runs/eval_knn` -> the
    `fallback` (e.g. the `pretrained` file of its config), else 'run'.
    """
    parts = []
    for component in Path(rel).parts:
        kept = [t for t in tokens(component) if not known_token(t)]
        if kept:
            parts.append("_".join(kept))
    return "/".join(parts) or fallback or "run"


def pretrained_label(config: dict | None, results: dict, run_dir: Path) -> str:
    """The backbone file an evaluation read (its config's `pretrained`, else the results' backbone path)."""
    backbone = results.get("backbone")
    path = (config or {}).get("pretrained") or (backbone.get("path") if isinstance(backbone, dict) else "")
    if not path:
        return ""
    p = Path(str(path))
    try:
        return str(p.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return p.name
