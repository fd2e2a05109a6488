"""DAVIS video object segmentation: label propagation, the official J and F, DAVIS files, the demo-world videos,
and the command end to end (CPU, generated data)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from demo_world import WorldConfig, write_world
from demo_world.config import validate
from demo_world.video import davis_palette, video_frame, video_tracks
from evalkit import COMMON_KEYS
from plumbing import ConfigError, DatasetError
from tests.helpers.eval_world import export_tiny, tiny_backbone
from video_seg import (
    DAVIS_PALETTE,
    LabelPropagator,
    VideoSegConfig,
    first_frame_labels,
    frame_scores,
    label_propagation,
    read_frame,
    read_indexed_png,
    run,
    soft_to_mask,
    target_size,
    write_indexed_png,
)
from video_seg import propagation as propagation_module
from video_seg.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- propagation
def _boxes(t: int, h: int = 12, w: int = 16) -> np.ndarray:
    """Object ids (h, w) at frame t: object 1 moves right one cell per frame, object 2 moves down."""
    ids = np.zeros((h, w), dtype=np.uint8)
    ids[2:6, 1 + t : 5 + t] = 1
    ids[1 + t : 4 + t, 11:15] = 2
    return ids


def _propagate(ids_per_frame, features_per_frame, **settings):
    first = torch.from_numpy(ids_per_frame[0]).long()
    propagator = LabelPropagator(features_per_frame[0], F.one_hot(first).permute(2, 0, 1).float(), **settings)
    return [propagator.step(f) for f in features_per_frame[1:]]


def test_one_hot_features_reproduce_the_masks_exactly():
    """Features = one-hot of the true object: every target patch's top-k are patches of its own object, so the
    soft labels are the true one-hot maps and (patch 1) the masks are exact, J = F = 1."""
    ids = [_boxes(t) for t in range(7)]
    feats = [F.one_hot(torch.from_numpy(m).long().flatten(), 3).float() for m in ids]  # (N, 3)
    softs = _propagate(ids, feats, n_last_frames=3, size_mask_neighborhood=3, topk=5, temperature=0.1)
    for t, soft in enumerate(softs, start=1):
        truth = F.one_hot(torch.from_numpy(ids[t]).long(), 3).permute(2, 0, 1).float()
        assert torch.allclose(soft, truth, atol=1e-6)
        mask = soft_to_mask(soft, 1, ids[t].shape)
        assert np.array_equal(mask, ids[t])
        j, f = frame_scores(mask, ids[t], 2)
        assert j.tolist() == [1.0, 1.0] and f.tolist() == [1.0, 1.0]


def test_the_window_keeps_look_alike_objects_apart():
    """Two objects with the same features, 7 cells apart: a radius-3 window keeps each label on its object; no
    window (0) mixes them and object 2 is lost."""

    def ids_at(t):
        ids = np.zeros((10, 16), dtype=np.uint8)
        ids[2 + t // 2 : 5 + t // 2, 1:4] = 1
        ids[2:5, 10 + t // 2 : 13 + t // 2] = 2
        return ids

    ids = [ids_at(t) for t in range(5)]
    feats = [F.one_hot(torch.from_numpy(m > 0).long().flatten(), 2).float() for m in ids]  # fg/bg only
    windowed = _propagate(ids, feats, size_mask_neighborhood=3)
    assert all(np.array_equal(soft_to_mask(s, 1, (10, 16)), ids[t]) for t, s in enumerate(windowed, 1))
    everywhere = _propagate(ids, feats, size_mask_neighborhood=0)
    mask = soft_to_mask(everywhere[0], 1, (10, 16))
    assert frame_scores(mask, ids[1], 2)[0][1] == 0.0  # object 2 took object 1's id


def _direct(target, keys, labels, radius, grid, topk, temperature):
    """The protocol written as a loop over target patches (float64)."""
    h, w = grid
    q = target / np.linalg.norm(target, axis=1, keepdims=True)
    out = np.zeros((labels.shape[1], q.shape[0]))
    for n in range(q.shape[0]):
        weights, votes = [], []
        for c in range(keys.shape[0]):
            for m in range(keys.shape[1]):
                near = abs(n // w - m // w) <= radius and abs(n % w - m % w) <= radius
                weights.append(np.exp(q[n] @ keys[c, m] / temperature) if near or radius == 0 else 0.0)
                votes.append(labels[c, :, m])
        weights = np.array(weights)
        kth = np.sort(weights)[::-1][topk - 1]
        weights = np.where(weights < kth, 0.0, weights)
        out[:, n] = (weights / weights.sum()) @ np.array(votes)
    return out


@pytest.mark.parametrize("radius", [0, 2])
def test_label_propagation_equals_the_direct_loop(radius, monkeypatch):
    """Top-k jointly over all context frames, normalised after the top-k, same window for each frame; also
    when the affinity rows are split into chunks."""
    g = torch.Generator().manual_seed(0)
    grid, ctx, dim, c = (4, 5), 3, 6, 3
    n = grid[0] * grid[1]
    target = torch.randn(n, dim, generator=g)
    keys = F.normalize(torch.randn(ctx, n, dim, generator=g), dim=2)
    labels = torch.rand(ctx, c, n, generator=g)
    window = propagation_module.neighbourhood_window(*grid, radius)
    expected = _direct(target.double().numpy(), keys.double().numpy(), labels.double().numpy(), radius, grid, 5, 0.1)
    got = label_propagation(target, keys, labels, window, topk=5, temperature=0.1)
    assert np.allclose(got.numpy(), expected, rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(propagation_module, "MAX_AFFINITY_ELEMENTS", 7 * ctx * n)  # 7 rows per chunk
    assert torch.allclose(label_propagation(target, keys, labels, window, 5, 0.1), got, atol=1e-6)


def test_the_context_is_frame_0_then_the_last_n_predictions_oldest_first(monkeypatch):
    seen = []

    def spy(target, keys, labels, *args):
        seen.append((keys.clone(), labels.clone()))
        return labels[-1] * 0 + target.sum()  # (C, N), recognisable per frame

    monkeypatch.setattr(propagation_module, "label_propagation", spy)
    labels = F.one_hot(torch.tensor([[0, 1, 1], [0, 0, 1]]), 2).permute(2, 0, 1).float()  # (2, 2, 3)
    frames = [torch.randn(6, 4) for _ in range(5)]
    propagator = LabelPropagator(frames[0], labels, n_last_frames=2)
    sizes = []
    for f in frames[1:]:
        sizes.append(propagator.context_size())
        propagator.step(f)
    assert sizes == [1, 2, 3, 3] and [len(k) for k, _ in seen] == sizes
    for t, (keys, context_labels) in enumerate(seen, start=1):
        assert torch.allclose(keys[0], F.normalize(frames[0], dim=1))  # frame 0 always first
        assert torch.equal(context_labels[0], labels.flatten(1))
        for key, label, past in zip(keys[1:], context_labels[1:], range(max(1, t - 2), t), strict=True):
            assert torch.allclose(key, F.normalize(frames[past], dim=1)) and torch.all(label == frames[past].sum())


def test_soft_to_mask_normalises_each_channel_before_the_argmax():
    """bg [0.6, 0.4] beats obj [0.1, 0.3] everywhere, but after x2 bilinear upsampling and per-channel min-max
    the right half is the object; nearest resize to the frame size."""
    soft = torch.tensor([[[0.6, 0.4]], [[0.1, 0.3]]])  # (C=2, h=1, w=2)
    assert soft_to_mask(soft, 2, (2, 4)).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1]]
    assert soft_to_mask(soft, 2, (4, 8))[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


# ----------------------------------------------------------------------------------------- DAVIS files
def test_indexed_png_round_trip_with_the_davis_palette(tmp_path):
    ids = np.random.default_rng(0).integers(0, 4, (7, 9)).astype(np.uint8)
    write_indexed_png(tmp_path / "a" / "00001.png", ids)
    im = Image.open(tmp_path / "a" / "00001.png")
    assert im.mode == "P" and np.array_equal(read_indexed_png(tmp_path / "a" / "00001.png"), ids)
    palette = im.getpalette()
    assert palette[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] and palette[3 * 255 :] == [224, 224, 192]
    assert list(DAVIS_PALETTE) == davis_palette()  # the generator's annotations carry the same colours
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DatasetError, match="mode RGB"):
        read_indexed_png(tmp_path / "rgb.png")


def test_target_size_rule():
    assert target_size(480, 854, 480) == (480, 832) and target_size(854, 480, 480) == (832, 480)
    assert target_size(512, 512, 512) == (512, 512) and target_size(72, 128, 72) == (72, 128)
    with pytest.raises(DatasetError, match="square"):
        target_size(480, 480, 480)  # the authors' frame and label readers would disagree (480x448 vs 448x480)


def test_read_frame_is_bgr_decoded_rgb_normalised(tmp_path):
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "f.png")
    x = read_frame(tmp_path / "f.png", (5, 10), crop=(4, 8))
    assert x.shape == (3, 4, 8)
    expected = [(200 / 255 - 0.485) / 0.228, (100 / 255 - 0.456) / 0.224, (50 / 255 - 0.406) / 0.225]
    assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5)


def test_first_frame_labels():
    ann = np.zeros((8, 8), np.uint8)
    ann[:4, :4], ann[4:, 4:], ann[0, 7] = 2, 1, 255
    labels = first_frame_labels(ann, (2, 2))  # nearest: pixels (2, 2), (2, 6), (6, 2), (6, 6)
    assert labels.shape == (3, 2, 2) and labels.argmax(0).tolist() == [[2, 0], [0, 1]]
    assert first_frame_labels(np.where(ann == 2, 0, ann), (2, 2)).shape[0] == 2  # C = largest id + 1


# ----------------------------------------------------------------------------------------- demo world
VIDEO_WORLD = dict(classification=False, backgrounds=False, coco=False, ade=False, video=True, progress=False)


@pytest.fixture(scope="module")
def video_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vworld") / "w"
    write_world(out, seed=0, video_count=2, video_frames=5, **VIDEO_WORLD)
    return out / "video"


def test_demo_world_videos_are_davis_layout_with_exact_masks(video_world, tmp_path):
    names = (video_world / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert names == ["shapes000", "shapes001"]
    cfg = WorldConfig(video_count=2, video_frames=5, **VIDEO_WORLD)
    for i, name in enumerate(names):
        frames = sorted((video_world / "JPEGImages" / "480p" / name).glob("*.jpg"))
        assert [f.name for f in frames] == [f"{t:05d}.jpg" for t in range(5)]
        background, tracks = video_tracks(cfg, i)
        for t, frame in enumerate(frames):
            image, ids = video_frame(background, tracks, t)
            ann = Image.open(video_world / "Annotations" / "480p" / name / f"{t:05d}.png")
            assert ann.mode == "P" and ann.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
            assert np.array_equal(np.asarray(ann), ids) and np.asarray(Image.open(frame)).shape == (72, 128, 3)
            assert np.abs(np.asarray(Image.open(frame)).astype(int) - image).mean() < 3  # JPEG q95
        first, last = (read_indexed_png(video_world / "Annotations" / "480p" / name / f"{t:05d}.png") for t in (0, 4))
        assert first.max() == len(tracks) >= 1 and not np.array_equal(first, last)  # the objects move
    write_world(tmp_path / "again", seed=0, video_count=2, video_frames=5, **VIDEO_WORLD)
    for path in sorted(video_world.rglob("*.*")):
        assert (tmp_path / "again" / "video" / path.relative_to(video_world)).read_bytes() == path.read_bytes()


def test_video_object_count_is_its_own_knob():
    """1..video_max_objects shapes per video, whatever scene_max_objects says (the demo's scenes hold 2)."""
    counts = {m: [len(video_tracks(WorldConfig(video_max_objects=m, scene_max_objects=s), i)[1]) for i in range(24)]
              for m, s in ((1, 4), (3, 1))}  # fmt: skip
    assert counts[1] == [1] * 24
    assert set(counts[3]) == {1, 2, 3}
    same = [len(video_tracks(WorldConfig(scene_max_objects=2), i)[1]) for i in range(24)]
    assert same == [len(video_tracks(WorldConfig(), i)[1]) for i in range(24)] == counts[3]
    with pytest.raises(ConfigError, match="video_max_objects"):
        validate(WorldConfig(video_max_objects=0))


def test_default_world_has_no_video(tmp_path):
    write_world(tmp_path / "w", image_size=16, n_train=1, n_val=1, backgrounds=False, coco=False, ade=False,
                progress=False)  # fmt: skip
    manifest = json.loads((tmp_path / "w" / "world.json").read_text())
    assert not (tmp_path / "w" / "video").exists() and not any(k.startswith("video") for k in manifest["config"])


# ----------------------------------------------------------------------------------------- the command
def test_main_end_to_end_on_the_demo_videos(video_world, tmp_path, one_thread):
    backbone = export_tiny(tmp_path / "tiny.pth")
    out = tmp_path / "run"
    args = [f"pretrained={backbone}", f"data_path={video_world}", f"output_dir={out}", "short_side=72"]
    assert main([*args, "device=cpu", "num_workers=0", "progress=false", "batch_size_per_gpu=2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["num_videos"] == 2 and results["num_frames"] == 10
    assert len(results["per_object"]) == results["num_objects"] >= 2 and results["grids"]["shapes000"] == [9, 16]
    for key in ("J&F-Mean", "J-Mean", "F-Mean", "J-Recall", "J-Decay", "F-Recall", "F-Decay"):
        assert np.isfinite(results[key])
    assert 0 <= results["J-Mean"] <= 100 and results["J&F-Mean"] == pytest.approx(
        (results["J-Mean"] + results["F-Mean"]) / 2
    )
    for name in ("shapes000", "shapes001"):
        masks = sorted((out / name).glob("*.png"))
        assert [m.name for m in masks] == [f"{t:05d}.png" for t in range(5)]
        gt0 = read_indexed_png(video_world / "Annotations" / "480p" / name / "00000.png")
        assert np.array_equal(read_indexed_png(masks[0]), gt0)
        for m in masks:
            assert Image.open(m).mode == "P" and Image.open(m).size == (128, 72)
            assert read_indexed_png(m).max() <= gt0.max()


def test_run_in_memory_batching_and_mask_only_runs(video_world, tmp_path, one_thread):
    """Frames batched 4 at a time give the masks of one at a time; evaluate=false writes the masks only."""
    cfg = dict(data_path=str(video_world), device="cpu", num_workers=0, progress=False, short_side=72)
    run(tiny_backbone(), VideoSegConfig(output_dir=str(tmp_path / "a"), videos=["shapes001"], **cfg))
    run(tiny_backbone(), VideoSegConfig(output_dir=str(tmp_path / "b"), videos=["shapes001"], batch_size_per_gpu=4,
                                        **cfg))  # fmt: skip
    for path in sorted((tmp_path / "a" / "shapes001").glob("*.png")):
        same = read_indexed_png(path) == read_indexed_png(tmp_path / "b" / "shapes001" / path.name)
        assert same.mean() > 0.999
    bare_cfg = VideoSegConfig(output_dir=str(tmp_path / "c"), videos=["shapes000"], evaluate=False, **cfg)
    bare = run(tiny_backbone(), bare_cfg)
    assert "J&F-Mean" not in bare and len(list((tmp_path / "c").rglob("*.png"))) == 5


class PatchColours(torch.nn.Module):
    """A stand-in ViT whose patch features are the patches' mean colours (the demo objects differ in colour)."""

    embed_dim = 3

    def __init__(self, patch_size: int):
        super().__init__()
        self.patch_size = patch_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = F.avg_pool2d(x, self.patch_size).flatten(2).transpose(1, 2)  # (B, N, 3)
        return torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)  # (B, 1+N, 3)


def test_features_that_see_the_objects_score_high(video_world, tmp_path, one_thread):
    """Through the whole pipeline (frame reading, grid, propagation, upsampling, PNGs, J&F), colour features on a
    2 px grid track the demo shapes (J&F 96; 88 on a 4 px grid); a random ViT on its 8 px grid scores 73."""
    cfg = dict(data_path=str(video_world), device="cpu", num_workers=0, progress=False, short_side=72)
    colours = run(PatchColours(2), VideoSegConfig(output_dir=str(tmp_path / "c"), **cfg))
    random_vit = run(tiny_backbone(), VideoSegConfig(output_dir=str(tmp_path / "r"), **cfg))
    assert colours["J&F-Mean"] > 90 and colours["J&F-Mean"] > random_vit["J&F-Mean"] + 15


def test_help_lists_the_common_keys_without_torch():
    code = "import sys; import video_seg.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    help_text = subprocess.run([sys.executable, "-m", "video_seg", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert help_text.returncode == 0
    for key in (*COMMON_KEYS, "n_last_frames", "size_mask_neighborhood", "topk", "temperature", "short_side"):
        assert f"  {key} = " in help_text.stdout
    assert "output_dir = 'runs/video_seg'" in help_text.stdout


def test_user_errors_exit_2_before_any_work(video_world, tmp_path, capsys):
    backbone = export_tiny(tmp_path / "tiny.pth")
    base = [f"pretrained={backbone}", f"data_path={video_world}", f"output_dir={tmp_path / 'o'}", "device=cpu"]
    assert main([*base, "batch_size_per_gpu=0"]) == 2
    assert main([*base, "topk=0"]) == 2
    assert main([*base, "videos=[nope]"]) == 2 and "not in" in capsys.readouterr().err
    assert main([f"pretrained={backbone}", f"data_path={tmp_path}", f"output_dir={tmp_path / 'o'}"]) == 2
    assert "ImageSets" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_an_annotation_of_another_size_is_one_line(video_world, tmp_path, capsys):
    """A later frame's annotation that does not match the frames' size is a DatasetError naming the file."""
    import shutil

    world = tmp_path / "davis"
    shutil.copytree(video_world, world)
    bad = world / "Annotations" / "480p" / "shapes000" / "00002.png"
    write_indexed_png(bad, np.zeros((36, 64), dtype=np.uint8))
    args = [f"pretrained={export_tiny(tmp_path / 'tiny.pth')}", f"data_path={world}", f"output_dir={tmp_path / 'o'}"]
    assert main([*args, "videos=[shapes000]", "short_side=72", "device=cpu", "num_workers=0", "progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("video_seg: error: ") and "00002.png is 64x36 pixels" in err and "\n" not in err
    assert not (tmp_path / "o" / "results.json").exists()
