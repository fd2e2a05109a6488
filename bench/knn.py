"""Benchmark: the suite's k-NN search against the authors' algorithm and faiss, and the rule of `search=auto`.

The authors' classifier (DINO/iBOT `knn_classifier`) splits the queries into 100 chunks, multiplies each
chunk with all train features, takes the top-k, builds a (chunk * k, classes) one-hot matrix of the
neighbours' labels, weights it by exp(sim / T), sums, sorts the classes and counts hits in the first 1
and 5. The suite's torch search multiplies blocks of queries x bank rows into one reused buffer, keeps
the top-k of each block and votes with a scatter; faiss is its exact flat inner-product index.

Default run (one JSON line): 100,000 x 384 train features, 10,000 queries, 1,000 classes, k = 200, each
of torch (twice), the authors' function and faiss timed in one process (wall and CPU seconds), the
ratios, and whether the accuracies are identical. Data: random but clustered unit vectors (classes =
noisy copies of random centroids) so that the accuracies are far from 0 and 100 %.

    .venv/bin/python bench/knn.py                      # the default run
    .venv/bin/python bench/knn.py --protocol           # also the evaluation's 4 ks (10, 20, 100, 200)
    .venv/bin/python bench/knn.py --rule               # torch, faiss and auto over several sizes
    .venv/bin/python bench/knn.py --memory             # peak RSS of a 256k x 768 bank search (scaled run)
    .venv/bin/python bench/knn.py --threads 1          # one core: no waits on a descheduled second thread
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalkit import knn_classify_many  # noqa: E402

KS = (10, 20, 100, 200)


@torch.no_grad()
def authors_knn_classifier(train_features, train_labels, test_features, test_labels, k, T, num_classes=1000):
    """The authors' weighted k-NN, step for step (DINO/iBOT `knn_classifier`); returns (top1 %, top5 %)."""
    hits1, hits5, total = 0.0, 0.0, 0
    bank = train_features.t()  # (D, N)
    n_test, num_chunks = test_labels.shape[0], 100
    per_chunk = n_test // num_chunks
    one_hot = torch.zeros(k, num_classes, device=bank.device)
    for start in range(0, n_test, per_chunk):
        feats = test_features[start : min(start + per_chunk, n_test)]
        targets = test_labels[start : min(start + per_chunk, n_test)]
        b = targets.shape[0]
        sims = torch.mm(feats, bank)  # (b, N)
        dist, idx = sims.topk(k, largest=True, sorted=True)  # (b, k)
        neighbour_labels = torch.gather(train_labels.view(1, -1).expand(b, -1), 1, idx)  # (b, k)
        one_hot.resize_(b * k, num_classes).zero_()
        one_hot.scatter_(1, neighbour_labels.view(-1, 1), 1)
        weights = dist.clone().div_(T).exp_()  # (b, k)
        probs = torch.sum(torch.mul(one_hot.view(b, -1, num_classes), weights.view(b, -1, 1)), 1)  # (b, C)
        _, ranked = probs.sort(1, True)
        correct = ranked.eq(targets.data.view(-1, 1))
        hits1 = hits1 + correct.narrow(1, 0, 1).sum().item()
        hits5 = hits5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
    return hits1 * 100.0 / total, hits5 * 100.0 / total


def clustered_features(n_train: int, n_test: int, dim: int, classes: int, noise: float, seed: int = 0):
    """L2-normalised noisy copies of random class centroids: (train x, train y, test x, test y)."""
    g = torch.Generator().manual_seed(seed)
    centroids = F.normalize(torch.randn(classes, dim, generator=g), dim=1)  # (C, D)

    def draw(n: int):
        y = torch.randint(0, classes, (n,), generator=g)
        return F.normalize(centroids[y] + noise * torch.randn(n, dim, generator=g), dim=1), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return train_x, train_y, test_x, test_y


