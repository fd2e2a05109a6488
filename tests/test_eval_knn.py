"""k-NN and unsupervised classification: parity with the authors' fixtures, CLIs end to end, bad input."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evalkit.knn as knn_mod
from eval_knn import KNNConfig, cluster_metrics, hungarian_accuracy, knn_classify, knn_classify_many, run
from eval_knn.__main__ import main
from eval_knn.unsup import main as unsup_main
from evalkit import eval_transform
from pretrain import ImageFolderDataset, load_backbone, load_head
from tests.helpers.eval_world import (
    check_help,
    config_errors_before_work,
    export_tiny,
    tiny_backbone,
    torch_free_imports,
    write_split_world,
)
from tests.helpers.reference import load_reference

REPO = Path(__file__).resolve().parents[1]
KS = [10, 20, 100, 200]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_knn", REPO / "bench" / "knn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def knn_case():
    return load_reference("knn_case_A.pt")  # tests only: trusted fixture


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("knn_world")
    write_split_world(root / "data")
    export_tiny(root / "tiny.pth", with_head=True)
    return root


# --------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("search", ["faiss", "torch"])
def test_knn_equals_authors_fixture(knn_case, search):
    c = knn_case
    args = (c["train_features"], c["train_labels"], c["test_features"], c["test_labels"])
    many = knn_classify_many(*args, KS, c["T"], c["num_classes"], search=search)
    assert many == c["results"]
    for k in KS:
        assert knn_classify(*args, k, c["T"], c["num_classes"], search=search) == c["results"][k]


@pytest.mark.parametrize("search", ["faiss", "torch"])
def test_knn_equals_authors_function_on_hard_data(search):
    # The fixture is easy (99.5 % everywhere); noisy clusters exercise ranking, ties among
    # zero-vote classes in the top-5 and k < 5, against the authors' function step for step.
    bench = _bench_module()
    data = bench.clustered_features(3000, 400, 32, 20, noise=0.45, seed=1)
    ks = [1, 3, 10, 20, 100]
    ours = knn_classify_many(*data, ks, 0.07, 20, search=search)
    authors = {k: bench.authors_knn_classifier(*data, k, 0.07, 20) for k in ks}
    assert ours == authors
    assert 20.0 < ours[10][0] < 90.0  # nontrivial, so the comparison means something


def test_one_search_serves_every_k(knn_case, monkeypatch):
    calls = []
    real = knn_mod._search_torch
    monkeypatch.setattr(knn_mod, "_search_torch", lambda tr, te, k: calls.append(k) or real(tr, te, k))
    c = knn_case
    knn_classify_many(
        c["train_features"], c["train_labels"], c["test_features"], c["test_labels"], KS, 0.07, 10, "torch"
    )
    assert calls == [200]


def test_backend_choice_and_errors():
    assert knn_mod.pick_backend("auto", torch.device("cpu")) == "torch"  # 2 threads (conftest): bench/knn.py --rule
    assert knn_mod.pick_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="valid: auto, faiss, torch"):
        knn_mod.pick_backend("annoy", torch.device("cpu"))


def test_unsup_metrics_equal_authors_fixture():
    ref = load_reference("unsup_case_A.json")
    got = cluster_metrics(ref["labels"], ref["preds"])
    for key in ("nmi", "ari", "fowlkes_mallows", "hungarian_acc"):
        assert got[key] == pytest.approx(ref[key], abs=1e-9)


def test_hungarian_matches_clusters_one_to_one():
    # Cluster ids unrelated to class ids, and more clusters than classes.
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    preds = np.array([7, 7, 3, 9, 9, 5, 5, 11])
    assert hungarian_accuracy(labels, preds) == pytest.approx(6 / 8)
    assert hungarian_accuracy(labels, labels + 40) == 1.0


# ---------------------------------------------------------------------------- end to end
def test_knn_cli_end_to_end(world, tmp_path):
    out = tmp_path / "out"
    argv = [f"pretrained={world / 'tiny.pth'}", f"data_path={world / 'data'}", f"output_dir={out}"]
    assert main([*argv, "image_size=32", "batch_size_per_gpu=8", "num_workers=0", "progress=false"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert (out / "config.yaml").is_file()
    assert res["num_train"] == 36 and res["num_val"] == 18 and res["num_classes"] == 3
    assert res["knn"]["k=10"]["top1"] >= 80.0  # chance is 33 %
    assert res["knn"]["k=200"]["k_used"] == 36  # k beyond the train set uses all of it
    assert res["feature_dim"] == 192 and res["backbone"]["format"] == "ibot-suite-backbone"


def test_knn_run_in_memory_uses_cache(world, tmp_path, monkeypatch):
    cfg = KNNConfig(data_path=str(world / "data"), image_size=32, batch_size_per_gpu=8, num_workers=0, progress=False)
    cfg.cache_dir, cfg.ks, cfg.search = str(tmp_path / "cache"), [5], "torch"
    backbone = tiny_backbone().train()  # as during pre-training (online monitoring)
    first = run(backbone, cfg)
    assert backbone.training and all(m.training for m in backbone.modules())  # mode restored
    assert len(list((tmp_path / "cache").glob("features-*.pt"))) == 2  # train and val
    monkeypatch.setattr(backbone, "get_intermediate_layers", None)  # any forward would now fail
    assert run(backbone, cfg)["knn"] == first["knn"]


def test_unsup_cli_matches_direct_computation(world, tmp_path):
    out = tmp_path / "unsup"
    argv = [f"pretrained={world / 'tiny.pth'}", f"data_path={world / 'data'}", f"output_dir={out}"]
    assert unsup_main([*argv, "image_size=32", "batch_size_per_gpu=5", "num_workers=0", "progress=false"]) == 0
    res = json.loads((out / "results.json").read_text())
    backbone, _ = load_backbone(world / "tiny.pth")
    head, _ = load_head(world / "tiny.pth")
    val = ImageFolderDataset(world / "data" / "val", eval_transform(32))
    images = torch.stack([val[i][0] for i in range(len(val))])
    with torch.no_grad():
        preds = head(backbone.forward_features(images))[0].argmax(1).numpy()
    expected = cluster_metrics(np.array(val.targets), preds)
    for key, value in expected.items():
        assert res[key] == pytest.approx(value, abs=1e-12)
    assert res["num_val"] == 18 and 1 <= res["num_clusters_used"] <= 8


# ------------------------------------------------------------------------------ bad input
def _bad_world(tmp_path: Path, case: str) -> tuple[Path, Path]:
    data = write_split_world(tmp_path / "data", n_train=2, n_val=1)
    ckpt = export_tiny(tmp_path / "tiny.pth")
    if case == "no_class_folders":
        for p in (data / "val").rglob("*.png"):
            p.rename(data / "val" / f"{p.parent.name}_{p.name}")
        for d in (data / "val").iterdir():
            if d.is_dir():
                d.rmdir()
    elif case == "empty_split":
        for p in (data / "val").rglob("*.png"):
            p.unlink()
    elif case == "mismatched_classes":
        (data / "val" / "blue_checks").rename(data / "val" / "purple")
    elif case == "not_a_backbone":
        torch.save({"state_dict": {"linear.weight": torch.zeros(3, 4)}}, tmp_path / "head_only.pth")
        ckpt = tmp_path / "head_only.pth"
    return data, ckpt


BAD_CASES = {
    "no_class_folders": "no class sub-folders",
    "empty_split": "no images found",
    "mismatched_classes": "class folders differ",
    "not_a_backbone": "not a ViT backbone",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_error(tmp_path, capsys, case):
    data, ckpt = _bad_world(tmp_path, case)
    argv = [f"pretrained={ckpt}", f"data_path={data}", f"output_dir={tmp_path / 'out'}", "num_workers=0"]
    assert main([*argv, "image_size=32", "progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eval_knn: error:") and BAD_CASES[case] in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # a failed run leaves no files behind


def test_cli_module_exits_2_without_traceback(tmp_path):
    argv = [sys.executable, "-m", "eval_knn", f"pretrained={tmp_path / 'missing.pth'}", f"output_dir={tmp_path}"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "checkpoint not found" in proc.stderr


def test_typo_in_config_is_an_error(capsys, tmp_path):
    assert main([f"output_dir={tmp_path}", "temprature=0.1"]) == 2
    assert "temprature" in capsys.readouterr().err


# ------------------------------------------------------------------------- the interface
COMMANDS = {"eval_knn": main, "eval_knn.unsup": unsup_main}


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_help_lists_every_key(prog, capsys):
    text = check_help(COMMANDS[prog], prog, capsys)
    assert "batch_size_per_gpu = 128" in text and "precision = 'auto'" in text


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_config_errors_come_before_any_work(prog, world, tmp_path, capsys):
    argv = [f"pretrained={world / 'tiny.pth'}", f"data_path={tmp_path / 'no_data'}"]
    config_errors_before_work(COMMANDS[prog], argv, tmp_path, capsys)


def test_configs_and_shells_import_no_torch():
    torch_free_imports(["eval_knn", "eval_knn.config", "eval_knn.__main__", "eval_knn.unsup"])


def test_top5_votes_over_the_dataset_classes_not_1000():
    # Documented difference: the authors vote over 1,000 classes, so on a 3-class set a query whose
    # neighbours all vote for one class may rank non-existent classes above its true one in top-5.
    bench = _bench_module()
    data = bench.clustered_features(300, 200, 16, 3, noise=0.9, seed=2)
    ours = knn_classify_many(*data, [10], 0.07, 3)[10]
    authors = bench.authors_knn_classifier(*data, 10, 0.07, 1000)
    assert ours[0] == authors[0]  # top-1 is the same
    assert ours[1] == 100.0 > authors[1]  # 3 classes: the true one is always in the top-5 here
    assert knn_classify_many(*data, [10], 0.07, 1000)[10] == authors  # with 1,000 classes, the authors' numbers


def test_knn_search_runs_on_the_extraction_device(world, monkeypatch):
    # The features reach the neighbour search on the device they were extracted on (a GPU faiss index
    # is built from CUDA features); on CPU the results are those of a search on CPU tensors.
    seen = []
    real = knn_mod.search_neighbours
    monkeypatch.setattr(knn_mod, "search_neighbours", lambda tr, te, k, s: seen.append(tr.device) or real(tr, te, k, s))
    cfg = KNNConfig(data_path=str(world / "data"), image_size=32, batch_size_per_gpu=8, num_workers=0, progress=False)
    cfg.ks, cfg.device = [5, 10], "cpu"
    res = run(tiny_backbone(), cfg)
    assert seen == [torch.device("cpu")] and res["search"] == "torch"  # auto on CPU with 2 threads
    cfg.search = "faiss"
    assert run(tiny_backbone(), cfg)["knn"] == res["knn"]


# --------------------------------------------------------------------------- import rules


def test_features_follow_dataset_order(world):
    # The extraction places rows by dataset index; compare with a direct, unbatched forward.
    from evalkit import extract_features, feature_fn

    backbone = tiny_backbone()
    val = ImageFolderDataset(world / "data" / "val", eval_transform(32))
    feats, labels = extract_features(feature_fn(backbone, "cls", 1), val, batch_size=7, progress=False)
    with torch.no_grad():
        direct = backbone.forward_features(torch.stack([val[i][0] for i in (0, 9, 17)]))[:, 0]
    assert torch.allclose(feats[[0, 9, 17]], direct, atol=1e-5)
    assert labels.tolist() == val.targets
    assert F.normalize(feats, dim=1).norm(dim=1).allclose(torch.ones(18))
