"""Issue 32, part B (configs, exports, detection, segmentation, analysis, report): hostile probes that ended in
a traceback, an exit 0 with nothing done, or a resume on other data.

3 a resumed evaluation on regenerated data, 8/12 the detection and segmentation readers, 13 value ranges up
front, 14 a stray category_id, 15 an export to a full disk, 19 an export folder that cannot be written and
the suite's own Hugging Face folder as pretrained=, 20 backgrounds and report on a folder holding nothing.
"""

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from analysis import AttentionConfig, CorrespondenceConfig, PatternsConfig, PCAConfig
from analysis.robustness.config import CorruptionsConfig, NaturalAdvConfig, OcclusionConfig, PartwiseConfig
from detection import DetectionConfig
from finetune import FinetuneConfig
from plumbing import CheckpointError, ConfigError, DatasetError, ImageReadError, MissingExtraError, parse_config
from pretrain import ImageFolderDataset, TrainConfig, load_backbone, safe_load
from pretrain.export import main as export_main
from report import ReportConfig
from segmentation import SegConfig
from tests.helpers.eval_world import export_tiny, write_split_world

ROOT = Path(__file__).resolve().parents[1]


def _one_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error:"), err
    return err[0]


# ------------------------------------------------------------------------------ 13: values up front
def _ade_root(tmp_path: Path) -> str:
    for d in ("images/training", "annotations/training", "images/validation", "annotations/validation"):
        (tmp_path / "ade" / d).mkdir(parents=True, exist_ok=True)
    return str(tmp_path / "ade")


BAD_VALUES = [
    (TrainConfig, "patch_size=0", "patch_size must be >= 1"),
    (TrainConfig, "local_crops_number=-1", "local_crops_number must be >= 0"),
    (TrainConfig, "pred_ratio=[0.0,1.5]", "pred_ratio must each be in [0, 1]"),
    (TrainConfig, "pred_ratio=[0.0,0.9]", "pred_ratio +- pred_ratio_var must stay within [0, 1]"),
    (TrainConfig, "lr=nan", "lr must be a finite number"),
    (TrainConfig, "arch=vit_huge", "arch='vit_huge' is unknown; valid: vit_tiny, vit_small"),
    (TrainConfig, "momentum_teacher=1.5", "momentum_teacher must be in [0, 1]"),
    (TrainConfig, "teacher_temp=0", "teacher_temp must be > 0"),
    (TrainConfig, "global_crops_scale=[0.9,0.3]", "global_crops_scale must be"),
    (FinetuneConfig, "betas=[0.9]", "betas must be two numbers"),
    (FinetuneConfig, "lr=nan", "lr must be a finite number > 0"),
    (FinetuneConfig, "smoothing=1.5", "smoothing must be in [0, 1)"),
    (FinetuneConfig, "eps=inf", "eps must be a finite number"),
    (DetectionConfig, "lr=nan", "lr must be a finite number > 0"),
    (DetectionConfig, "model.fpn_channels=0", "fpn_channels must be >= 1"),
    (DetectionConfig, "crop_range=[600,384]", "crop_range must be"),
    (SegConfig, "poly_power=nan", "poly_power must be a finite number"),
    (SegConfig, "betas=[0.9,1.5]", "betas must each be in [0, 1)"),
    (AttentionConfig, "image_size=0", "image_size must be >= 1"),
    (AttentionConfig, "threshold=nan", "threshold"),
    (PCAConfig, "fg_threshold=2", "fg_threshold must be in [0, 1]"),
    (CorrespondenceConfig, "crop_scale_min=0", "crop_scale_min must be in (0, 1]"),
    (PatternsConfig, "dark_value=300", "dark_value must be in [0, 255]"),
    (OcclusionConfig, "attention_head=-2", "attention_head must be >= -1"),
    (CorruptionsConfig, "severities=[6]", "severities must each be in [1, 5]"),
    (NaturalAdvConfig, "bin_size=0", "bin_size must be >= 1"),
    (PartwiseConfig, "momentum=1.0", "momentum must be in [0, 1)"),
    (ReportConfig, "max_figures_per_folder=-1", "max_figures_per_folder must be >= 0"),
]