def timed(fn) -> tuple:
    """(result, wall seconds, CPU seconds of this process)."""
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - w, 2), round(time.process_time() - c, 2)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def default_run(args) -> dict:
    """torch, authors, faiss, torch at one k: times, ratios, identical accuracies."""
    data = clustered_features(args.train, args.queries, args.dim, args.classes, args.noise)
    k, T, C = args.k, args.temperature, args.classes
    times, results = {}, {}
    for name in ("torch", "authors", "faiss", "torch_again"):
        if name == "authors":
            fn = lambda: authors_knn_classifier(*data, k, T, C)  # noqa: E731
        else:
            fn = lambda name=name: knn_classify_many(*data, [k], T, C, search=name.split("_")[0])[k]  # noqa: E731
        results[name], wall, cpu = timed(fn)
        times[name] = {"wall_s": wall, "cpu_s": cpu}
    best = min(times["torch"]["wall_s"], times["torch_again"]["wall_s"])
    best_cpu = min(times["torch"]["cpu_s"], times["torch_again"]["cpu_s"])
    out = {
        "times": times,
        "authors_over_torch_wall": round(times["authors"]["wall_s"] / best, 2),
        "authors_over_torch_cpu": round(times["authors"]["cpu_s"] / best_cpu, 2),
        "faiss_over_torch_wall": round(times["faiss"]["wall_s"] / best, 2),
        "identical": len({results[n] for n in results}) == 1,
        "accuracy": results["torch"],
    }
    if args.protocol:  # the evaluation: one search for 4 ks vs the authors' 4 calls
        ours, wall, _ = timed(lambda: knn_classify_many(*data, KS, T, C, search="torch"))
        authors, wall_a, _ = timed(lambda: {kk: authors_knn_classifier(*data, kk, T, C) for kk in KS})
        out["protocol"] = {"ks": list(KS), "torch_s": wall, "authors_s": wall_a, "ratio": round(wall_a / wall, 2),
                           "identical": ours == authors}  # fmt: skip
    return out


RULE_SIZES = [(20_000, 2_000, 384, 20), (100_000, 2_000, 384, 200), (50_000, 1_000, 768, 20), (200_000, 500, 768, 200)]


def rule_run(args) -> dict:
    """torch and faiss (twice each, alternated) and auto over several sizes: auto within 15% of the faster."""
    rows = []
    for n, q, d, k in RULE_SIZES:
        data = clustered_features(n, q, d, 100, args.noise)
        t = {"torch": [], "faiss": [], "auto": []}
        for name in ("torch", "faiss", "auto", "faiss", "torch", "auto"):
            run = functools.partial(knn_classify_many, *data, [k], 0.07, 100, search=name)
            t[name].append(timed(run)[1])
        best = {name: min(v) for name, v in t.items()}
        rows.append({"train": n, "queries": q, "dim": d, "k": k, **{f"{b}_s": v for b, v in best.items()},
                     "auto_ok": best["auto"] <= 1.15 * min(best["torch"], best["faiss"])})  # fmt: skip
    return {"rule": rows, "auto_ok_everywhere": all(r["auto_ok"] for r in rows)}


def memory_run(args) -> dict:
    """Peak RSS of one torch search over a 256k x 768 bank (a fifth of ImageNet's), beside the features' size."""
    import resource

    from evalkit import search_neighbours

    g = torch.Generator().manual_seed(0)
    train, test = torch.empty(262_144, 768), torch.empty(args.queries, 768)
    for x in (train, test):  # filled in slices: no full-size temporaries before the measurement
        for s in range(0, len(x), 8192):
            x[s : s + 8192] = F.normalize(torch.randn(len(x[s : s + 8192]), 768, generator=g), dim=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB, with the features allocated
    _, wall, _ = timed(lambda: search_neighbours(train, test, 200, "torch"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"memory": {"train": list(train.shape), "queries": args.queries, "k": 200, "features_mib": round(
        (train.numel() + test.numel()) * 4 / 2**20), "rss_before_mib": round(before), "rss_peak_mib": round(peak),
        "search_overhead_mib": round(peak - before), "wall_s": wall}}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--noise", type=float, default=0.17)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--protocol", action="store_true", help="also the 4 ks of the evaluation against 4 authors' calls")
    p.add_argument("--rule", action="store_true", help="only: torch vs faiss over several sizes (the auto rule)")
    p.add_argument("--memory", action="store_true", help="only: peak RSS of a 256k x 768 bank search")
    p.add_argument("--threads", type=int, default=0, help="torch and faiss threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            import faiss

            faiss.omp_set_num_threads(args.threads)
        except ImportError:
            pass
    head = {"cpu": cpu_model(), "threads": torch.get_num_threads()}
    if args.memory:
        result = {**head, **memory_run(args)}
    elif args.rule:
        result = {**head, **rule_run(args)}
    else:
        head.update(train=args.train, queries=args.queries, dim=args.dim, classes=args.classes, k=args.k)
        result = {**head, **default_run(args)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
