"""Benchmark: our weighted k-NN (one search for all k) vs a faithful re-implementation of the authors'.

The authors' evaluation calls their classifier once per k in {10, 20, 100, 200}; each call splits the
queries into 100 chunks, multiplies each chunk with all train features, takes the top-k, builds a
(chunk * k, classes) one-hot matrix of the neighbours' labels, weights it by exp(sim / T), sums,
sorts the classes and counts hits in the first 1 and 5. Ours searches once for the largest k (faiss
flat inner-product index on CPU) and sums votes with a scatter per k.

Data: random but clustered unit vectors (classes = noisy copies of random centroids) so that the
accuracies are far from 0 and 100 %. Prints one JSON line.

    .venv/bin/python bench/knn.py                      # 100,000 x 384 train, 10,000 queries, 1,000 classes
    .venv/bin/python bench/knn.py --train 20000 --queries 2000   # quicker
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_knn import knn_classify_many  # noqa: E402

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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--noise", type=float, default=0.17)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--search", default="auto", choices=["auto", "faiss", "torch"])
    args = p.parse_args(argv)
    data = clustered_features(args.train, args.queries, args.dim, args.classes, args.noise)
    t0 = time.perf_counter()
    ours = knn_classify_many(*data, KS, args.temperature, args.classes, search=args.search)
    t1 = time.perf_counter()
    authors = {k: authors_knn_classifier(*data, k, args.temperature, args.classes) for k in KS}
    t2 = time.perf_counter()
    result = {
        "train": args.train,
        "queries": args.queries,
        "dim": args.dim,
        "classes": args.classes,
        "ks": list(KS),
        "threads": torch.get_num_threads(),
        "search": args.search,
        "authors_s": round(t2 - t1, 3),
        "ours_s": round(t1 - t0, 3),
        "speedup": round((t2 - t1) / (t1 - t0), 2),
        "identical": ours == authors,
        "accuracies": {str(k): {"ours": ours[k], "authors": authors[k]} for k in KS},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
