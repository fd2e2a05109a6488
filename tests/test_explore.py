"""analysis.explore: the page's embedded numbers, decoded in Python, equal the attention, PCA and correspondence
tools' arrays within the documented precision; Swin; the command; the size formula against real pages.

CPU only: a 2-block tiny ViT (patch 8) and a tiny Swin, three generated images at 64 px. The browser side is
tests/test_explore_browser.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import analysis.attention_work as attention
import analysis.correspondence_work as correspondence
import analysis.explore as explore_cli
import analysis.explore_work as explore
import analysis.pca_work as pca
from analysis.common import cls_attention, mass_threshold, open_image, patch_features
from analysis.config import ExploreConfig, PCAConfig
from pretrain import build_backbone, export_backbone, weights_fingerprint
from tests.helpers.swin import tiny_swin

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64  # image_size: an 8 x 8 grid of 8-px patches


def generated_images(root: Path) -> list[Path]:
    """Three seeded images of different sizes and aspects: coloured blobs on a textured background."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(60, 80), (72, 72), (90, 70)]):
        yy, xx = np.mgrid[:h, :w]
        img = rng.integers(0, 60, (h, w, 3)).astype(float) + 40 * np.sin(xx / (3 + i))[..., None]
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, rng.uniform(0.1, 0.3) * min(h, w)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.integers(60, 255, 3)
        path = root / ("sub" if i == 2 else "") / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def tiny_vit():
    torch.manual_seed(0)
    return build_backbone("vit_tiny", depth=2, img_size=SIZE, patch_size=8).eval()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    paths = generated_images(root / "images")
    export_backbone(tiny_vit(), root / "vit.pth")
    return root, paths


def run_command(root: Path, out: str, *extra: str) -> int:
    common = [f"pretrained={root / 'vit.pth'}", f"data_path={root / 'images'}", f"image_size={SIZE}", "device=cpu"]
    return explore_cli.main([*common, "num_workers=0", "progress=false", f"output_dir={root / out}", *extra])


@pytest.fixture(scope="module")
def page(world):
    """The page of the command line (blocks 0 and 1, 96 of 192 feature dimensions) and its decoded payload."""
    root, paths = world
    assert run_command(root, "out", "layers=[0,-1]") == 0
    return json.loads((root / "out" / "results.json").read_text()), explore.read_page(root / "out" / "explore.html")


def tool_arrays(backbone, paths):
    """What the tools compute on the same pixels: the batch of analysis.attention's pre-processing
    (sorted names, as the page), last-block [CLS] attention, its masks, the patch features."""
    x = torch.cat([attention.preprocess(open_image(p), 8, "square", SIZE) for p in sorted(paths)])
    with torch.inference_mode():
        attn = cls_attention(backbone, x)  # (B, heads, h, w)
        feats = patch_features(backbone, x)  # (B, h, w, D)
    kept = mass_threshold(attn.flatten(2), 0.6).reshape(attn.shape)
    return attn.numpy(), kept.numpy(), feats.numpy()


def test_page_numbers_equal_the_tools_arrays(world, page):
    root, paths = world
    results, data = page
    backbone = tiny_vit()
    attn, kept, feats = tool_arrays(backbone, paths)
    images = data["images"]
    assert [im["name"] for im in images] == ["img0.png", "img1.png", "sub/img2.png"]
    assert data["meta"]["layers"] == [0, 1] and results["layers"] == [0, 1]
    for i, im in enumerate(images):
        # attention of the last block: float16 of cls_attention (relative error <= 2^-11); masks exact
        np.testing.assert_allclose(im["attn"][1].astype(np.float32), attn[i], rtol=2**-11, atol=1e-7)
        np.testing.assert_array_equal(im["mask"][1], kept[i])
        assert im["mask"][0].any() and not np.array_equal(im["attn"][0], im["attn"][1])  # block 0 is its own
    # block 0 as get_last_selfattention would give it for a 1-block model: the same loop, bit for bit
    x = torch.cat([attention.preprocess(open_image(p), 8, "square", SIZE) for p in sorted(paths)])
    with torch.inference_mode():
        both = explore.layer_cls_attention(backbone, x, [0, 1])
        assert torch.equal(both[:, 1], cls_attention(backbone, x))
    # PCA colours (uint8) and foreground masks as analysis.pca's colour_maps on the same features
    rgb, _, _ = pca.colour_maps(list(feats), PCAConfig())
    rgb_fg, fgs, stats = pca.colour_maps(list(feats), PCAConfig(foreground=True))
    for i, im in enumerate(images):
        np.testing.assert_allclose(im["pca"] / 255, rgb[i], atol=1 / 510 + 1e-6)
        np.testing.assert_allclose(im["pca_fg"] / 255, rgb_fg[i], atol=1 / 510 + 1e-6)
        np.testing.assert_array_equal(im["fg"], fgs[i])
    assert results["foreground_fraction"] == stats["foreground_fraction"]
    assert results["backbone"]["fingerprint"] == data["meta"]["fingerprint"] == weights_fingerprint(backbone)


