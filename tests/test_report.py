"""The report on hand-made result folders: tables beside the paper, 'not run', authors' logs, the HTML."""

import base64
import json
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from report import build, identify
from report.__main__ import main
from report.authors import read_log
from report.records import arch_label, model_label
from report.registry import BY_NAME, SPLITS, get_path, take_metrics

ROOT = Path(__file__).resolve().parents[1]
VITS = {"arch": "vit_small", "patch_size": 16, "depth": 12, "embed_dim": 384}


def _write(folder: Path, results: dict, config: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    if config is not None:
        (folder / "config.yaml").write_text(config)
    return folder


def _png(path: Path, colour: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4), colour).save(path)
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A demo-like run folder: k-NN and linear probe of `trained` (ViT-S/16), attention figures, an unknown
    results.json, an authors' linear-probe log, and a generated world whose PNGs are data, not figures."""
    root = tmp_path / "run"
    knn = {"knn": {"k=10": {"top1": 69.0, "top5": 88.0}, "k=20": {"top1": 70.5, "top5": 90.0}}, "backbone": VITS}
    _write(root / "frozen" / "trained" / "knn", knn, "pretrained: out/backbone.pth\nks: [10, 20]\ntemperature: 0.07\n"
           "search: auto\n")  # fmt: skip
    linear = {"best": {"top1": 72.0, "top5": 91.0, "lr": 0.1}, "heads": [], "backbone": VITS}
    _write(root / "frozen" / "trained" / "linear", linear, "recipes: [cls]\nlrs: [0.1]\nwds: [0.0]\n")
    attn = {"jaccard_best_head": 0.31, "jaccard_mean_over_heads": 0.22, "kept_patch_fraction_per_head": [0.1]}
    att = _write(root / "analysis" / "trained" / "attention", attn, "threshold: 0.6\nmasks: null\n")
    _png(att / "attn_grid.png", "red")
    _png(att / "per_image" / "img_cat.png", "green")
    _write(root / "bench", {"gain": 29.75, "label": "x", "nested": {"a": 1}})
    log = root / "authors" / "ibot_vits16" / "linear" / "log.txt"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps({"train_lr": 0.01, "train_loss": 3 - e, "epoch": e, "test_acc1": a}) + "\n"
                           for e, a in enumerate([60.0, 76.5, 76.1])))  # fmt: skip
    (root / "world").mkdir()
    (root / "world" / "world.json").write_text("{}")
    _png(root / "world" / "classification" / "train" / "a" / "00001.png", "blue")
    return root


