"""Issue 32, part B (images in, pre-training): hostile probes that ran silently wrong or ended in a traceback.

1 symlink loops, 2 a run with no step, 3 a dataset changed under a resume, 8 16-bit greyscale, 9 a
classification root given to pre-training, 12 decompression bombs, 18 SIGTERM's exit status, 21 the
pickle refusal as the only line.
"""

import json
import os
import pickle
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plumbing import CheckpointError, DatasetError, ImageReadError, dataset_fingerprint, parse_config
from pretrain import ImageFolderDataset, TrainConfig, TrainingRun, list_images, safe_load, train
from pretrain.__main__ import main as pretrain_main
from tests.helpers.worlds import write_blobs

TINY = [
    "arch=vit_tiny", "depth=1", "patch_size=8", "drop_path_rate=0.0", "out_dim=32", "patch_out_dim=32",
    "head_hidden_dim=16", "head_bottleneck_dim=8", "global_crop_size=16", "local_crop_size=8",
    "local_crops_number=1", "batch_size_per_gpu=4", "warmup_epochs=0", "warmup_teacher_temp_epochs=0",
    "num_workers=0", "precision=fp32", "saveckp_freq=0", "lr=0.001", "epochs=1", "threads=1",
]  # fmt: skip


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    return [*TINY, f"data_path={data}", f"output_dir={out}", *extra]


def _last_error(capsys, prog: str = "pretrain") -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"{prog}: error:"), err
    return err[-1]


# ------------------------------------------------------------------------------------ 1: symlink loops
def test_a_symlink_loop_is_followed_once_and_the_skipped_links_counted(tmp_path, caplog):
    root = write_blobs(tmp_path / "data", n_per_class=3, size=16)
    (root / "class0" / "loop").symlink_to(root)  # the loop: class0/loop/class0/loop/...
    outside = write_blobs(tmp_path / "extra", n_per_class=2, size=16, classes=1)
    (root / "class1" / "more").symlink_to(outside / "class0")  # a link out of the tree is followed
    with caplog.at_level("WARNING"):
        ds = ImageFolderDataset(root)
    assert ds.targets == [0, 0, 0, 1, 1, 1, 1, 1] and ds.skipped_links == 1
    assert "1 folder link" in caplog.text
    flat = ImageFolderDataset(root, labelled=False)
    assert len(flat) == 8 and flat.skipped_links == 1
    assert len(list_images(root)) == 8


# ------------------------------------------------------------------------------ 8: 16-bit greyscale
def _gradient16(path: Path) -> np.ndarray:
    levels = np.arange(256, dtype=np.uint16)
    Image.fromarray(np.tile(levels * 257, (4, 1))).save(path)  # 0, 257, ..., 65535: mode I;16
    with Image.open(path) as im:
        assert im.mode == "I;16"
    return np.tile(levels.astype(np.uint8), (4, 1))


def test_a_16_bit_greyscale_png_is_scaled_to_8_bits(tmp_path):
    from analysis.common import open_image
    from pretrain import to_rgb
    from pretrain.data.fastaug import decode

    (tmp_path / "c").mkdir()
    want = _gradient16(tmp_path / "c" / "grad.png")
    rgb = np.asarray(ImageFolderDataset(tmp_path).load(0))
    assert rgb.shape == (4, 256, 3) and all(np.array_equal(rgb[..., c], want) for c in range(3))
    with Image.open(tmp_path / "c" / "grad.png") as im:
        assert np.array_equal(np.asarray(decode(im, 1)[0])[..., 1], want)
    assert np.array_equal(np.asarray(open_image(tmp_path / "c" / "grad.png"))[..., 2], want)
    assert np.array_equal(np.asarray(open_image(tmp_path / "c" / "grad.png", "L")), want)
    wide = Image.fromarray(np.tile(np.arange(256, dtype=np.int32) * 257, (2, 1)))  # mode I, 16-bit values
    assert np.array_equal(np.asarray(to_rgb(wide))[0, :, 0], np.arange(256))
    small = Image.fromarray(np.tile(np.arange(256, dtype=np.int32), (2, 1)))  # mode I holding 8-bit values
    assert np.array_equal(np.asarray(to_rgb(small))[0, :, 0], np.arange(256))


