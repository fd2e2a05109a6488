"""Retrieval metrics (numpy only): the trapezoid AP, revisited Oxford/Paris mAP and mP@k, Copydays mAP.

AP is the trapezoidal integration of the precision-recall curve used by the Holidays/revisitop tools: for
positives at 0-based ranks r_0 < r_1 < ... (n positives in all),
    AP = sum_j (1/n) * (a_j + b_j) / 2,   a_j = 1 if r_j = 0 else j / r_j,   b_j = (j + 1) / (r_j + 1).
A single positive at rank 1 scores 0.25, not 0.5.

Revisited protocols (revisitop; Easy is given for completeness, the papers report Medium and Hard):
- Easy:   positives = easy,         junk = junk + hard
- Medium: positives = easy + hard,  junk = junk
- Hard:   positives = hard,         junk = junk + easy
Junk images are deleted from the ranking (the positives ranked below them move up), never counted as
misses. A query without positives is left out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PROTOCOLS = ("easy", "medium", "hard")


def trapezoid_ap(ranks: Sequence[int], n_positives: int) -> float:
    """AP of positives found at the sorted 0-based `ranks`, out of `n_positives` (those not found add 0)."""
    if n_positives < 1:
        raise ValueError("n_positives must be >= 1")
    r = np.asarray(ranks, dtype=np.float64)  # (m,) sorted
    j = np.arange(len(r), dtype=np.float64)
    a = np.where(r == 0, 1.0, j / np.maximum(r, 1.0))  # precision just before each hit
    b = (j + 1) / (r + 1)  # precision at each hit
    return float(((a + b) / 2).sum() / n_positives)


def revisited_labels(gnd: Sequence[dict], protocol: str) -> list[dict[str, list[int]]]:
    """Per-query {"ok": positives, "junk": ignored} database indices of a revisited protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}; valid: {', '.join(PROTOCOLS)}")
    ok = {"easy": ("easy",), "medium": ("easy", "hard"), "hard": ("hard",)}[protocol]
    junk = {"easy": ("junk", "hard"), "medium": ("junk",), "hard": ("junk", "easy")}[protocol]
    return [{"ok": [i for k in ok for i in g[k]], "junk": [i for k in junk for i in g[k]]} for g in gnd]


def adjusted_ranks(ranking: np.ndarray, ok: Sequence[int], junk: Sequence[int]) -> np.ndarray:
    """0-based ranks of the positives in `ranking` (db indices, best first) once the junk is deleted."""
    ranking = np.asarray(ranking)
    pos = np.flatnonzero(np.isin(ranking, ok))  # sorted positions of the positives
    junk_pos = np.flatnonzero(np.isin(ranking, junk))
    return pos - np.searchsorted(junk_pos, pos)  # minus the junk ranked above each positive


def precision_at(ranks: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """revisitop's P@k from 0-based adjusted ranks: k is capped at the rank of the last positive."""
    if len(ranks) == 0:
        return np.zeros(len(ks))
    r1 = np.asarray(ranks) + 1  # 1-based
    caps = [min(k, int(r1.max())) for k in ks]
    return np.array([(r1 <= c).sum() / c for c in caps], dtype=np.float64)


def revisited_map(ranking: np.ndarray, labels: Sequence[dict], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """mAP and mP@k (fractions) of rankings `(n_queries, n_db)` (db indices, best first) under `labels`.

    Returns {"mAP", "mP@k" {k: value}, "aps" (per query, None when it has no positives), "num_queries"
    (the evaluated ones)}. Rank the whole database: positives missing from a row count as never found.
    """
    ranking = np.asarray(ranking)
    if ranking.ndim != 2 or len(ranking) != len(labels):
        raise ValueError(f"ranking must be (n_queries={len(labels)}, n_db), got shape {ranking.shape}")
    aps: list[float | None] = []
    prs = []
    for row, lab in zip(ranking, labels, strict=True):
        if len(lab["ok"]) == 0:
            aps.append(None)
            continue
        ranks = adjusted_ranks(row, lab["ok"], lab["junk"])
        aps.append(trapezoid_ap(ranks, len(lab["ok"])))
        prs.append(precision_at(ranks, ks))
    done = [a for a in aps if a is not None]
    mean_p = np.mean(prs, axis=0) if prs else np.full(len(ks), np.nan)
    return {
        "mAP": float(np.mean(done)) if done else float("nan"),
        "mP@k": {int(k): float(p) for k, p in zip(ks, mean_p, strict=True)},
        "aps": aps,
        "num_queries": len(done),
    }


def topk_map(topk: np.ndarray, positives: Sequence[Sequence[int]]) -> float:
    """Copydays mAP: `topk (n_queries, K)` db indices, best first; positives beyond K add nothing."""
    aps = []
    for row, pos in zip(np.asarray(topk), positives, strict=True):
        ranks = np.flatnonzero(np.isin(row, pos))
        aps.append(trapezoid_ap(ranks, len(pos)))
    return float(np.mean(aps)) if aps else float("nan")