class StrictHTML(HTMLParser):
    """Balanced tags (void elements excepted) and every <img> source."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
        else:
            self.stack.pop()


def _row(markdown: str, start: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(start))


def test_cells_beside_the_paper_and_not_run(run_dir):
    ft = {"best_top1": 40.5, "backbone": VITS}  # a run inside a model's folder: a row only where it has numbers
    _write(run_dir / "finetune" / "trained" / "one_epoch", ft, "start_from: backbone\nmixup: 0.8\n")
    paths = build(run_dir)
    md = Path(paths["markdown"]).read_text()
    row = _row(md, "| trained (ViT-S/16) | 70.50")  # Table 1: k-NN, linear, throughput (not measured here)
    assert row == "| trained (ViT-S/16) | 70.50 (paper 75.2) | 72.00 (paper 77.9) | n/a |"
    side = _row(md, "| fine-tuning top-1 % |")  # side by side: trained, then the fine-tuning run inside its folder
    assert side.startswith("| fine-tuning top-1 % | not run (paper 82.3) |") and "| 40.50 (paper 82.3) |" in side
    coco = "Table 6 (COCO detection/instance segmentation and ADE20K segmentation): not run in this folder"
    assert _row(md, coco)  # one line, no grid of 'not run'
    assert "| paper: iBOT ViT-B/16, 1600 ep (effective, 400 actual) | 77.1 | 79.5 | 312.0 |" in md
    tables = md.split("## The paper's tables")[1].split("## Evaluations found")[0]
    nested = [line for line in tables.splitlines() if line.startswith("| trained/one_epoch")]
    assert nested and all("| 40.50" in line for line in nested)  # only in the tables where it has a number
    assert _row(tables, "| trained/one_epoch (ViT-S/16) | 40.50 (paper 82.3) |")  # Table 2
    assert paths["markdown"].parent == run_dir / "report"
    assert paths["evaluations"] == 5  # 4 + the one-epoch fine-tuning


def test_html_parses_and_embeds_every_figure(run_dir):
    paths = build(run_dir, run_dir / "out")
    page = StrictHTML()
    page.feed(Path(paths["html"]).read_text())
    page.close()
    assert page.errors == [] and page.stack == []
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in page.images}
    att = run_dir / "analysis" / "trained" / "attention"
    figures = [att / "attn_grid.png", att / "per_image" / "img_cat.png"]
    curves = sorted((run_dir / "out" / "curves").glob("*.png"))
    assert len(curves) == 1  # the authors' per-epoch test_acc1
    assert all(p.read_bytes() in embedded for p in figures + curves)
    assert len(page.images) == len(figures) + len(curves) == paths["figures"]  # world images are data, skipped
    assert "<details><summary>frozen/trained/knn (eval_knn)</summary>" in Path(paths["html"]).read_text()
    assert build(run_dir)["figures"] == paths["figures"]  # the earlier report in run_dir/out is not read as results


def test_authors_log_beside_the_suite(run_dir):
    ft = run_dir / "authors" / "ibot_vits16" / "cls" / "log.txt"
    ft.parent.mkdir(parents=True)
    ft.write_text("\n".join(json.dumps({"train_lr": 1e-3, "train_loss_scale": 1.0, "test_acc1": a, "epoch": e,
                                        "n_parameters": 22_050_664}) for e, a in enumerate([80.1, 82.0])))  # fmt: skip
    knn = run_dir / "authors" / "ibot_vitb16" / "knn" / "log.txt"
    knn.parent.mkdir(parents=True)
    knn.write_text("Features are ready!\n10-NN classifier result: Top1: 76.0, Top5: 90.0\n"
                   "20-NN classifier result: Top1: 76.9, Top5: 91.0\n")  # fmt: skip
    det = run_dir / "authors" / "vit_small_det" / "20220101.log.json"
    det.parent.mkdir(parents=True)
    det.write_text('{"env_info": "x"}\n{"mode": "train", "epoch": 1, "loss": 2.0}\n'
                   '{"mode": "val", "epoch": 12, "bbox_mAP": 0.481, "segm_mAP": 0.419}\n')  # fmt: skip
    md = Path(build(run_dir)["markdown"]).read_text()
    assert "| authors: ibot_vits16 (ViT-S/16) | not run (paper 75.2) | 76.50 (paper 77.9) | n/a |" in md
    assert "| authors: ibot_vits16 (ViT-S/16) | 82.00 (paper 82.3) |" in md  # Table 2, fine-tuning
    assert "| authors: ibot_vitb16 (ViT-B/16) | 76.90 (paper 77.1) |" in md
    assert "| 48.10 (paper 49.4) | 41.90 (paper 42.6) |" in _row(md, "| authors: vit_small (ViT-S/16) | 48.10")
    assert "| authors/ibot_vits16/linear | eval_linear | authors: ibot_vits16 | ViT-S/16 | authors' log.txt |" in md


def test_other_results_and_configs_listed(run_dir):
    md = Path(build(run_dir)["markdown"]).read_text()
    assert "| bench | gain=29.75 |" in md
    assert "**frozen/trained/linear (eval_linear)**" in md and "recipes: [cls]" in md


def test_pretraining_curves_drawn(tmp_path):
    results = {"epoch": 3, "step": 0, "completed": True, "skipped_images": 0, "minutes": 7.0, "last": {"loss": 4.2},
               "backbone": "x.pth"}  # fmt: skip
    config = "arch: vit_small\npatch_size: 16\ndepth: 4\nteacher_temp: 0.07\nglobal_crops_scale: [0.25, 1.0]\n"
    pre = _write(tmp_path / "pretrain", results, config)
    (pre / "log.jsonl").write_text("".join(json.dumps({"step": s, "epoch": 0, "loss": 5 - s / 10}) + "\n"
                                           for s in range(5)))  # fmt: skip
    (pre / "knn.jsonl").write_text('{"epoch": 1, "knn_top1": 20.0}\n{"epoch": 2, "knn_top1": 30.5}\n')
    live = tmp_path / "live"  # still training: config.yaml and log.jsonl, no results.json yet
    live.mkdir()
    (live / "config.yaml").write_text(config)
    rows = [json.dumps({"step": s, "epoch": s // 2, "loss": 6 - s}) + "\n" for s in range(5)]
    (live / "log.jsonl").write_text("".join(rows))
    paths = build(tmp_path)
    md = Path(paths["markdown"]).read_text()
    assert "| pretrain | ViT-S/16 (depth 4) | results.json | 3 | 7 | 4.2 | 30.5 |" in md
    assert "| live | ViT-S/16 (depth 4) | log.jsonl (running: no results.json yet) | 2 | - | 2 | - |" in md
    assert len(list((tmp_path / "report" / "curves").glob("*.png"))) == 2
    assert "No evaluation results of a backbone were found" in md


@pytest.mark.parametrize(
    ("config", "results", "folder", "name"),
    [
        ({"ks": [20], "temperature": 0.07, "search": "auto"}, {}, "x", "eval_knn"),
        (None, {"nmi": 0.5, "ari": 0.3, "hungarian_acc": 0.4}, "x", "eval_knn.unsup"),
        ({"lambdas": [1], "max_iter": 9, "tol": 1}, {}, "x", "eval_linear.logreg"),
        (None, {"best_top1": 80.0}, "x", "finetune"),
        ({"head": "linear", "out_indices": [1], "test_stride": 1}, {"mIoU": 1}, "x", "segmentation.linear"),
        (None, {"head": "upernet", "mIoU": 40.0, "mAcc": 50.0}, "x", "segmentation"),
        ({"multiscale": True, "crop_queries": False, "dataset": "rparis6k"}, {}, "x", "retrieval.rparis6k"),
        (None, {"dataset": "roxford5k", "mAP": {"medium": 30.0, "hard": 10.0}}, "x", "retrieval"),
        (None, {"mAP_strong": 70.0}, "x", "retrieval.copydays"),
        (None, {"J&F-Mean": 60.0}, "x", "video_seg"),
        ({"random_drop": True, "salient": True, "lambdas": [0.5]}, {}, "x", "analysis.robustness.occlusion"),
        (None, {"something": 1}, "runs/eval_knn.unsup", "eval_knn.unsup"),
        (None, {"something": 1}, "trained/davis", "video_seg"),
    ],
)
def test_identification(config, results, folder, name):
    assert identify(config, results, folder).name == name


def test_unknown_is_none_and_metrics_by_path():
    assert identify(None, {"gain": 1.0}, "bench/learning") is None
    rows = {"shuffle": [{"grid": "2x2", "top1": 50.0}, {"grid": "4x4", "top1": 40.0}],
            "random_drop": [{"k": k, "top1": 90.0 - k} for k in range(10)], "clean_top1": 90.0}  # fmt: skip
    assert get_path(rows, "shuffle.grid=4x4.top1") == 40.0 and get_path(rows, "random_drop.5.top1") == 85.0
    assert take_metrics(BY_NAME["analysis.robustness.occlusion"], rows) == {"occ_clean": 90.0, "occ_random50": 85.0}
    assert take_metrics(BY_NAME["eval_knn.unsup"], {"nmi": 0.5, "ari": 0.25}) == {"unsup_ari": 25.0, "unsup_nmi": 50.0}


def test_semi_supervised_split_and_labels(tmp_path):
    assert SPLITS.split_of({"train_list": "/data/imagenet/10percent.txt"}, "x") == "10%"
    assert SPLITS.split_of(None, "trained/knn_1pct") == "1%" and SPLITS.split_of(None, "trained/k10") is None
    assert model_label("frozen/random_init/eval_knn.unsup") == "random_init"
    assert model_label("runs/eval_knn", "vits.pth") == "vits.pth" and model_label("knn") == "run"
    assert arch_label(VITS) == "ViT-S/16" and arch_label({"arch": "vit_base", "patch_size": 8}) == "ViT-B/8"
    _write(tmp_path / "live" / "knn_10pct", {"knn": {"k=20": {"top1": 41.0}}, "backbone": VITS})
    md = Path(build(tmp_path)["markdown"]).read_text()
    assert "| live (ViT-S/16) | not run (paper 62.3) | 41.00 (paper 70.1) |" in md  # Table 12: k-NN at 1%, 10%
    assert "| k-NN top-1 (k=20) %, 10% labels | 41.00 (paper 70.1) |" in md
    assert "| k-NN top-1 (k=20) % |" not in md  # the 10% run is not the full-label k-NN


def test_authors_log_without_numbers_is_skipped(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("starting\n{not json}\n")
    assert read_log(log) is None


def test_help_is_instant_and_imports_no_torch():
    code = "import sys\nfrom report.__main__ import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n" \
           "print('TORCH', 'torch' in sys.modules)"  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - t0 < 10 and out.returncode == 0, out.stderr
    assert "TORCH False" in out.stdout
    for key in ("run_dir", "output_dir", "arch", "title", "max_figures_per_folder", "curves"):
        assert f"  {key} = " in out.stdout and "#" in next(ln for ln in out.stdout.splitlines() if f" {key} = " in ln)


def test_bad_run_dir_is_one_line_exit_2(tmp_path, capsys):
    assert main([f"run_dir={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("report: error: run_dir=") and "is not a folder" in err and err.count("\n") == 1
    assert main([]) == 2 and "run_dir=FOLDER is required" in capsys.readouterr().err
    assert main([f"run_dir={tmp_path}", "colour=red"]) == 2 and "unknown key" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_cli_prints_the_report_path(run_dir, capsys):
    assert main([f"run_dir={run_dir}", "max_figures_per_folder=1", "curves=false"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"report: report written to {run_dir / 'report' / 'report.html'}"
    md = (run_dir / "report" / "report.md").read_text()
    assert "1 more figures not embedded (max_figures_per_folder=1): per_image/img_cat.png" in md
    assert not (run_dir / "report" / "curves").exists()
