"""Robustness suite (analysis.robustness): protocol pieces on hand-made inputs, tiny end-to-end runs."""

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import analysis.robustness.backgrounds as backgrounds_cli
import analysis.robustness.backgrounds_work as backgrounds
import analysis.robustness.corruptions as corruptions_cli
import analysis.robustness.corruptions_work as corruptions
import analysis.robustness.natural_adv_work as natural_adv
import analysis.robustness.occlusion as occlusion_cli
import analysis.robustness.occlusion_work as occlusion
import analysis.robustness.shuffle as shuffle_cli
import analysis.robustness.shuffle_work as shuffle
import pretrain
from analysis.robustness.common import identity_map_file, load_output_map
from evalkit import evaluate, load_classifier, save_linear_head
from plumbing import CheckpointError, ConfigError, DatasetError
from pretrain import atomic_save, export_backbone
from tests.helpers.eval_world import CLASSES, tiny_backbone, write_split_world

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "analysis" / "robustness"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny exported backbone, a random linear head on its [CLS] and a 3-class 32 px split world."""
    root = tmp_path_factory.mktemp("robust")
    backbone = tiny_backbone()
    export_backbone(backbone, root / "backbone.pth")
    torch.manual_seed(1)
    head = nn.Linear(backbone.embed_dim, len(CLASSES))
    save_linear_head(root / "head.pth", head, "cls", 1, {"classes": sorted(CLASSES), "image_size": 32})
    write_split_world(root / "world", n_train=4, n_val=6, size=32)
    return {"root": root, "backbone": root / "backbone.pth", "head": root / "head.pth", "data": root / "world"}


@pytest.fixture(scope="module")
def shapes_world(tmp_path_factory):
    """A 3-class demo world at 32 px with its background variants (no COCO/ADE); test_demo_stages uses it."""
    from demo_world import write_world

    out = tmp_path_factory.mktemp("shapes") / "world"
    write_world(out, seed=0, num_classes=3, image_size=32, n_train=2, n_val=4, coco=False, ade=False, progress=False)
    return out


def small(**kw):
    return dict(batch_size_per_gpu=8, max_images=8, num_workers=0, device="cpu", progress=False, **kw)


# ------------------------------------------------------------------------------------ occlusion
def test_information_loss_schedule_and_drop():
    assert occlusion.info_loss_schedule(196) == [0, 19, 39, 58, 78, 98, 117, 137, 156, 176]
    assert occlusion.info_loss_schedule(16) == [0, 1, 3, 4, 6, 8, 9, 11, 12, 14]
    assert occlusion.info_loss_schedule(4) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]  # repeated counts are distinct steps
    g = torch.Generator().manual_seed(0)
    mask = occlusion.cell_mask(5, (4, 4), g)
    assert mask.shape == (4, 4) and int(mask.sum()) == 5
    x = torch.randn(2, 3, 32, 32) + 10  # no zeros before dropping
    out = occlusion.drop(x, mask)
    pix = mask.repeat_interleave(8, 0).repeat_interleave(8, 1)  # (32, 32)
    assert (out[:, :, pix] == 0).all() and torch.equal(out[:, :, ~pix], x[:, :, ~pix])
    per_image = torch.stack([mask, ~mask])  # (B, 4, 4): a different cell set per image
    out = occlusion.drop(x, per_image)
    assert (out[0, :, pix] == 0).all() and (out[1, :, ~pix] == 0).all() and torch.equal(out[1, :, pix], x[1, :, pix])


def test_salient_masks_follow_the_attention_mass():
    backbone = tiny_backbone()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        masks = occlusion.salient_masks(backbone, x, [0.3, 0.6, 1.0])  # (3, B, 4, 4)
    assert masks.shape == (3, 3, 4, 4)
    assert (masks[0] <= masks[1]).all() and masks[2].all()  # nested sets; mass 1 keeps every patch


# ------------------------------------------------------------------------------------- shuffle
def test_shuffle_is_a_true_permutation_of_cells():
    x = torch.arange(2 * 3 * 8 * 16, dtype=torch.float32).view(2, 3, 8, 16)  # every pixel distinct
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    y = shuffle.shuffle_cells(x, (2, 4), perm)  # 2 rows x 4 columns of 4 x 4 cells
    assert y.shape == x.shape and not torch.equal(x, y)
    assert torch.equal(y.flatten().sort().values, x.flatten().sort().values)  # same pixels
    cell = lambda t, j: t[..., (j // 4) * 4 : (j // 4 + 1) * 4, (j % 4) * 4 : (j % 4 + 1) * 4]  # noqa: E731
    for j in range(8):
        assert torch.equal(cell(y, j), cell(x, int(perm[j])))  # cell perm[j] moved to position j, intact
    assert torch.equal(shuffle.shuffle_cells(y, (2, 4), torch.argsort(perm)), x)
    assert shuffle.parse_grid("14x14") == (14, 14)
    with pytest.raises(ConfigError):
        shuffle.parse_grid("4by4")


# ----------------------------------------------------------------------------------- corruptions
def test_corruption_names_severities_and_seeding(files):
    names = corruptions.corruption_names(["all"])
    assert len(names) == 19 and names[0] == "gaussian_noise" and names[-1] == "saturate"
    assert len(corruptions.corruption_names(["common"])) == 15
    assert corruptions.corruption_names(["validation", "fog"]) == [
        "speckle_noise",
        "gaussian_blur",
        "spatter",
        "saturate",
        "fog",
    ]
    with pytest.raises(ConfigError, match="unknown corruption"):
        corruptions.corruption_names(["rain"])
    assert corruptions.check_severities([1, 5]) == [1, 5]
    with pytest.raises(ConfigError):
        corruptions.check_severities([0, 6])
    assert sorted(corruptions.standard_alexnet_errors()) == sorted(corruptions.corruption_names(["common"]))
    base = pretrain.ImageFolderDataset(files["data"] / "val")
    ds = corruptions.Corrupted(base, lambda im: im, "gaussian_noise", 3, seed=0)
    a, b = ds[1][0], ds[1][0]
    assert a.shape == (3, 32, 32) and torch.equal(a, b)  # seeded per image
    assert not torch.equal(a, corruptions.Corrupted(base, lambda im: im, "gaussian_noise", 3, seed=1)[1][0])


def test_mce_arithmetic_on_hand_made_numbers():
    errors = {"gaussian_noise": {1: 50.0, 2: 70.0}, "fog": {1: 20.0, 2: 40.0}, "speckle_noise": {1: 10.0, 2: 30.0}}
    out = corruptions.summarise(errors, {"gaussian_noise": 0.8, "fog": 0.5})
    assert out["ce"] == {"gaussian_noise": 60.0, "fog": 30.0, "speckle_noise": 20.0}
    assert out["mean_error"] == pytest.approx(110 / 3)  # the reference's unnormalised "mCE"
    assert out["ce_alexnet_normalised"] == pytest.approx({"gaussian_noise": 75.0, "fog": 60.0})
    assert out["mce_alexnet"] == pytest.approx(67.5) and out["mce_alexnet_over"] == ["fog", "gaussian_noise"]
    assert "mce_alexnet" not in corruptions.summarise(errors, {})


# ----------------------------------------------------------------------------- natural adversarial
def test_calibration_metrics_on_hand_made_cases():
    conf = np.r_[np.full(100, 0.2), np.full(100, 0.9), np.full(100, 1.0)]
    hit = np.r_[np.arange(100) < 20, np.arange(100) < 50, np.zeros(100)].astype(float)
    # Bins: |0.2 - 0.2| = 0, |0.9 - 0.5| = 0.4, last bin (|1 - 0| = 1) skipped as in the reference.
    assert natural_adv.rms_calibration_error(conf, hit) == pytest.approx(np.sqrt(0.16 / 3))
    assert natural_adv.rms_calibration_error(conf, hit, skip_last=False) == pytest.approx(np.sqrt((0.16 + 1) / 3))
    # 250 samples: the last bin absorbs the remainder (100..250) and is skipped.
    assert natural_adv.rms_calibration_error(conf[:250], hit[:250]) == pytest.approx(0.0)
    assert natural_adv.rms_calibration_error(np.full(10, 0.7), np.ones(10), skip_last=False) == pytest.approx(0.3)
    assert natural_adv.aurra(np.array([0.9, 0.7, 0.8]), np.array([1.0, 1.0, 0.0])) == pytest.approx(
        (1 + 0.5 + 2 / 3) / 3
    )
    assert natural_adv.aurra(np.array([0.9, 0.8]), np.ones(2)) == 1.0


# ------------------------------------------------------------------------------------- class maps
def test_class_map_handling(tmp_path):
    data = ["a", "b", "c"]
    assert load_output_map("names", 4, data, ["c", "x", "a", "b"]).tolist() == [2, -1, 0, 1]
    assert load_output_map("identity", 3, data, None).tolist() == [0, 1, 2]
    in9 = tmp_path / "in_to_in9.json"
    in9.write_text(json.dumps({"0": 1, "1": -1, "2": 0, "3": 2, "4": 2}))  # many-to-one with -1
    assert load_output_map(str(in9), 5, data, None).tolist() == [1, -1, 0, 2, 2]
    subset_file = tmp_path / "subset.json"
    subset_file.write_text(json.dumps([4, 0, 2]))  # position = dataset label
    out_map = load_output_map(str(subset_file), 5, data, None)
    assert out_map.tolist() == [1, -1, 2, -1, 0]
    assert natural_adv.subset_outputs(out_map, 3).tolist() == [4, 0, 2]
    with pytest.raises(ConfigError, match="exactly one"):
        natural_adv.subset_outputs(load_output_map(str(in9), 5, data, None), 3)
    a200 = load_output_map("imagenet_a", 1000, [f"n{i:03d}" for i in range(200)], None)
    assert int((a200 >= 0).sum()) == 200 and a200[6] == 0 and a200[988] == 199
    assert identity_map_file(tmp_path / "id.json", 3) and load_output_map(
        str(tmp_path / "id.json"), 3, data, None
    ).tolist() == [0, 1, 2]
    bad = tmp_path / "bad.json"
    for content, match in (
        ({"0": 3}, "outside the dataset"),
        ({"9": 0}, "outside the classifier"),
        ({"0": 0}, "no classifier output"),
    ):
        bad.write_text(json.dumps(content))
        with pytest.raises(ConfigError, match=match):
            load_output_map(str(bad), 3, data, None)
    with pytest.raises(ConfigError, match="needs class names"):
        load_output_map("names", 3, data, None)


def test_in9_layout_variants_and_npy_masks(tmp_path):
    for variant in ("original", "mixed_same", "fg_mask", "only_bg_t"):
        (tmp_path / variant / "val" / "00_dog").mkdir(parents=True)
    assert backgrounds.find_variants(tmp_path, []) == ["mixed_same", "only_bg_t", "original"]  # fg_mask skipped
    assert backgrounds.variant_dir(tmp_path, "original") == tmp_path / "original" / "val"
    with pytest.raises(DatasetError, match="not found"):
        backgrounds.find_variants(tmp_path, ["mixed_rand"])
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 2:] = True
    np.save(tmp_path / "fg_mask" / "val" / "00_dog" / "n0_1.npy", mask)
    got = backgrounds.read_mask(tmp_path / "fg_mask" / "val", Path("00_dog/n0_1.JPEG"), 8)  # (1, 8, 8), nearest
    assert got.shape == (1, 8, 8) and torch.equal(got[0, ::2, ::2], torch.from_numpy(mask).float())
    with pytest.raises(DatasetError, match="no mask"):
        backgrounds.read_mask(tmp_path / "fg_mask" / "val", Path("00_dog/other.JPEG"), 8)
    assert backgrounds.bg_gap({"mixed_same": 80.0, "mixed_rand": 70.5}) == 9.5 and backgrounds.bg_gap({}) is None


# ------------------------------------------------------------------------------------- classifiers
def test_load_classifier_reads_linear_heads_and_finetuned_files(files, tmp_path):
    model, info = load_classifier(files["head"], files["backbone"])
    assert info["kind"] == "linear" and info["classes"] == sorted(CLASSES) and info["image_size"] == 32
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.backbone.get_intermediate_layers(x, 1)[0][:, 0]
        assert torch.allclose(model(x), model.head(feats), atol=1e-6)
    with pytest.raises(ConfigError, match="pretrained=PATH"):
        load_classifier(files["head"])
    backbone = tiny_backbone(seed=3)
    head = nn.Linear(backbone.embed_dim, 3)
    payload = {
        "format": "ibot-suite/finetuned-classifier", "format_version": 1, "arch": "vit_tiny",
        "backbone_kwargs": backbone.arch_kwargs(), "backbone": backbone.state_dict(), "feature": "cls",
        "proj": None, "classifier": head.state_dict(), "num_classes": 3, "meta": {"classes": list(CLASSES)},
    }  # fmt: skip
    atomic_save(payload, tmp_path / "classifier.pth")
    ft, ft_info = load_classifier(tmp_path / "classifier.pth")
    assert ft_info["kind"] == "finetuned" and ft_info["num_classes"] == 3 and ft_info["image_size"] is None
    with torch.no_grad():
        assert torch.allclose(ft(x), head(backbone.forward_features(x)[:, 0]), atol=1e-5)
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "absent.pth")


# ----------------------------------------------------------------------------------- end to end
def test_runs_write_results_and_plots(files, tmp_path):
    model, info = load_classifier(files["head"], files["backbone"])
    val = str(files["data"] / "val")
    occ = evaluate(
        functools.partial(occlusion.run_occlusion, info=info),
        model,
        occlusion.OcclusionConfig(
            **small(data_path=val, cell_size=16, lambdas=[0.5, 1.0], output_dir=str(tmp_path / "occ"))
        ),
        "analysis.robustness.occlusion",
        info,
    )
    rows = occ["random_drop"]  # 2 x 2 cells of 16 px: steps 0-2 drop nothing
    assert [r["cells_dropped"] for r in rows] == occlusion.info_loss_schedule(4) and occ["num_images"] == 8
    assert rows[0]["top1"] == rows[1]["top1"] == rows[2]["top1"] == occ["clean_top1"]
    assert occ["salient_drop"][-1]["removed"] == pytest.approx(1.0) and occ["non_salient_drop"][-1]["removed"] == 0.0
    assert occ["non_salient_drop"][-1]["top1"] == occ["clean_top1"]  # nothing removed at lambda = 1
    nat = evaluate(
        functools.partial(natural_adv.run_natural_adv, info=info),
        model,
        natural_adv.NaturalAdvConfig(**small(data_path=val, output_dir=str(tmp_path / "nat"))),
        "analysis.robustness.natural_adv",
        info,
    )
    assert nat["num_images"] == 8 and 0 <= nat["aurra"] <= 100 and nat["rms_calibration_error"] == 0.0  # < 2 bins
    cor = evaluate(
        functools.partial(corruptions.run_corruptions, info=info),
        model,
        corruptions.CorruptionsConfig(
            **small(
                data_path=val,
                corruptions=["contrast"],
                severities=[1, 5],
                standard_alexnet=True,
                output_dir=str(tmp_path / "cor"),
            )
        ),
        "analysis.robustness.corruptions",
        info,
    )
    assert set(cor["errors"]["contrast"]) == {1, 5} and cor["mce_alexnet_over"] == ["contrast"]
    for res, name in ((occ, "occlusion.png"), (nat, "natural_adv.png"), (cor, "corruptions.png")):
        assert Path(res["figure"]).name == name and Path(res["figure"]).stat().st_size > 0
        assert (Path(res["figure"]).parent / "results.json").is_file()


def test_cli_end_to_end_and_errors(files, tmp_path):
    out = tmp_path / "cli"
    argv = [f"classifier={files['head']}", f"pretrained={files['backbone']}", f"data_path={files['data'] / 'val'}",
            "grids=[2x2,4x4]", "num_workers=0", f"output_dir={out}"]  # fmt: skip
    assert shuffle_cli.main(argv) == 0  # in-process: a subprocess would pay the torch import again
    res = json.loads((out / "results.json").read_text())
    assert (
        [r["grid"] for r in res["shuffle"]] == ["2x2", "4x4"]
        and (out / "shuffle.png").is_file()
        and (out / "config.yaml").is_file()
    )
    assert shuffle_cli.main([f"classifier={files['head']}", f"data_path={files['data']}"]) == 2  # no backbone
    assert shuffle_cli.main([*argv[:3], "grids=[3x3]"]) == 2  # does not divide 32
    assert occlusion_cli.main([*argv[:2], f"data_path={tmp_path / 'absent'}"]) == 2
    assert backgrounds_cli.main([*argv[:3], "no_such_key=1"]) == 2


# ---------------------------------------------------------------------------------- part-wise
def test_partwise_features_and_sweep(files, tmp_path):
    import analysis.robustness.partwise_work as partwise

    backbone = tiny_backbone()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = backbone.get_block_outputs(x, [-1])[0][:, 1:]  # (B, 16, D), before the final norm
        attn = backbone.get_last_selfattention(x)[:, :, 0, 1:].mean(1)  # (B, 16)
        assert torch.allclose(partwise.part_features(backbone, x, 16), tokens.mean(1), atol=1e-5)
        top1 = partwise.part_features(backbone, x, 1, "top")
        assert torch.allclose(top1, tokens[torch.arange(2), attn.argmax(1)], atol=1e-5)
        bottom1 = partwise.part_features(backbone, x, 1, "bottom")
        assert torch.allclose(bottom1, tokens[torch.arange(2), attn.argmin(1)], atol=1e-5)
    cfg = partwise.PartwiseConfig(
        data_path=str(files["data"]), image_size=32, ks=[1, 16, 56], lrs=[0.1], epochs=1, batch_size_per_gpu=8,
        num_workers=0, device="cpu", progress=False, output_dir=str(tmp_path),
    )  # fmt: skip
    res = evaluate(partwise.run_partwise, backbone, cfg, "analysis.robustness.partwise")
    assert [(r["order"], r["k"]) for r in res["results"]] == [("top", 1), ("top", 16), ("bottom", 1), ("bottom", 16)]
    assert res["skipped_ks"] == [56] and all(0 <= r["top1"] <= 100 for r in res["results"])
    assert (tmp_path / "partwise.png").is_file() and (tmp_path / "results.json").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()  # one scalar per epoch and (order, k)
    tags = events.Tags()["scalars"]
    assert {f"partwise/{o}-{k}/{m}" for o in ("top", "bottom") for k in (1, 16) for m in ("loss", "best_top1")} <= set(
        tags
    )
    best = events.Scalars("partwise/top-1/best_top1")
    assert [e.step for e in best] == [0] and best[0].value == pytest.approx(res["results"][0]["top1"])


# ------------------------------------------------------------------------------ shipped class maps
def test_shipped_in9_map_matches_its_documented_checksum_and_is_the_default(files):
    import hashlib
    import re

    from analysis import BackgroundsConfig, in9_classes, timm_subset

    data = PKG / "data"
    documented = dict(re.findall(r"`(\S+)`: .*?sha256 ([0-9a-f]{64})", (data / "README.md").read_text(), re.S))
    assert set(documented) >= {"in_to_in9.json", "in9_classes.txt"}
    for name, digest in documented.items():
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == digest, name
    raw = json.loads((data / "in_to_in9.json").read_text())
    assert len(raw) == 1000 and sum(v == -1 for v in raw.values()) == 630
    assert BackgroundsConfig().class_map == "in_to_in9" and len(in9_classes()) == 9
    out_map = load_output_map("in_to_in9", 1000, [f"{i:02d}_{c}" for i, c in enumerate(in9_classes())], None)
    assert out_map.shape == (1000,) and int((out_map == -1).sum()) == 630
    assert out_map.tolist() == [raw[str(i)] for i in range(1000)]
    with pytest.raises(ConfigError, match="1000 outputs, the classifier has 3"):
        load_output_map("in_to_in9", 3, list("abc"), None)
    for name in ("imagenet_a", "imagenet_r"):  # read from timm's package data, not copied here
        indices, synsets = timm_subset(name)
        assert len(indices) == len(set(indices)) == len(synsets) == 200 and all(0 <= i < 1000 for i in indices)
        out_map = load_output_map(name, 1000, synsets, None)
        assert int((out_map >= 0).sum()) == 200 and out_map[indices[0]] == 0 and out_map[indices[-1]] == 199
    assert not (data / "imagenet_a.json").exists()


def test_corruptions_without_the_optional_package_say_how_to_install(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)  # `import imagecorruptions` now fails
    out = tmp_path / "cor"
    argv = [f"classifier={files['head']}", f"pretrained={files['backbone']}", f"data_path={files['data'] / 'val'}"]
    assert corruptions_cli.main([*argv, f"output_dir={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'ibot-suite[robustness]'" in err and not out.exists()
    with pytest.raises(ConfigError, match=r"ibot-suite\[robustness\]"):
        corruptions.corruption_names(["all"])
    # Pre-corrupted images need no package: this run gets past the check and stops at the missing folder.
    assert corruptions_cli.main([*argv, f"imagenet_c={tmp_path / 'absent'}", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "absent" in err and "ibot-suite" not in err
