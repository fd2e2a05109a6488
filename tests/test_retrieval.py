"""Image retrieval and copy detection: metrics on hand-made rankings, the restricted ground-truth reader,
whitening, and both commands end to end on the demo world's retrieval sets (CPU, tiny ViT)."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from demo_world import write_world
from plumbing import DatasetError
from retrieval import (
    copy_descriptor,
    descriptor_fn,
    learn_whitening,
    load_ground_truth,
    restricted_load,
    revisited_labels,
    revisited_map,
    topk_map,
    trapezoid_ap,
)
from retrieval.__main__ import main
from retrieval.copydays import main as main_copydays
from retrieval.data import ThumbnailImages
from tests.helpers.eval_world import export_tiny, tiny_backbone


# ------------------------------------------------------------------------------------------ metrics
def test_trapezoid_ap_by_hand():
    assert trapezoid_ap([0], 1) == 1.0
    assert trapezoid_ap([1], 1) == 0.25  # not 0.5: the trapezoid from precision 0 at rank 0
    assert trapezoid_ap([0, 2], 2) == pytest.approx(0.5 + (1 / 2 + 2 / 3) / 4)
    assert trapezoid_ap([3], 2) == pytest.approx((0 + 1 / 4) / 2 / 2)  # the second positive never found


def test_revisited_map_medium_and_hard_with_junk():
    gnd = [
        {"easy": [0], "hard": [3], "junk": [5]},
        {"easy": [], "hard": [], "junk": [1]},  # no positives: left out of both means
        {"easy": [2], "hard": [], "junk": []},  # no hard positives: only in Medium
    ]
    ranking = np.array([[5, 3, 7, 0, 1, 2, 4, 6], [0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 7]])
    medium = revisited_map(ranking, revisited_labels(gnd, "medium"), ks=(1, 5, 10))
    hard = revisited_map(ranking, revisited_labels(gnd, "hard"), ks=(1, 5, 10))
    # Medium, query 0: positives {0, 3} at positions 3 and 1; the junk 5 ranked first is deleted -> ranks 2, 0:
    # AP = 1/2 * (1 + 1) / 2 + 1/2 * (1/2 + 2/3) / 2. Query 2: positive 2 at rank 2 -> (0 + 1/3) / 2.
    ap0, ap2 = 0.5 + (0.5 + 2 / 3) / 4, 1 / 6
    assert medium["aps"] == [pytest.approx(ap0), None, pytest.approx(ap2)]
    assert medium["mAP"] == pytest.approx((ap0 + ap2) / 2) and medium["num_queries"] == 2
    # P@k: 1-based ranks [1, 3] and [3]; k is capped at the last positive's rank (3).
    assert medium["mP@k"] == {1: pytest.approx(0.5), 5: pytest.approx(0.5), 10: pytest.approx(0.5)}
    # Hard, query 0: the easy image 0 becomes junk; positive 3 at position 1 with junk 5 above it -> rank 0.
    assert hard["aps"] == [1.0, None, None] and hard["mAP"] == 1.0 and hard["num_queries"] == 1
    assert hard["mP@k"] == {1: 1.0, 5: 1.0, 10: 1.0}
    # Counting the junk as a miss instead would give 0.25 + ... : deleting it matters.
    assert revisited_map(ranking[:1], [{"ok": [3], "junk": []}])["mAP"] == 0.25


def test_copydays_map_counts_only_the_top_k():
    topk = np.array([[4, 0, 9], [1, 2, 3], [7, 8, 5]])
    positives = [[0], [1, 5], [0]]
    # query 0: hit at rank 1 -> 0.25; query 1: one of two positives at rank 0 -> 0.5; query 2: not in top 3 -> 0
    assert topk_map(topk, positives) == pytest.approx((0.25 + 0.5 + 0.0) / 3)


# ---------------------------------------------------------------------------------- descriptors
def test_descriptors_follow_the_protocol(tmp_path, one_thread):
    backbone = tiny_backbone()
    with torch.no_grad():  # a final norm with a bias: token norms then differ between scales
        backbone.norm.weight.uniform_(0.5, 1.5)
        backbone.norm.bias.normal_()
    x = torch.randn(2, 3, 50, 70)

    def cls(images):  # trailing rows/columns that do not fill an 8 px patch are dropped
        h, w = images.shape[-2:]
        return backbone.get_intermediate_layers(images[..., : h - h % 8, : w - w % 8], 1)[0][:, 0]

    with torch.no_grad():
        got = descriptor_fn(backbone, "cls", 1, multiscale=True)(x)
        scaled = [x] + [F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False) for s in (2**-0.5, 0.5)]
        raw = [cls(xi) for xi in scaled]  # sizes 50x70, 35x49, 25x35
        assert F.normalize(sum(raw) / 3, dim=-1) == pytest.approx(got, abs=1e-5)  # raw mean, one L2 at the end
        assert (F.normalize(sum(F.normalize(r, dim=-1) for r in raw), dim=-1) - got).abs().max() > 1e-4
        assert got[1] == pytest.approx(descriptor_fn(backbone, "cls", 1, multiscale=True)(x[1:])[0], abs=1e-5)
        tokens = backbone.get_intermediate_layers(x[..., :48, :64], 1)[0]
        gem = tokens[:, 1:].clamp(min=1e-6).pow(4).mean(1).pow(0.25)
        assert copy_descriptor(backbone, x) == pytest.approx(torch.cat([tokens[:, 0], gem], 1), abs=1e-5)
    Image.new("RGB", (100, 60)).save(tmp_path / "a.jpg")
    assert ThumbnailImages([tmp_path / "a.jpg"], 50)[0][0].shape == (3, 30, 50)
    assert ThumbnailImages([tmp_path / "a.jpg"], 512)[0][0].shape == (3, 60, 100)  # never enlarged


# ------------------------------------------------------------------------------------ whitening
def test_whitening_gives_identity_covariance():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 3.0  # correlated, off-centre
    centred = learn_whitening(train, centred=True)
    z = centred.apply(train)
    assert np.allclose(z.mean(0), 0, atol=1e-4) and np.allclose(np.cov(z.T, bias=True), np.eye(6), atol=1e-4)
    quirk = learn_whitening(train)  # the protocol's: covariance of the uncentred descriptors
    y = train @ quirk.projection.T  # P W: identity second moment
    assert np.allclose(y.T @ y / len(y), np.eye(6), atol=1e-4)
    assert not np.allclose(np.cov(quirk.apply(train).T, bias=True), np.eye(6), atol=1e-2)  # the quirk differs
    assert quirk.energy_kept == pytest.approx(1.0) and quirk.projection.shape == (6, 6)


# ------------------------------------------------------------------------- restricted unpickler
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_ground_truth_reader_refuses_globals_and_reads_plain_or_numpy(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "gnd_bad.pkl"
    bad.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [_Payload(marker)]}))
    with pytest.raises(DatasetError, match=r"refusing to unpickle the global (posix|os|nt)\.system"):
        restricted_load(bad)
    assert not marker.exists()
    query = {"bbx": [1.0, 2.0, 3.0, 4.0], "easy": [1], "hard": [], "junk": [0]}
    plain = {"imlist": ["a", "b"], "qimlist": ["q"], "gnd": [query]}
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(plain))
    assert restricted_load(tmp_path / "plain.pkl") == plain
    arrays = {"gnd": [{"easy": np.array([3, 1]), "bbx": np.array([1.5, 2.0]), "n": np.int64(7)}]}
    (tmp_path / "np.pkl").write_bytes(pickle.dumps(arrays))
    got = restricted_load(tmp_path / "np.pkl")
    assert got == {"gnd": [{"easy": [3, 1], "bbx": [1.5, 2.0], "n": 7}]} and type(got["gnd"][0]["easy"]) is list
    (tmp_path / "eval.pkl").write_bytes(pickle.dumps(eval))  # any other callable is refused too
    with pytest.raises(DatasetError, match="builtins.eval"):
        restricted_load(tmp_path / "eval.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a readable ground-truth pickle"):
        restricted_load(tmp_path / "junk.pkl")


# -------------------------------------------------------------------------------- end to end
PARTS = dict(classification=False, backgrounds=False, coco=False, ade=False, retrieval=True, progress=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("retrieval_world")
    result = write_world(out / "w", seed=0, **PARTS)
    backbone = export_tiny(out / "backbone.pth")
    return result["retrieval"], backbone


def _positives_first(g: dict, n: int) -> list[int]:
    ok = g["easy"] + g["hard"]
    return ok + [i for i in range(n) if i not in ok]


def test_demo_world_sets_are_reproducible_and_consistent(world, tmp_path):
    sets, _ = world
    again = write_world(tmp_path / "w", seed=0, **PARTS)["retrieval"]
    files = sorted(p.relative_to(sets["data_path"]) for p in Path(sets["data_path"]).rglob("*") if p.is_file())
    assert len(files) == 44 + 1 + 6 + 12 + 3 * 6 + 24
    assert all((Path(sets["data_path"]) / f).read_bytes() == (Path(again["data_path"]) / f).read_bytes() for f in files)
    gt = load_ground_truth(sets["data_path"], "roxford5k", need_boxes=True)
    assert len(gt.qimlist) == 4 and len(gt.imlist) == 40
    for q, g in zip(gt.qimlist, gt.gnd, strict=True):
        lists = [set(g[k]) for k in ("easy", "hard", "junk")]
        assert [len(s) for s in lists] == [3, 3, 2] and len(set.union(*lists)) == 8  # disjoint
        landmark = q.split("_")[0]
        assert all(gt.imlist[i].startswith(landmark + "_") for s in lists for i in s)
        x1, y1, x2, y2 = g["bbx"]
        w, h = Image.open(gt.image(q)).size
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    # a perfect ranking (the positives first) scores 100% under both protocols
    ranking = np.array([_positives_first(g, 40) for g in gt.gnd])
    assert revisited_map(ranking, revisited_labels(gt.gnd, "medium"))["mAP"] == 1.0
    assert revisited_map(ranking, revisited_labels(gt.gnd, "hard"))["mAP"] == 1.0


def test_retrieval_end_to_end(world, tmp_path, one_thread):
    sets, backbone = world
    args = [f"pretrained={backbone}", f"data_path={sets['data_path']}", "num_workers=0", "progress=false"]
    assert main([*args, f"output_dir={tmp_path / 'r'}", "batch_size_per_gpu=4"]) == 0
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert set(res["mAP"]) == {"medium", "hard"} and all(0 <= v <= 100 for v in res["mAP"].values())
    assert set(res["mP@k"]["medium"]) == {"1", "5", "10"} and res["queries_evaluated"] == {"medium": 4, "hard": 4}
    assert res["num_database"] == 40 and res["feature_dim"] == 192 and res["backbone"]["arch"]
    assert res["setting"]["multiscale"] and res["setting"]["queries"].startswith("full")
    assert main([*args, f"output_dir={tmp_path / 'c'}", "crop_queries=true", "multiscale=false"]) == 0
    cropped = json.loads((tmp_path / "c" / "results.json").read_text())
    assert cropped["setting"]["queries"].startswith("cropped") and cropped["mAP"] != res["mAP"]


def test_copydays_end_to_end(world, tmp_path, one_thread):
    sets, backbone = world
    cd = sets["copydays"]
    args = [f"pretrained={backbone}", f"data_path={cd['data_path']}", f"distractors_path={cd['distractors']}"]
    args += ["image_size=32", "num_workers=0", "progress=false", f"output_dir={tmp_path / 'cd'}"]
    assert main_copydays(args) == 0
    res = json.loads((tmp_path / "cd" / "results.json").read_text())
    assert list(res["mAP"]) == ["original", "strong", "jpegqual/10", "jpegqual/50", "crops/50"]
    assert res["mAP_strong"] == res["mAP"]["strong"] and res["queries"]["strong"] == 12
    assert res["num_database"] == 6 + 24 and res["whitening"]["images"] == 24 and not res["official_counts"]
    assert res["feature_dim"] == 2 * 192 and res["mAP"]["original"] > 50  # an original finds itself
    other = [*args[:2], f"whitening_path={Path(cd['data_path']) / 'original'}", *args[3:]]  # no distractors
    assert main_copydays(other) == 0
    res = json.loads((tmp_path / "cd" / "results.json").read_text())
    assert res["num_database"] == 6 and res["whitening"]["images"] == 6 and res["distractors"]["images"] == 0
    assert main_copydays([*args, "whitening=false"]) == 0
    assert json.loads((tmp_path / "cd" / "results.json").read_text())["whitening"] is None


# ------------------------------------------------------------------------------ the command shell
def test_help_lists_common_keys(capsys):
    for command in (main, main_copydays):
        with pytest.raises(SystemExit) as stop:
            command(["--help"])
        assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.count("usage: python -m retrieval") == 2 and "runs/retrieval.copydays" in out
    for key in ("pretrained", "checkpoint_key", "data_path", "output_dir", "device", "precision",
                "batch_size_per_gpu", "num_workers", "seed", "crop_queries", "distractors_path"):  # fmt: skip
        assert f"  {key} = " in out


def test_user_errors_exit_2_before_work(world, tmp_path, capsys):
    sets, backbone = world
    common = [f"pretrained={backbone}", f"output_dir={tmp_path / 'o'}"]
    assert main([*common, f"data_path={sets['data_path']}", "batch_size_per_gpu=0"]) == 2
    assert main_copydays([*common, f"data_path={sets['copydays']['data_path']}", "batch_size_per_gpu=0"]) == 2
    assert main([*common, f"data_path={sets['data_path']}", "dataset=holidays"]) == 2
    assert main_copydays([*common, f"data_path={sets['copydays']['data_path']}"]) == 2  # whitening without images
    marker = tmp_path / "pwned"
    (tmp_path / "evil" / "roxford5k").mkdir(parents=True)
    (tmp_path / "evil" / "roxford5k" / "gnd_roxford5k.pkl").write_bytes(pickle.dumps([_Payload(marker)]))
    assert main([*common, f"data_path={tmp_path / 'evil'}", "num_workers=0"]) == 2 and not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("retrieval") and ": error: " in line for line in err)
    assert "batch_size_per_gpu must be >= 1" in err[0] and "refusing to unpickle" in err[-1]
    assert not (tmp_path / "o" / "results.json").exists()
