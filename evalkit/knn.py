"""Weighted k-NN classification of frozen features (DINO/iBOT protocol, reference §3.1).

For each query: cosine similarity (dot product of L2-normalised features) to every train feature,
the k most similar neighbours, each voting for its label with weight exp(sim / T); the classes are
ranked by summed votes and top-1/top-5 accuracies reported in percent. Every k comes from ONE
neighbour search for the largest k (the nearest k are a prefix of the nearest k_max).

Search backends: `faiss` (exact inner-product flat index; for features on a GPU the GPU index when
faiss has GPU support, `pip install 'ibot-suite[gpu]'`) or `torch` (matmul + top-k on the features'
device, in blocks of at most `SIM_BUDGET` similarities, so any bank fits: 256 MiB of scores whatever
the bank and query sizes). `auto` on CPU: torch with 2 or more torch threads, faiss with one
(bench/knn.py --rule on a 2-core AMD EPYC: torch as fast or faster in 7 of 8 cases at 2 threads, faiss
faster in 4 of 4 at 1 thread); on CUDA faiss' GPU index when faiss has GPU support, torch otherwise.
The torch search orders neighbours by similarity, then by train index (a tie goes to the lower index),
so its results are deterministic.
The class ranking follows the authors (a descending sort of the class votes), so the accuracies equal
theirs.

Top-5 on datasets with fewer than 1,000 classes: the votes range over the dataset's own `num_classes`
(the default: the largest train label + 1). The authors' script always votes over 1,000 classes, so
when a query's neighbours vote for fewer than 5 classes, its empty top-5 slots can go to classes that
do not exist in the dataset, and its top-5 differs from this suite's there. The two agree on
ImageNet-1k (`num_classes=1000`); top-1 agrees everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

SEARCH_BACKENDS = ("auto", "faiss", "torch")
SIM_BUDGET = 2**26  # similarities per block of (queries x bank rows) in the torch search: 256 MiB in float32
BANK_ROWS = 2**18  # bank rows per block at most (a 1.28M bank: 5 blocks of 256 queries x 262,144 rows)
logger = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def faiss_has_gpu(faiss) -> bool:
    """True when this faiss build has GPU support (faiss-gpu) and sees at least one GPU."""
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return False
    try:
        return int(faiss.get_num_gpus()) > 0
    except (AttributeError, RuntimeError):
        return False


def pick_backend(search: str, device: torch.device) -> str:
    """Resolve `auto` to `faiss` or `torch` for features on `device`; check explicit names.

    auto: on CPU torch with >= 2 torch threads, faiss (when installed) with one (the faster of the two in
    bench/knn.py --rule); on CUDA faiss when it has GPU support (its GPU flat index), else torch's matmul
    on the GPU (faster than a CPU index after the copy).
    """
    if search not in SEARCH_BACKENDS:
        raise ValueError(f"unknown k-NN search {search!r}; valid: {', '.join(SEARCH_BACKENDS)}")
    faiss = _faiss()
    if search == "faiss" and faiss is None:
        raise ValueError("search='faiss' but faiss is not installed (pip install faiss-cpu); use search='torch'")
    if search != "auto":
        return search
    if device.type == "cpu":
        return "faiss" if faiss is not None and torch.get_num_threads() == 1 else "torch"
    if device.type == "cuda":
        if faiss_has_gpu(faiss):
            return "faiss"
        logger.info("k-NN on CUDA with torch's search; for the GPU faiss index: pip install 'ibot-suite[gpu]'")
    return "torch"


GPU_MAX_K = 2048  # faiss' GPU k-selection limit; larger k use the CPU index


def flat_index(faiss, d: int, device: torch.device, k: int):
    """Exact inner-product index: on `device`'s GPU when it is CUDA and faiss has GPU support, else on CPU."""
    if device.type == "cuda" and faiss_has_gpu(faiss) and k <= GPU_MAX_K:
        res = faiss.StandardGpuResources()  # scratch memory pool; must outlive the index
        cfg = faiss.GpuIndexFlatConfig()
        cfg.device = device.index if device.index is not None else torch.cuda.current_device()
        index = faiss.GpuIndexFlatIP(res, d, cfg)
        index.ibot_resources = res
        return index
    return faiss.IndexFlatIP(d)