@pytest.mark.parametrize("schema, arg, says", BAD_VALUES, ids=[f"{s.__name__}-{a}" for s, a, _ in BAD_VALUES])
def test_every_command_checks_its_numbers_up_front(schema, arg, says, tmp_path):
    extra = {SegConfig: [f"data_path={_ade_root(tmp_path)}"], ReportConfig: [f"run_dir={tmp_path}"],
             CorruptionsConfig: [f"imagenet_c={tmp_path}"]}.get(schema, [])  # fmt: skip
    cfg = parse_config(schema, [*extra, arg])
    with pytest.raises(ConfigError, match=re.escape(says)):
        cfg.check()


def test_the_train_config_knows_the_registrys_architectures():
    from pretrain.config import ARCHS
    from pretrain.models.backbones import ARCHS as REGISTRY

    assert sorted(ARCHS) == sorted(REGISTRY)


def test_an_unknown_arch_stops_pretraining_before_torch_is_imported(tmp_path):
    code = (
        "import sys\nfrom pretrain.__main__ import main\n"
        f"rc = main(['arch=vit_huge', 'data_path={tmp_path}', 'output_dir={tmp_path / 'out'}'])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert done.stderr.strip() == (
        "pretrain: error: arch='vit_huge' is unknown; valid: vit_tiny, vit_small, vit_base, vit_large, "
        "swin_tiny, swin_small, swin_base"
    )
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------ 14: a stray category_id
def _coco(tmp_path: Path, category_id: int) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32), (90, 20, 20)).save(images / "a.png")
    ann = {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": category_id, "bbox": [2, 2, 10, 10], "area": 100,
                            "iscrowd": 0, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}],
           "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]}  # fmt: skip
    (tmp_path / "instances.json").write_text(json.dumps(ann))
    return images, tmp_path / "instances.json"


def test_an_annotation_of_an_unknown_category_is_one_line_naming_it(tmp_path):
    from detection.data import CocoInstances

    with pytest.raises(DatasetError, match=r"1 annotation\(s\) name a category_id .* annotation 7 of image 1: "):
        CocoInstances(*_coco(tmp_path, category_id=9))


def test_the_detection_reader_refuses_a_bomb_and_scales_16_bits(tmp_path, monkeypatch):
    from detection.data import CocoInstances

    images, ann = _coco(tmp_path, category_id=2)
    ds = CocoInstances(images, ann)
    Image.fromarray(np.tile(np.arange(32, dtype=np.uint16) * 2000, (32, 1))).save(images / "a.png")  # I;16
    assert torch.equal(ds.load_image(1)[0, 0], torch.from_numpy(np.rint(np.arange(32) * 2000 * 255 / 65535)).byte())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match="a.png"):
        ds.load_image(1)


def test_the_segmentation_reader_refuses_a_bomb_and_scales_16_bits(tmp_path, monkeypatch):
    from segmentation.data import read_image

    Image.fromarray(np.tile(np.arange(256, dtype=np.uint16) * 257, (2, 1))).save(tmp_path / "g.png")
    assert torch.equal(read_image(tmp_path / "g.png")[1, 0], torch.arange(256, dtype=torch.float32))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match="g.png"):
        read_image(tmp_path / "g.png")


# ------------------------------------------------------------------ 15, 19: exports that cannot be written
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("tiny") / "tiny.pth")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (no file can be created there)")
def test_an_export_folder_that_cannot_be_written_names_the_final_file(tiny, capsys):
    assert export_main([f"pretrained={tiny}", "output_dir=/proc/x"]) == 2
    line = _one_line(capsys, "pretrain.export")
    assert "/proc/x/backbone.pth" in line and ".tmp" not in line
    assert export_main([f"pretrained={tiny}", "output_dir=/proc", "name=x.pth"]) == 2
    line = _one_line(capsys, "pretrain.export")
    assert "cannot write /proc/x.pth" in line and ".tmp" not in line


