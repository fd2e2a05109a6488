"""k-NN on CUDA picks faiss' GPU index when faiss has GPU support (the capability and the device mocked)."""

import types

import faiss
import pytest
import torch

import evalkit.knn as knn_mod

CUDA = torch.device("cuda:1")


class FakeGpuIndex:
    """Stands in for faiss.GpuIndexFlatIP: records its device and searches with a CPU index."""

    def __init__(self, res, d, cfg):
        self.res, self.device, self.cpu = res, cfg.device, faiss.IndexFlatIP(d)

    def add(self, x):
        self.cpu.add(x)

    def search(self, q, k):
        return self.cpu.search(q, k)


def fake_faiss(gpus: int, gpu_build: bool = True):
    mod = types.SimpleNamespace(IndexFlatIP=faiss.IndexFlatIP, get_num_gpus=lambda: gpus)
    if gpu_build:
        mod.StandardGpuResources = lambda: "resources"
        mod.GpuIndexFlatConfig = types.SimpleNamespace
        mod.GpuIndexFlatIP = FakeGpuIndex
    return mod


@pytest.mark.parametrize(
    ("module", "cuda_choice", "index_type"),
    [
        (fake_faiss(gpus=2), "faiss", FakeGpuIndex),  # faiss-gpu with a visible GPU
        (fake_faiss(gpus=0), "torch", faiss.IndexFlatIP),  # faiss-gpu build, no GPU visible
        (fake_faiss(gpus=0, gpu_build=False), "torch", faiss.IndexFlatIP),  # faiss-cpu
        (None, "torch", None),  # no faiss at all
    ],
)
def test_faiss_gpu_choice(monkeypatch, module, cuda_choice, index_type):
    monkeypatch.setattr(knn_mod, "_faiss", lambda: module)
    assert knn_mod.pick_backend("auto", CUDA) == cuda_choice
    # on CPU: torch with >= 2 threads (faster there, bench/knn.py --rule), faiss with one
    torch.set_num_threads(2)
    assert knn_mod.pick_backend("auto", torch.device("cpu")) == "torch"
    torch.set_num_threads(1)
    assert knn_mod.pick_backend("auto", torch.device("cpu")) == ("torch" if module is None else "faiss")
    torch.set_num_threads(2)
    if module is None:
        return
    index = knn_mod.flat_index(module, 8, CUDA, k=20)
    assert type(index) is index_type
    if index_type is FakeGpuIndex:
        assert index.device == 1  # the features' GPU
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
        assert knn_mod.flat_index(module, 8, torch.device("cuda"), k=20).device == 3
        assert type(knn_mod.flat_index(module, 8, CUDA, k=knn_mod.GPU_MAX_K + 1)) is faiss.IndexFlatIP
    assert type(knn_mod.flat_index(module, 8, torch.device("cpu"), k=20)) is faiss.IndexFlatIP