# --------------------------------------------------------------------------- 12: decompression bombs
def test_a_decompression_bomb_is_an_unreadable_image(tmp_path, monkeypatch, capsys):
    from analysis.common import open_image
    from pretrain.data.augment import MultiCropAugmentation
    from pretrain.data.fastaug import FastMultiCropDataset

    root = write_blobs(tmp_path / "data", n_per_class=8, size=16)
    Image.new("RGB", (64, 64), (200, 10, 10)).save(root / "class0" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 > 2 x 1000: PIL refuses it; 16 x 16 passes
    bomb = ImageFolderDataset(root).samples.index((root / "class0" / "bomb.png", 0))
    assert ImageFolderDataset(root, on_error="skip")[bomb] is None
    with pytest.raises(ImageReadError, match="bomb.png"):
        ImageFolderDataset(root)[bomb]
    with pytest.raises(ImageReadError, match="bomb.png"):
        open_image(root / "class0" / "bomb.png")
    fast = FastMultiCropDataset(str(root), MultiCropAugmentation(n_local=0, global_size=16), 2, 8, _masks())
    assert fast[bomb] is None and fast[0] is not None
    results = train(parse_config(TrainConfig, _argv(root, tmp_path / "run")))
    assert results["completed"] and results["skipped_images"] == 1


def _masks() -> dict:
    return {"pred_ratio": [0.0, 0.3], "pred_ratio_var": [0.0, 0.2], "pred_shape": "block"}


# ------------------------------------------------------------------------------- 2: a run with no step
def test_pretraining_on_unreadable_images_only_is_an_error_and_exports_nothing(tmp_path, capsys):
    data = tmp_path / "data" / "c"
    data.mkdir(parents=True)
    for i in range(8):
        (data / f"{i}.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "run"
    assert pretrain_main(_argv(data.parent, out)) == 2
    line = _last_error(capsys)
    assert "no optimisation step" in line and "8 images" in line
    assert not (out / "backbone.pth").exists() and not (out / "results.json").exists()


# -------------------------------------------------------------------------- 9: a classification root
def test_pretraining_refuses_a_classification_root_naming_the_folder_to_pass(tmp_path, capsys):
    root = tmp_path / "classification"
    for split in ("train", "val"):
        write_blobs(root / split, n_per_class=4, size=16)
    assert pretrain_main(_argv(root, tmp_path / "run")) == 2
    line = _last_error(capsys)
    assert "train/ and val/" in line and f"data_path={root / 'train'}" in line
    scenes = tmp_path / "scenes"
    write_blobs(scenes / "images", n_per_class=4, size=16)
    write_blobs(scenes / "masks", n_per_class=4, size=16)
    with pytest.raises(DatasetError, match=rf"masks/.*data_path={scenes / 'images'}"):
        train(parse_config(TrainConfig, _argv(scenes, tmp_path / "run2")))
    assert not (tmp_path / "run2" / "checkpoint.pth").exists()


# ---------------------------------------------------------------------- 3: the dataset under a resume
def _bmp_world(root: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(4):  # BMP: the file size depends on the image size only
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"c{c}" / f"{i}.bmp")
    return root


def _regenerate_keeping_times(root: Path, seed: int) -> None:
    times = {p: (p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in list_images(root)}
    sizes = {p: p.stat().st_size for p in times}
    _bmp_world(root, seed)
    for p, ns in times.items():
        os.utime(p, ns=ns)
        assert p.stat().st_size == sizes[p]


def test_a_resume_on_a_regenerated_dataset_is_refused(tmp_path, capsys):
    data, out = _bmp_world(tmp_path / "data", seed=0), tmp_path / "run"
    assert pretrain_main(_argv(data, out)) == 0
    assert "fingerprint" in json.loads((out / "run_identity.json").read_text())["dataset"]
    _bmp_world(data, seed=1)  # another world in place: same names and sizes, new times
    assert pretrain_main(_argv(data, out, "epochs=2")) == 2
    line = _last_error(capsys)
    assert "dataset" in line and "fingerprint" in line and "resume=false" in line
    _regenerate_keeping_times(data, seed=2)  # the hard case: names, sizes and times kept, pixels not
    assert pretrain_main(_argv(data, out, "epochs=2")) == 2
    assert "dataset" in _last_error(capsys)


def test_a_run_recorded_before_fingerprints_resumes_on_its_dataset(tmp_path):
    data, out = _bmp_world(tmp_path / "data", seed=0), tmp_path / "run"
    assert pretrain_main(_argv(data, out)) == 0
    identity = json.loads((out / "run_identity.json").read_text())
    (out / "run_identity.json").write_text(json.dumps({**identity, "dataset": f"{data} (8 images)"}))
    assert pretrain_main(_argv(data, out, "epochs=2")) == 0
    assert json.loads((out / "run_identity.json").read_text())["dataset"] == identity["dataset"]


def test_the_fingerprint_sees_paths_sizes_times_and_the_sampled_contents(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    files = []
    for i in range(20):
        files.append(root / f"{i:02d}.raw")
        files[-1].write_bytes(bytes([i]) * 100)
    base = dataset_fingerprint(files, root)
    assert dataset_fingerprint(list(reversed(files)), root) == base and len(base) == 16

    def rewrite(path: Path, byte: int, keep_time: bool) -> str:
        ns = (path.stat().st_atime_ns, path.stat().st_mtime_ns)
        path.write_bytes(bytes([byte]) * 100)
        if keep_time:
            os.utime(path, ns=ns)
        return dataset_fingerprint(files, root)

    assert rewrite(files[0], 99, keep_time=True) != base  # file 0 is sampled: its bytes are hashed
    rewrite(files[0], 0, keep_time=True)
    assert dataset_fingerprint(files, root) == base
    assert rewrite(files[1], 99, keep_time=True) == base  # not sampled, size and time kept: not seen
    assert rewrite(files[1], 98, keep_time=False) != base  # rewritten: its modification time moved
    assert dataset_fingerprint(files[1:], root) != dataset_fingerprint(files, root)


# ------------------------------------------------------------------------------------------ 18: SIGTERM
def test_sigterm_exits_143_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    data, out = write_blobs(tmp_path / "data", n_per_class=8, size=16), tmp_path / "run"
    step = TrainingRun.train_step

    def terminated_at_step_1(self, model, batch, it):
        if it == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # the run's handler asks for a stop after this step
        return step(self, model, batch, it)

    monkeypatch.setattr(TrainingRun, "train_step", terminated_at_step_1)
    assert pretrain_main(_argv(data, out, "epochs=2")) == 143
    printed = capsys.readouterr()
    assert "stopped by SIGTERM at epoch 0 step 2; resume with the same command" in printed.err
    assert "done" not in printed.out
    results = json.loads((out / "results.json").read_text())
    assert results["completed"] is False and results["stopped"] == "SIGTERM"
    assert safe_load(out / "checkpoint.pth")["step"] == 2
    monkeypatch.setattr(TrainingRun, "train_step", step)
    assert pretrain_main(_argv(data, out, "epochs=2")) == 0
    assert json.loads((out / "results.json").read_text())["completed"] is True


# ------------------------------------------------------------------- 21: the pickle refusal, one line
class _Payload:
    def __reduce__(self):
        return (os.system, ("echo never",))


def test_a_raw_pickle_is_refused_with_no_warning_before_the_line(tmp_path, recwarn, capfd):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_Payload(), protocol=4))
    with pytest.raises(CheckpointError, match="refused to load"):
        safe_load(path)
    assert not [w for w in recwarn if "pickle" in str(w.message)]
    from pretrain.export import main as export_main

    assert export_main([f"pretrained={path}", f"output_dir={tmp_path / 'o'}"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pretrain.export: error:") and "refused to load" in err[0]