def _search_faiss(train: Tensor, test: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """faiss search on the index `flat_index` picks for the queries' device; results on that device."""
    index = flat_index(_faiss(), train.shape[1], test.device, k)
    index.add(train.detach().float().cpu().contiguous().numpy())  # (N, D)
    sims, idx = index.search(test.detach().float().cpu().contiguous().numpy(), k)  # (Q, k) each
    return torch.from_numpy(sims).to(test.device), torch.from_numpy(idx).long().to(test.device)


def _by_rank(values: Tensor, index: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The first k of rows of candidates (values, train index) by similarity, ties to the lower index: (Q, k) each.

    Two stable sorts: by index, then by value (descending), so equal values keep the index order.
    """
    index, order = index.sort(dim=1, stable=True)
    values = values.gather(1, order)
    values, order = values.sort(dim=1, descending=True, stable=True)
    return values[:, :k], index.gather(1, order[:, :k])


def _top(s: Tensor, kk: int, m: int = 16) -> tuple[Tensor, Tensor]:
    """The kk largest scores of each row of s (q, n), unsorted: (values, columns) as torch.topk gives them.

    Through strided column blocks (block b: columns b, b + L, ..., b + (m - 1) L, L = n // m): one read of
    s gives the block maxima, the kk best blocks must hold the kk best scores (unless the kk-th and
    (kk+1)-th block maxima tie: that row takes the plain top-k), so the top-k runs over kk * m scores.
    """
    q, n = s.shape
    L = n // m
    if L <= kk or 4 * kk * m > n:  # few columns: the plain top-k
        return s.topk(kk, dim=1, sorted=False)
    s3 = s[:, : m * L].view(q, m, L)
    bv, blocks = s3.amax(1).topk(kk + 1, dim=1, sorted=True)  # (q, kk + 1) block maxima, best first
    cand = s3.gather(2, blocks[:, None, :kk].expand(q, m, kk)).view(q, m * kk)  # (q, m * kk)
    if n > m * L:  # the last n - m L columns are in no block: always candidates
        cand = torch.cat([cand, s[:, m * L :]], 1)
    v, p = cand.topk(kk, dim=1, sorted=False)  # p: position in cand (m-major: p = row_in_block * kk + j)
    pb = p.clamp(max=m * kk - 1)
    i = blocks.gather(1, pb % kk) + L * (pb // kk)  # (q, kk) columns
    if n > m * L:
        i = torch.where(p >= m * kk, p - m * kk + m * L, i)
    tied = (bv[:, kk - 1] == bv[:, kk]).nonzero().flatten()
    if len(tied):
        v[tied], i[tied] = s[tied].topk(kk, dim=1, sorted=False)
    return v, i


def _blocks(train: Tensor, test: Tensor) -> tuple[int, int, Tensor]:
    """(queries per block, bank rows per block, one flat score buffer reused by every block)."""
    nb = max(1, min(train.shape[0], BANK_ROWS))
    q = max(1, min(test.shape[0], SIM_BUDGET // nb))
    return q, nb, torch.empty(q * nb, dtype=test.dtype, device=test.device)


def _search_torch(train: Tensor, test: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact top-k by dot product: blocks of queries x bank rows, one matmul and one top-k each.

    Each block keeps its k + 1 best; blocks of the bank merge by top-k. A row whose k-th and (k+1)-th
    values are equal (a tie across the last place) is redone over its whole row with a stable sort, so a
    tie goes to the lower train index as everywhere else. Memory: the score buffer (SIM_BUDGET floats) and (q, 2k)
    candidates, whatever the bank size.
    """
    n = train.shape[0]
    kk = min(k + 1, n)
    q, nb, buf = _blocks(train, test)
    sims, idx = [], []
    for qs in range(0, test.shape[0], q):
        tq = test[qs : qs + q]  # (q, D)
        vals = inds = None
        for bs in range(0, n, nb):
            bank = train[bs : bs + nb]  # (nb, D)
            s = torch.mm(tq, bank.t(), out=buf[: tq.shape[0] * bank.shape[0]].view(tq.shape[0], bank.shape[0]))
            v, i = _top(s, min(kk, bank.shape[0]))  # (q, kk)
            i = i + bs
            if vals is not None:  # merge with the best of the earlier bank blocks
                v, i = torch.cat([vals, v], 1), torch.cat([inds, i], 1)
                v, pick = v.topk(kk, dim=1, sorted=False)
                i = i.gather(1, pick)
            vals, inds = v, i
        vals, inds = _by_rank(vals, inds, kk)  # (q, kk), sorted
        if kk > k:
            for r in (vals[:, k] == vals[:, k - 1]).nonzero().flatten().tolist():
                scores = s[r : r + 1] if n <= nb else None  # the one bank block's scores are still in the buffer
                vals[r, :k], inds[r, :k] = _tied_row(train, tq[r : r + 1], k, nb, scores)
        sims.append(vals[:, :k])
        idx.append(inds[:, :k])
    return torch.cat(sims), torch.cat(idx)


def _tied_row(train: Tensor, query: Tensor, k: int, nb: int, scores: Tensor | None) -> tuple[Tensor, Tensor]:
    """The first k of one query's row (1, n) by rank (stable sort): `scores` when given, else recomputed."""
    row = scores
    if row is None:
        row = torch.cat([query @ train[bs : bs + nb].t() for bs in range(0, train.shape[0], nb)], 1)  # (1, n)
    v, i = row.sort(dim=1, descending=True, stable=True)  # (1, n): equal values stay in index order
    return v[0, :k], i[0, :k]


def search_neighbours(train: Tensor, test: Tensor, k: int, search: str = "auto") -> tuple[Tensor, Tensor]:
    """The k most similar train rows of each test row by dot product: (sims (Q, k), indices (Q, k)), sorted."""
    backend = pick_backend(search, test.device)
    k = min(k, train.shape[0])
    return (_search_faiss if backend == "faiss" else _search_torch)(train, test, k)


def vote_accuracy(
    sims: Tensor, neighbour_labels: Tensor, test_labels: Tensor, T: float, num_classes: int, chunk: int = 4096
) -> tuple[float, float]:
    """Top-1/top-5 (%) of exp(sim / T)-weighted votes of sorted neighbours (Q, k) for labels (Q,)."""
    k = sims.shape[1]
    top1 = top5 = 0
    for start in range(0, sims.shape[0], chunk):
        w = (sims[start : start + chunk] / T).exp()  # (q, k)
        votes = torch.zeros(w.shape[0], num_classes, dtype=w.dtype, device=w.device)
        votes.scatter_add_(1, neighbour_labels[start : start + chunk], w)  # (q, C)
        ranked = votes.sort(dim=1, descending=True).indices[:, : min(5, k)]  # (q, <=5), the authors' ranking
        hits = ranked == test_labels[start : start + chunk].view(-1, 1)  # (q, <=5)
        top1 += int(hits[:, 0].sum())
        top5 += int(hits.sum())
    total = sims.shape[0]
    return top1 * 100.0 / total, top5 * 100.0 / total


def knn_classify_many(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    ks: Sequence[int],
    T: float = 0.07,
    num_classes: int | None = None,
    search: str = "auto",
) -> dict[int, tuple[float, float]]:
    """{k: (top1 %, top5 %)} for every k in `ks` from one neighbour search for max(ks).

    Features must be L2-normalised (similarity is their dot product). A k larger than the train set
    uses all train samples.
    """
    if train_features.shape[0] != train_labels.shape[0] or test_features.shape[0] != test_labels.shape[0]:
        raise ValueError("features and labels must have the same number of rows")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {list(ks)}")
    num_classes = int(num_classes or int(train_labels.max()) + 1)
    train_labels = train_labels.to(test_features.device).long()
    test_labels = test_labels.to(test_features.device).long()
    sims, idx = search_neighbours(train_features, test_features, max(ks), search)  # (Q, kmax)
    neighbour_labels = train_labels[idx]  # (Q, kmax)
    return {
        k: vote_accuracy(sims[:, :k], neighbour_labels[:, :k], test_labels, T, num_classes) for k in sorted(set(ks))
    }


def knn_classify(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    k: int,
    T: float,
    num_classes: int,
    search: str = "auto",
) -> tuple[float, float]:
    """Weighted k-NN top-1/top-5 accuracy (%) of L2-normalised features, as the authors compute it."""
    many = knn_classify_many(train_features, train_labels, test_features, test_labels, [k], T, num_classes, search)
    return many[k]
