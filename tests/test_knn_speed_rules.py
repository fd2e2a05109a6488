"""The torch k-NN search in bounded blocks: exactly a straightforward search, ties to the lower index,
memory bounded whatever the bank, and the `search=auto` rule."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import evalkit.knn as knn_mod
from evalkit import knn_classify_many, search_neighbours

REPO = Path(__file__).resolve().parents[1]


def straightforward(train, test, k):
    """All similarities at once, a stable descending sort (equal values keep the lower index first)."""
    s = test @ train.t()  # (Q, N)
    v, i = s.sort(dim=1, descending=True, stable=True)
    return v[:, :k], i[:, :k]


def data_with_ties(n=3000, q=300, d=24, seed=0):
    """Unit vectors with duplicated rows: equal similarities at every rank and across k-th places."""
    g = torch.Generator().manual_seed(seed)
    train = F.normalize(torch.randn(n, d, generator=g), dim=1)
    train[1500:1700] = train[100:300]  # exact duplicates
    train[2900:] = train[7]  # a 100-fold duplicate: a tie across any k-th place near it
    test = F.normalize(torch.randn(q, d, generator=g), dim=1)
    test[:20] = train[7] + 0.01 * test[:20]  # queries whose nearest ranks are the 101 copies of row 7
    return train, F.normalize(test, dim=1)


def integer_data(n=3000, q=300, d=24, seed=0):
    """Entries in {-2, ..., 2} / 8: every dot product is exact in float32 whatever the summation order, so
    blocked and one-shot matmuls give the same numbers, and ties are everywhere."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-2, 3, (n, d), generator=g) / 8.0, torch.randint(-2, 3, (q, d), generator=g) / 8.0)


@pytest.mark.parametrize("k", [1, 5, 37, 200])
def test_torch_search_equals_the_straightforward_search(k):
    """One block of queries and bank (the default sizes): the same scores, so the same order, ties included."""
    train, test = data_with_ties()
    v, i = search_neighbours(train, test, k, "torch")
    rv, ri = straightforward(train, test, k)
    assert torch.equal(i, ri) and torch.equal(v, rv)


@pytest.mark.parametrize("budget, bank_rows", [(2**26, 2**18), (4096, 512), (50_000, 1000)])
@pytest.mark.parametrize("k", [1, 37, 200])
def test_blocks_merges_and_tie_rows_equal_the_straightforward_search(monkeypatch, budget, bank_rows, k):
    """Query blocks, bank blocks with merges, the strided-block top-k and the tie rows, on exact scores."""
    monkeypatch.setattr(knn_mod, "SIM_BUDGET", budget)
    monkeypatch.setattr(knn_mod, "BANK_ROWS", bank_rows)
    train, test = integer_data()
    v, i = search_neighbours(train, test, k, "torch")
    rv, ri = straightforward(train, test, k)
    assert torch.equal(i, ri) and torch.equal(v, rv)
    if k > 1:
        assert (rv[:, k - 1] == rv[:, k - 2]).float().mean() > 0.5  # ties across the last place are common here


def test_accuracies_equal_the_authors_function(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_knn", REPO / "bench" / "knn.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(knn_mod, "SIM_BUDGET", 20_000)  # several query and bank blocks
    monkeypatch.setattr(knn_mod, "BANK_ROWS", 700)
    data = bench.clustered_features(3000, 400, 32, 20, noise=0.45, seed=2)
    ks = [1, 5, 20, 100]
    ours = knn_classify_many(*data, ks, 0.07, 20, search="torch")
    assert ours == {k: bench.authors_knn_classifier(*data, k, 0.07, 20) for k in ks}
    assert 20.0 < ours[20][0] < 90.0


def test_strided_block_top_k_is_torch_topk():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(40, 20_011, generator=g)
    s[:, 9000:9300] = s[:, :300]  # duplicated values
    s[5] = 0.25  # a row of one value: block maxima tie, the plain top-k answers
    for kk in (1, 11, 201):
        v, i = knn_mod._top(s, kk)
        assert torch.equal(v.sort(1).values, s.topk(kk, dim=1).values.sort(1).values)
        assert torch.equal(s.gather(1, i), v) and (i.sort(1).values.diff(dim=1) > 0).all()  # distinct columns


def test_score_buffer_is_bounded_for_an_imagenet_bank(monkeypatch):
    monkeypatch.setattr(knn_mod, "SIM_BUDGET", 2**20)
    bank = torch.empty(1, 768).expand(1_281_167, 768)  # ImageNet's train set, no memory behind it
    queries = torch.empty(1, 768).expand(50_000, 768)
    q, nb, buf = knn_mod._blocks(bank, queries)
    assert nb == knn_mod.BANK_ROWS and q * nb <= 2**20 and buf.numel() == q * nb
    q, nb, buf = knn_mod._blocks(bank[:100], queries[:3])
    assert (q, nb) == (3, 100)


def test_auto_rule(monkeypatch):
    """CPU: torch with >= 2 threads, faiss with one (bench/knn.py --rule); CUDA: faiss' GPU index or torch."""
    has_faiss = knn_mod._faiss() is not None
    for threads, expected in ((2, "torch"), (8, "torch"), (1, "faiss" if has_faiss else "torch")):
        monkeypatch.setattr(torch, "get_num_threads", lambda t=threads: t)
        assert knn_mod.pick_backend("auto", torch.device("cpu")) == expected
    if not knn_mod.faiss_has_gpu(knn_mod._faiss()):
        assert knn_mod.pick_backend("auto", torch.device("cuda")) == "torch"
    assert knn_mod.pick_backend("faiss", torch.device("cpu")) == "faiss"  # explicit names stay
