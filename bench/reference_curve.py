"""The learning curve of a reference pre-training run: loss per epoch from its log, k-NN top-1 per export.

  python bench/reference_curve.py log=RUN/log.jsonl[.gz] knn=OUT/curve.json out=curve.png [title=...]

`log`: the run's `log.jsonl` (one JSON line per step, as `python -m pretrain` writes; gzipped is read too);
`knn`: `curve.json` of `bench/learning.py` ([{"epoch", "minutes", "top1"}], epoch 0 = random init).
Draws the mean [CLS] and patch losses per epoch and the k-NN curve with the random-init line.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path


def epoch_means(log: Path) -> dict[str, list[float]]:
    """Per-epoch means of the logged losses: {"epoch": [...], "cls": [...], "patch": [...], "loss": [...]}."""
    opener = gzip.open if log.suffix == ".gz" else open
    sums: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[int, int] = defaultdict(int)
    with opener(log, "rt") as f:
        for line in f:
            row = json.loads(line)
            if "epoch" not in row or "loss" not in row:
                continue
            counts[row["epoch"]] += 1
            for k in ("cls", "patch", "loss"):
                sums[row["epoch"]][k] += row[k]
    epochs = sorted(counts)
    return {"epoch": epochs, **{k: [sums[e][k] / counts[e] for e in epochs] for k in ("cls", "patch", "loss")}}


def plot(losses: dict[str, list[float]], knn: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, label in (("cls", "[CLS] loss"), ("patch", "patch (MIM) loss")):
        a.plot([e + 1 for e in losses["epoch"]], losses[k], label=label)
    a.set_xlabel("epoch")
    a.set_ylabel("mean loss per epoch")
    a.legend()
    a.grid(alpha=0.3)
    base = knn[0]["top1"]
    trained = [c for c in knn if c["epoch"] > 0]
    b.plot([c["epoch"] for c in trained], [c["top1"] for c in trained], "o-", label="teacher exports")
    b.axhline(base, color="grey", ls="--", label=f"random init ({base:.1f}%)")
    b.axhline(base + 25, color="green", ls=":", label="random init + 25")
    b.set_xlabel("epoch")
    b.set_ylabel("k-NN top-1 (k=20, %)")
    b.legend()
    b.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str]) -> int:
    opts = dict(a.split("=", 1) for a in argv if "=" in a)
    missing = [k for k in ("log", "knn", "out") if k not in opts]
    if missing:
        print(f"error: give {', '.join(k + '=' for k in missing)} (see the docstring)", file=sys.stderr)
        return 2
    losses = epoch_means(Path(opts["log"]))
    knn = json.loads(Path(opts["knn"]).read_text())
    plot(losses, knn, Path(opts["out"]), opts.get("title", "reference pre-training"))
    print(f"wrote {opts['out']} ({len(losses['epoch'])} epochs, {len(knn)} k-NN points)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
