"""Analysis tools: thresholding, Jaccard, correspondence geometry, prototype banks, figures, CLI.

CPU only, a 2-block tiny ViT (patch 8) and scikit-image's bundled photos at small sizes.
"""

import functools
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image
from skimage import data as skdata

import analysis.attention as attention_cli
import analysis.attention_work as attention
import analysis.correspondence as correspondence_cli
import analysis.correspondence_work as correspondence
import analysis.patterns_work as patterns
import analysis.pca_work as pca
from analysis.common import (
    FittedImages,
    collect_images,
    fit_image,
    mass_threshold,
    normalise,
    open_image,
    patch_features,
)
from evalkit import COMMON_KEYS, evaluate
from plumbing import DatasetError
from pretrain import IBOTHead, build_backbone, export_backbone
from tests.helpers.swin import tiny_swin

ROOT = Path(__file__).resolve().parents[1]


def tiny():
    return build_backbone("vit_tiny", depth=2, img_size=32, patch_size=8).eval()


def tiny_head(out_dim=32, patch_out_dim=24):
    return IBOTHead(192, out_dim=out_dim, patch_out_dim=patch_out_dim, hidden_dim=32, bottleneck_dim=16).eval()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """photos/{cat,people}/*.png from scikit-image, downscaled, and masks/ at the same paths."""
    root = tmp_path_factory.mktemp("world")
    named = {"cat/chelsea": skdata.chelsea(), "cat/coffee": skdata.coffee(), "people/astronaut": skdata.astronaut()}
    for rel, arr in named.items():
        img = Image.fromarray(arr).convert("RGB")
        img = img.resize((img.width // 6, img.height // 6), Image.BICUBIC)  # ~85 x 60 px: any size, any aspect
        (root / "photos" / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / "photos" / f"{rel}.png")
        h, w = img.height, img.width
        yy, xx = np.mgrid[:h, :w]
        mask = ((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2 < 1  # central ellipse
        (root / "masks" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / "masks" / f"{rel}.png")
    return root


def assert_pngs(paths):
    assert paths
    for p in paths:
        with Image.open(p) as im:
            im.verify()
            assert im.format == "PNG" and im.width > 10 and im.height > 10


# ------------------------------------------------------------------------------ thresholding
def test_threshold_hand_made():
    keep = mass_threshold(torch.tensor([0.1, 0.2, 0.3, 0.4]))  # 0.4 alone < 60%; 0.4 + 0.3 = 70%
    assert keep.tolist() == [False, False, True, True]
    keep = mass_threshold(torch.tensor([6.0, 1.0, 1.0, 1.0, 1.0]))  # unnormalised; exactly 60% in one
    assert keep.tolist() == [True, False, False, False, False]
    assert mass_threshold(torch.ones(10)).sum() == 6  # uniform: 6 of 10
    maps = torch.tensor([[0.05, 0.5, 0.05, 0.4], [0.25, 0.25, 0.25, 0.25]])  # per row, order restored
    # row 2: two quarters hold 50% < 60%, so three are kept (ties broken by position)
    assert mass_threshold(maps).tolist() == [[False, True, False, True], [False, True, True, True]]
    assert mass_threshold(torch.tensor([0.1, 0.2, 0.3, 0.4]), mass=0.9).tolist() == [False, True, True, True]


def test_threshold_is_the_smallest_set_holding_the_mass():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(50, 64, generator=g) ** 4  # peaky maps
    keep = mass_threshold(a, 0.6)
    for row, k in zip(a, keep, strict=True):
        frac = row[k].sum() / row.sum()
        assert frac >= 0.6 - 1e-6
        assert (row[k].sum() - row[k].min()) / row.sum() < 0.6  # dropping any kept patch falls short
        fewest = int((torch.cumsum(row.sort(descending=True).values, 0) / row.sum() < 0.6).sum()) + 1
        assert int(k.sum()) == fewest


# ----------------------------------------------------------------------------------- Jaccard
def test_jaccard_and_ceiling_hand_made():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :4] = True  # 4 pixels
    b[0, 2:] = b[1, 2:] = True  # 4 pixels, 2 shared
    assert attention.jaccard(a, b) == pytest.approx(2 / 6)
    assert attention.jaccard(a, a) == 1.0 and attention.jaccard(a, ~a) == 0.0
    assert attention.jaccard(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    obj = np.zeros((64, 64), bool)
    obj[:16, :40] = True  # 2 x 5 = 10 whole patches of 8 px
    assert attention.coverage(obj, 8).sum() == 10
    # Uniform attention over the object keeps 6 of its 10 patches: the ceiling is 0.6, not 1.
    assert attention.ceiling_jaccard(obj, 8, 0.6) == pytest.approx(0.6)
    kept = np.zeros((2, 8, 8), bool)
    kept[0, :2, :5] = True  # head 0 = the object; head 1 = nothing
    assert attention.score_heads(kept, obj, 8) == [1.0, 0.0]
    half = np.zeros((64, 64), bool)
    half[:32] = True
    everything = np.ones((1, 8, 8), bool)  # keeping every patch, at random or not, gives |G| / |image|
    assert attention.chance_jaccard(everything, half, 8) == pytest.approx(0.5)


def test_attention_run(photos, tmp_path):
    cfg = attention.AttentionConfig(
        data_path=str(photos / "photos"),
        masks=str(photos / "masks"),
        resize="short_side",
        image_size=48,
        max_figures=1,
        output_dir=str(tmp_path),
        device="cpu",
        num_workers=0,
    )
    res = evaluate(attention.run_attention, tiny(), cfg, "analysis.attention")  # the shell writes the files
    assert res["images"] == res["jaccard_images"] == 3 and res["masks_missing"] == 0
    assert len(res["jaccard_per_head"]) == 3 and 0 <= res["jaccard_best_head"] <= 1
    assert res["jaccard_best_head"] == max(res["jaccard_per_head"])
    assert 0 < res["jaccard_chance"] < 0.4 < res["jaccard_ceiling"] <= 0.75
    assert len(res["figures"]) == 2
    assert_pngs(res["figures"])
    assert (tmp_path / "results.json").is_file() and (tmp_path / "config.yaml").is_file()


def test_attention_batches_give_the_per_image_results(photos, tmp_path):
    common = dict(data_path=str(photos / "photos"), masks=str(photos / "masks"), resize="square", image_size=32,
                  max_figures=0, device="cpu", num_workers=0)  # fmt: skip
    model = tiny()
    batched = attention.run_attention(model, attention.AttentionConfig(output_dir=str(tmp_path / "b"), **common))
    single = attention.AttentionConfig(output_dir=str(tmp_path / "s"), batch_size_per_gpu=1, **common)
    assert (
        attention.run_attention(model, single)["per_image"] == batched["per_image"] and len(batched["per_image"]) == 3
    )


def test_fit_image_keeps_aspect_or_squares():
    img = Image.new("RGB", (300, 200))
    assert fit_image(img, 8, "short_side", 50).size == (72, 48)  # 75 x 50 cropped to multiples of 8
    assert fit_image(img, 16, "square", 480).size == (480, 480)
    assert fit_image(img, 16, "none", 0).size == (288, 192)


# --------------------------------------------------------------------------- correspondence
def test_correspondence_identity_is_perfect():
    img = Image.fromarray(skdata.chelsea())
    cfg = correspondence.CorrespondenceConfig(image_size=48)
    view = correspondence.full_view(img, 48)
    im = correspondence.render(img, view)
    with torch.no_grad():
        rec = correspondence.score_pair(tiny(), (im, im), torch.device("cpu"), cfg, views=(view, view))
    assert rec["evaluated"] == 36 and rec["correct"] == 36
    assert rec["mutual"] == 1.0 and len(rec["rank"]) == 36


def test_correspondence_geometry_tracks_crop_and_flip():
    v = correspondence.View(10.0, 20.0, 80.0, 80.0, False, 32)
    flipped = correspondence.View(10.0, 20.0, 80.0, 80.0, True, 32)
    inside, target = correspondence.true_matches(v, flipped, 8)
    assert inside.all()
    rows, cols = np.divmod(target, 4)
    assert (rows == np.repeat(np.arange(4), 4)).all() and (cols == np.tile(np.arange(3, -1, -1), 4)).all()
    right = correspondence.View(10.0, 60.0, 80.0, 80.0, False, 32)  # shifted by half a crop
    inside, target = correspondence.true_matches(v, right, 8)
    assert inside.reshape(4, 4)[:, 2:].all() and not inside.reshape(4, 4)[:, :2].any()
    assert (np.divmod(target, 4)[1].reshape(4, 4)[:, 2:] == [[0, 1]] * 4).all()


def test_correspondence_run_both_modes(photos, tmp_path):
    common = dict(data_path=str(photos / "photos"), image_size=32, max_figures=1, device="cpu", num_workers=0)
    model = tiny()
    res = correspondence.run_correspondence(
        model, correspondence.CorrespondenceConfig(output_dir=str(tmp_path / "i"), **common)
    )
    assert res["pairs"] == 3 and 0 <= res["accuracy"] <= 1 and res["patches_evaluated"] > 0
    one = correspondence.CorrespondenceConfig(output_dir=str(tmp_path / "i1"), batch_size_per_gpu=1, **common)
    one_by_one = correspondence.run_correspondence(model, one)  # the seeded views do not depend on the batching
    assert {k: one_by_one[k] for k in ("accuracy", "mutual_nn_fraction", "patches_evaluated")} == {
        k: res[k] for k in ("accuracy", "mutual_nn_fraction", "patches_evaluated")
    }
    res = correspondence.run_correspondence(
        tiny(), correspondence.CorrespondenceConfig(mode="class", output_dir=str(tmp_path / "c"), **common)
    )
    assert res["pairs"] == 1  # cat/chelsea with cat/coffee; the single person has no partner
    assert_pngs(res["figures"])


# ------------------------------------------------------------------------------- clustering
@pytest.mark.parametrize("kind,tokens,protos", [("patch", 16, 24), ("cls", 1, 32)])
def test_patterns_bank_and_counts(photos, tmp_path, kind, tokens, protos):
    backbone, head = tiny(), tiny_head()
    cfg = patterns.PatternsConfig(
        data_path=str(photos / "photos"),
        type=kind,
        resize_size=36,
        image_size=32,
        num_prototypes=3,
        topk=4,
        dark_value=-1,
        output_dir=str(tmp_path),
        device="cpu",
        num_workers=0,
    )
    res = patterns.run_patterns(backbone, cfg, head=head)
    scores, ids = patterns.open_bank(tmp_path)
    assert res["bank_shape"] == [3, tokens] and scores.shape == ids.shape == (3, tokens)
    assert res["prototypes"] == protos
    with torch.no_grad():  # the bank holds the argmax prototype of every token
        prep = patterns.preprocess(cfg)
        x = torch.cat([normalise(prep(open_image(it.path))) for it in collect_images([cfg.data_path])])
        cls_logits, patch_logits = head(backbone(x))
        logits = cls_logits[:, None] if kind == "cls" else patch_logits
    assert np.array_equal(ids, logits.argmax(-1).numpy())
    counts = patterns.prototype_counts(ids, protos)
    assert counts.sum() == 3 * tokens and (counts > 0).sum() == res["prototypes_used"]
    top = [t["count"] for t in res["top_prototypes"]]
    assert top == sorted(top, reverse=True) and top[0] == counts.max() and len(top) <= 3
    assert all(1 <= t["shown"] <= 4 for t in res["top_prototypes"])
    assert_pngs(res["figures"])


def test_context_crop_and_darkness():
    img = np.zeros((64, 48, 3), np.uint8)  # 8 x 6 patches of 8 px
    crop, centre = patterns.context_crop(img, token=0, patch=8, window=5)
    assert crop.shape == (40, 40, 3) and centre == (0, 0)  # shifted inside the image
    crop, centre = patterns.context_crop(img, token=3 * 6 + 3, patch=8, window=5)
    assert centre == (2, 2)
    assert patterns.too_dark(crop, 40) and not patterns.too_dark(crop + 200, 40)


# ------------------------------------------------------------------------------------- PCA
def test_pca_joint_with_foreground(photos, tmp_path):
    cfg = pca.PCAConfig(
        data_path=str(photos / "photos"), image_size=40, foreground=True, output_dir=str(tmp_path), device="cpu",
        num_workers=0,
    )  # fmt: skip
    res = pca.run_pca(tiny(), cfg)
    assert len(res["explained_variance_ratio"]) == 3 and 0 < res["foreground_fraction"] < 1
    assert_pngs(res["figures"])


# ------------------------------------------------------------------------------ CLI, imports
def test_cli_end_to_end_and_errors(photos, tmp_path):
    ckpt = tmp_path / "tiny.pth"
    export_backbone(tiny(), ckpt)
    out = tmp_path / "cli"
    argv = [f"pretrained={ckpt}", f"data_path={photos / 'photos' / 'cat'}", "image_size=32", "num_workers=0"]
    argv.append(f"output_dir={out}")
    proc = subprocess.run([sys.executable, "-m", "analysis.pca", *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.json").is_file() and (out / "pca.png").is_file()
    assert attention_cli.main([f"pretrained={ckpt}", f"data_path={tmp_path / 'absent'}"]) == 2
    assert attention_cli.main([f"pretrained={ckpt}", "data_path=x", "no_such_key=1"]) == 2
    assert attention_cli.main([f"pretrained={tmp_path / 'absent.pth'}", f"data_path={photos}"]) == 2
    with pytest.raises(DatasetError):
        collect_images([])


def test_swin_attention_tools_stop_and_patch_tools_run(photos, tmp_path, capsys):
    """Swin: [CLS]-attention tools exit 2 with one clear line; PCA and patterns work on its 32-px tokens."""
    swin = tiny_swin(window_size=4)
    export_backbone(swin, tmp_path / "swin.pth")
    common = [f"pretrained={tmp_path / 'swin.pth'}", f"data_path={photos / 'photos'}", "device=cpu"]
    capsys.readouterr()
    assert attention_cli.main([*common, f"output_dir={tmp_path / 'a'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "analysis.attention: error: swin_tiny has no [CLS] self-attention: attention maps need a ViT backbone"
    assert correspondence_cli.main([*common, "image_size=64", f"output_dir={tmp_path / 'c'}"]) == 2
    assert "swin_tiny has no [CLS] self-attention: correspondence rankings need" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # stopped before writing anything

    images, x = str(photos / "photos"), torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        assert patch_features(swin, x).shape == (1, 3, 4, 192)  # (B, H/32, W/32, D): the final-stage tokens
    cfg = pca.PCAConfig(data_path=images, image_size=96, output_dir=str(tmp_path / "p"), device="cpu", num_workers=0)
    res = pca.run_pca(swin, cfg)
    assert len(res["explained_variance_ratio"]) == 3 and res["images"] == 3
    assert_pngs(res["figures"])
    cfg = patterns.PatternsConfig(
        data_path=images, resize_size=72, image_size=64, num_prototypes=2, topk=2, window=1, dark_value=-1,
        output_dir=str(tmp_path / "t"), device="cpu", num_workers=0,
    )  # fmt: skip
    res = patterns.run_patterns(swin, cfg, head=tiny_head())
    assert res["bank_shape"] == [3, 4]  # 64-px crops: 2 x 2 final-stage tokens
    assert_pngs(res["figures"])


# -------------------------------------------------------------------- the authors' pre-processing
@pytest.mark.parametrize("resize,size", [("square", 60), ("short_side", 52)])
def test_attention_preprocessing_equals_the_authors_steps(resize, size):
    """The attention tool's input equals visualize_attention.py's steps, restated literally."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (97, 150, 3), dtype=np.uint8))  # odd size, not square
    patch = 16
    # The reference: Resize(image_size) with the default interpolation, ToTensor, Normalize, then crop
    # the tensor to a multiple of the patch size (their image_size is (480, 480) or [N]).
    transform = T.Compose(
        [
            T.Resize((size, size) if resize == "square" else size),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    ref = transform(img)
    h, w = ref.shape[1] - ref.shape[1] % patch, ref.shape[2] - ref.shape[2] % patch
    ref = ref[:, :h, :w].unsqueeze(0)
    ours = attention.preprocess(img, patch, resize, size)
    assert ours.shape == ref.shape and torch.equal(ours, ref)
    bicubic = normalise(fit_image(img, patch, resize, size, T.InterpolationMode.BICUBIC))
    assert not torch.equal(bicubic, ref)  # the interpolation matters: the comparison can fail
    fit = functools.partial(attention.fit, patch_size=patch, resize=resize, image_size=size)
    with tempfile.TemporaryDirectory() as d:  # the path run() takes: FittedImages over a decoded file
        img.save(Path(d) / "x.png")
        x, rgb, _ = FittedImages(collect_images([d]), fit)[0]
    assert torch.equal(x, ref[0]) and rgb.shape == (h, w, 3)


# --------------------------------------------------------------------- every command's interface
COMMANDS = [
    "analysis.attention", "analysis.correspondence", "analysis.patterns", "analysis.pca",
    "analysis.robustness.occlusion", "analysis.robustness.shuffle", "analysis.robustness.corruptions",
    "analysis.robustness.backgrounds", "analysis.robustness.natural_adv", "analysis.robustness.partwise",
]  # fmt: skip


def test_command_modules_import_no_torch():
    """The shells and their configs are torch-free: --help costs no torch import of ours."""
    code = f"import importlib, sys\nfor m in {COMMANDS!r}: importlib.import_module(m)\nprint('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "tiny.pth"
    export_backbone(tiny(), path)
    return path


@pytest.mark.parametrize("command", COMMANDS)
def test_command_interface(command, tiny_file, tmp_path, capsys):
    """--help lists the common keys; batch_size_per_gpu=0 and an output_dir that is a file exit 2 in
    one line before any work."""
    main = importlib.import_module(command).main
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    listed = capsys.readouterr().out
    expected_dir = f"runs/{command}"
    for key in COMMON_KEYS:
        assert f"\n  {key} = " in listed, key
    assert f"output_dir = {expected_dir!r}  # " in listed
    files = [f"pretrained={tiny_file}", f"data_path={tmp_path}"]
    files += [f"classifier={tiny_file}"] if ".robustness." in command and "partwise" not in command else []
    out = tmp_path / "out"
    assert main([*files, "batch_size_per_gpu=0", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{command}: error: batch_size_per_gpu must be >= 1, got 0" and not out.exists()
    taken = tmp_path / "taken.txt"
    taken.write_text("a file")
    assert main([*files, f"output_dir={taken}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is an existing file, not a folder" in err
