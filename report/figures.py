"""Figures: PNGs as data URIs for the self-contained HTML, and learning curves drawn from training logs."""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

from .records import Result

log = logging.getLogger(__name__)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def data_uri(path: Path) -> str | None:
    """`data:image/png;base64,...` for a PNG file, None when the file is not a PNG."""
    data = path.read_bytes()
    if not data.startswith(PNG_MAGIC):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def caption(png: Path, group_dir: Path) -> str:
    """A figure's caption from its name: `attention/attn_grid_00.png` -> 'attention / attn grid 00'."""
    try:
        rel = png.relative_to(group_dir).with_suffix("")
    except ValueError:
        rel = Path(png.stem)
    return " / ".join(re.sub(r"[_\-]+", " ", part) for part in rel.parts)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def draw_curves(results: list[Result], out_dir: Path) -> list[tuple[Path, str, str]]:
    """One PNG per result with training curves (loss, online k-NN, the authors' per-epoch accuracy).

    Returns (path, caption, the result's folder) triples; an empty list when there is nothing to draw or no
    matplotlib.
    """
    todo = [r for r in results if any(len(points) >= 1 for points in r.curves.values())]
    if not todo:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the report still works without the curves
        log.warning("matplotlib is not installed: learning curves are not drawn")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = []
    for r in todo:
        curves = {k: v for k, v in r.curves.items() if v}
        fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.2), squeeze=False)
        for ax, (name, points) in zip(axes[0], curves.items(), strict=True):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 40 else None, markersize=3)
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("step" if name == "loss" else ("iteration" if "mIoU" in name else "epoch"))
            ax.grid(alpha=0.3)
        title = r.evaluation.title if r.evaluation else "training"
        fig.suptitle(f"{r.rel}: {title} ({r.source})", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"curve_{len(drawn):02d}_{_safe(r.rel)}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        drawn.append((path, f"learning curve of {r.rel} ({', '.join(curves)}; from {r.source})", r.rel))
    return drawn