def test_page_similarity_within_its_measured_precision(world, page):
    root, paths = world
    results, data = page
    _, _, feats = tool_arrays(tiny_vit(), paths)
    flat = torch.from_numpy(feats.reshape(-1, feats.shape[-1]))  # (N, D) in image order, as the page
    exact = (F.normalize(flat, dim=-1) @ F.normalize(flat, dim=-1).T).numpy()
    assert data["features"].shape == (len(flat), 96)
    approx = explore.page_similarity(data["features"], np.arange(len(flat)))  # what the page's script computes
    prec = results["similarity_precision"]
    assert prec["queries"] == len(flat)  # under 256 patches: every patch was a query, the max is the true max
    err = np.abs(approx - exact)
    assert err.max() <= prec["max_abs_error"] + 1e-5 and abs(err.mean() - prec["mean_abs_error"]) < 1e-4
    assert 0 < prec["max_abs_error"] < 0.05 and prec["norm_kept"] > 0.9
    # the best match per image (analysis.correspondence's cosine argmax): the page's pick scores within the error
    n = 64
    for q in (0, 27, 130):
        for j in range(3):
            f1, f2 = flat[q // n * n : q // n * n + n], flat[j * n : (j + 1) * n]
            fwd, _ = correspondence.match(f1, f2, "cosine")
            page_pick = approx[q, j * n : (j + 1) * n].argmax()
            assert exact[q, j * n + page_pick] >= exact[q, j * n + int(fwd[q % n])] - 2 * prec["max_abs_error"]


def test_all_dimensions_lose_only_float16(world, tmp_path):
    root, paths = world
    cfg = ExploreConfig(data_path=str(root / "images"), image_size=SIZE, feature_dims=0, device="cpu", num_workers=0)
    cfg.output_dir, cfg.progress = str(tmp_path / "full"), False
    res = explore.run_explore(tiny_vit(), cfg)
    data = explore.read_page(res["page"])
    assert data["features"].shape[1] == 192 and res["similarity_precision"]["norm_kept"] == 1.0
    assert res["similarity_precision"]["max_abs_error"] < 2e-3
    assert res["similarity_precision"]["best_match_agreement"] > 0.97


def test_swin_page_says_so_and_keeps_pca_and_similarity(world, tmp_path):
    root, paths = world
    swin = tiny_swin(window_size=4)
    export_backbone(swin, tmp_path / "swin.pth")
    args = [f"pretrained={tmp_path / 'swin.pth'}", f"data_path={root / 'images'}", "image_size=96", "device=cpu"]
    assert explore_cli.main([*args, "num_workers=0", "progress=false", f"output_dir={tmp_path / 'out'}"]) == 0
    data = explore.read_page(tmp_path / "out" / "explore.html")
    meta = data["meta"]
    assert "swin_tiny has no [CLS] self-attention: the attention views need a ViT backbone" in meta["no_attention"]
    assert meta["grid"] == 32 and meta["layers"] == [] and all("attn" not in im for im in data["images"])
    x = torch.cat([attention.preprocess(open_image(p), 32, "square", 96) for p in sorted(paths)])
    with torch.inference_mode():
        feats = patch_features(swin, x).numpy()  # (3, 3, 3, 192): final-stage tokens
    rgb, _, _ = pca.colour_maps(list(feats), PCAConfig())
    for i, im in enumerate(data["images"]):
        assert (im["h"], im["w"]) == (3, 3)
        np.testing.assert_allclose(im["pca"] / 255, rgb[i], atol=1 / 510 + 1e-6)
    assert data["features"].shape == (27, 27)  # no more directions than patches


def test_command_errors_are_one_line(world, capsys):
    root, _ = world
    assert run_command(root, "bad", "layers=[5]") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["analysis.explore: error: layers must be block indices in [-2, 1], got [5]"]
    assert not (root / "bad").exists()
    assert run_command(root, "bad", "jpeg_quality=0") == 2
    assert "jpeg_quality must be in [1, 95]" in capsys.readouterr().err


def test_help_answers_without_torch():
    probe = "import sys, runpy\nsys.argv = ['analysis.explore', '--help']\ntry:\n"
    probe += "    runpy.run_module('analysis.explore', run_name='__main__')\nexcept SystemExit:\n    pass\n"
    probe += "print('TORCH', 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "layers" in out and "feature_dims" in out and out.strip().endswith("TORCH False")


def test_size_formula_matches_pages_and_keeps_50_vit_s_images_under_20_mb(world, page):
    results, data = page
    sizes = [im["h"] * im["w"] for im in data["images"]]
    jpeg = sum(len(im["jpeg"]) for im in data["images"]) * 3 / 4  # bytes before base64
    predicted = explore.estimate_bytes(len(sizes), sizes[0], heads=3, layers=2, dims=96, jpeg_bytes=jpeg / len(sizes))
    assert abs(predicted - results["page_bytes"]) < 0.1 * results["page_bytes"]
    # 50 images at 480 px, ViT-S/16: 900 patches, 6 heads, the last block, 96 dims; a 480-px JPEG at quality 90
    # of a photo is ~50 KB (measured: module doc)
    assert explore.estimate_bytes(50, 900, heads=6, layers=1, dims=96, jpeg_bytes=50_000) < 17e6