def test_an_export_to_a_full_disk_is_one_line_and_exit_1(tiny, tmp_path, monkeypatch, capsys):
    real = os.fdopen

    class Full:  # a file whose disk fills after 1000 bytes
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(os, "fdopen", lambda *a, **k: Full(real(*a, **k)))
    for fmt in ("suite", "safetensors"):
        out = tmp_path / fmt
        assert export_main([f"pretrained={tiny}", f"output_dir={out}", f"format={fmt}"]) == 1
        line = _one_line(capsys, "pretrain.export")
        assert line.startswith(f"pretrain.export: error: disk full writing {out / 'backbone.'}") and "MiB free" in line
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_the_suites_hugging_face_folder_loads_back_exactly(tiny, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "hf"
    assert export_main([f"pretrained={tiny}", f"output_dir={folder}", "format=hf"]) == 0
    original, _ = load_backbone(tiny)
    again, info = load_backbone(folder)
    mine = {k: v for k, v in original.state_dict().items() if k != "masked_embed"}
    assert info["format"] == "ibot-suite-hf" and again.state_dict().keys() == mine.keys()
    assert all(torch.equal(again.state_dict()[k], v) for k, v in mine.items())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again.forward_features(x), original.forward_features(x))
    assert export_main([f"pretrained={folder}", f"output_dir={tmp_path / 'back'}"]) == 0  # and on to a file
    from eval_knn import KNNConfig
    from evalkit import check_common

    check_common(KNNConfig(pretrained=str(folder), output_dir=str(tmp_path / "knn")), require_pretrained=True)
    capsys.readouterr()
    with pytest.raises(CheckpointError, match="Hugging Face model folder"):
        safe_load(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["ibot_suite"]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="this suite did not export .*ViTModel.from_pretrained"):
        load_backbone(tmp_path / "foreign")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # the optional package missing
    with pytest.raises(MissingExtraError, match="safetensors"):
        load_backbone(folder)


# ------------------------------------------------------------------------- 20: folders holding nothing
def test_report_on_an_empty_folder_or_one_that_is_no_run_is_one_line(tmp_path, capsys):
    from report.__main__ import main as report_main

    (tmp_path / "empty").mkdir()
    assert report_main([f"run_dir={tmp_path / 'empty'}"]) == 2
    assert "holds no run" in _one_line(capsys, "report")
    other = tmp_path / "holiday"
    other.mkdir()
    Image.new("RGB", (8, 8)).save(other / "beach.png")
    (other / "notes.txt").write_text("not a run")
    assert report_main([f"run_dir={other}"]) == 2
    assert "holds no run" in _one_line(capsys, "report")
    assert not (other / "report").exists()


def test_backgrounds_on_an_empty_folder_is_a_dataset_error(tmp_path):
    from analysis.robustness.backgrounds_work import find_variants

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no variant folders"):
        find_variants(tmp_path / "empty", [])
    (tmp_path / "empty" / "fg_mask").mkdir()  # masks alone are no variant
    with pytest.raises(DatasetError, match="holds no variant folders"):
        find_variants(tmp_path / "empty", [])


# --------------------------------------------------------------- 3: evaluations on regenerated data
def test_the_evaluations_dataset_description_holds_the_fingerprint(tmp_path):
    from evalkit import describe_datasets

    data = write_split_world(tmp_path / "data", n_train=2, n_val=1)
    train = ImageFolderDataset(data / "train")
    before = describe_datasets(train=train)
    assert before.startswith(f"train: {data / 'train'} (6 images, 3 classes, fingerprint ")
    path = train.samples[0][0]
    ns = (path.stat().st_atime_ns, path.stat().st_mtime_ns)
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)
    os.utime(path, ns=ns)
    assert describe_datasets(train=ImageFolderDataset(data / "train")) != before


def test_a_finetuning_resume_on_regenerated_data_is_refused(tiny, tmp_path, capsys):
    from finetune.__main__ import main as finetune_main

    data, out = write_split_world(tmp_path / "data", n_train=4, n_val=2), tmp_path / "ft"
    argv = [f"pretrained={tiny}", f"data_path={data}", f"output_dir={out}", "image_size=32", "epochs=1",
            "warmup_epochs=0", "batch_size_per_gpu=6", "num_workers=0", "max_steps_per_epoch=1", "progress=false",
            "resume=true", "mixup=0", "cutmix=0"]  # fmt: skip
    assert finetune_main(argv) == 0
    write_split_world(data, n_train=4, n_val=2, seed=5)  # another world in the same folder
    capsys.readouterr()
    assert finetune_main([*argv, "epochs=2"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("finetune: error:") and "dataset" in line and "fingerprint" in line
