"""The report reads right: what the cells are, one line per paper table with no result, the architecture as
recorded, a demo's verdict and learning curve first, every paper table, several checkpoints side by side."""

import json
from pathlib import Path

import pytest

from report import build, load_paper
from report.paper import suite_metric

VITT8 = {
    "arch": "vit_tiny",
    "patch_size": 8,
    "embed_dim": 192,
    "depth": 4,
    "num_heads": 3,
    "format": "ibot-suite-backbone",
}
VITS = {
    "arch": "vit_small",
    "patch_size": 16,
    "embed_dim": 384,
    "depth": 12,
    "num_heads": 6,
    "format": "ibot-official-full",
}


def provenance(precision: str = "fp32", device: str = "cpu") -> dict:
    """What plumbing.write_results records beside every evaluation's numbers."""
    return {"command": "python -m eval_knn pretrained=x.pth", "finished": "2026-01-01T00:00:00+0000",
            "versions": {"python": "3.12.0", "torch": "2.5.0"}, "host": "h",
            "precision": {"requested": precision, "ran": precision}, "device": device}  # fmt: skip


def write(folder: Path, results: dict, config: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    if config:
        (folder / "config.yaml").write_text(config)
    return folder


def _backbone(info: dict, name: str) -> dict:
    return {**info, "path": f"/ckpt/{name}.pth", "fingerprint": f"{name}0123456789abcdef", "epoch": None}


KNN_CFG = "ks: [10, 20]\ntemperature: 0.07\nsearch: auto\n"
LINEAR_CFG = "recipes: [cls]\nlrs: [0.1]\nwds: [0.0]\n"
LOGREG_CFG = "lambdas: [1.0]\nmax_iter: 100\ntol: 0.001\n"


def make_demo(root: Path) -> Path:
    """A folder as `python -m demo` leaves it: summary.json, a pre-training run with its logs, three models'
    frozen evaluations (as recorded by the shell: backbone + provenance) and an attention figure."""
    numbers = {"live": (45.0, 50.5, 0.21), "reference": (62.8, 66.0, 0.23), "random_init": (21.8, 30.0, 0.08)}
    for model, (knn, linear, jac) in numbers.items():
        bb = _backbone(VITT8, model)
        write(root / "frozen" / model / "knn", {"knn": {"k=20": {"top1": knn}}, "backbone": bb,
              "provenance": provenance()}, KNN_CFG)  # fmt: skip
        write(root / "frozen" / model / "linear", {"best": {"top1": linear}, "heads": [], "backbone": bb,
              "provenance": provenance("bf16")}, LINEAR_CFG)  # fmt: skip
        write(root / "analysis" / model / "attention", {"jaccard_best_head": jac + 0.1, "jaccard_mean_over_heads": jac,
              "kept_patch_fraction_per_head": [0.1], "backbone": bb, "provenance": provenance()},
              "threshold: 0.6\nmasks: null\n")  # fmt: skip
    pre = write(root / "pretrain", {"epoch": 12, "completed": False, "skipped_images": 0, "minutes": 7.0,
                "last": {"loss": 4.1}}, "arch: vit_tiny\npatch_size: 8\ndepth: 4\nteacher_temp: 0.04\n"
                "global_crops_scale: [0.25, 1.0]\n")  # fmt: skip
    (pre / "log.jsonl").write_text("".join(json.dumps({"step": s, "epoch": s // 10, "loss": 6 - s / 40}) + "\n"
                                           for s in range(120)))  # fmt: skip
    (pre / "knn.jsonl").write_text("".join(json.dumps({"epoch": e, "knn_top1": 20 + 2.1 * e}) + "\n"
                                           for e in range(0, 13, 3)))  # fmt: skip
    rows = []
    for label, idx, margin in (("k-NN top-1 (k=20, %)", 0, 2.0), ("linear probe top-1 (%)", 1, 2.0),
                               ("attention Jaccard, mean over heads", 2, 0.01)):  # fmt: skip
        values = {m: v[idx] for m, v in numbers.items()}
        gains = {m: values[m] - values["random_init"] for m in ("live", "reference")}
        rows.append({"metric": label, "higher_is_better": True, "margin": margin, "values": values, "gains": gains,
                     "verdicts": {m: "learned" for m in gains}, "line": label})  # fmt: skip
    summary = {"rows": rows, "lines": ["live pre-training: 12 epochs (stopped by the time limit) in 7.0 min"]
               + [r["line"] for r in rows], "stage_seconds": {}, "not_run": ["dense: skipped (budget)"],
               "errors": [], "config": {}}  # fmt: skip
    (root / "summary.json").write_text(json.dumps(summary))
    return root


def make_benchmark(root: Path) -> Path:
    """A folder as `python -m benchmark pretrained=[ibot_vits16.pth,dino_vits16.pth]` leaves it (two models)."""
    models = {"ibot_vits16": (75.0, 77.5, 35.0, 61.0), "dino_vits16": (74.0, 76.9, 33.5, 60.2)}
    tasks = [{"model": m, "task": t, "folder": f"{m}/{t}", "status": "planned", "reason": ""} for m in models
             for t in ("knn", "linear", "semi_logreg_1pct", "roxford5k", "davis")]  # fmt: skip
    tasks.append({"model": "ibot_vits16", "task": "detection", "folder": "ibot_vits16/detection", "status": "skipped",
                  "reason": "no data at /data/coco"})  # fmt: skip
    plan = {"models": {m: {"pretrained": f"/ckpt/{m}.pth", "arch": "vit_small", "patch_size": 16, "folder": m}
                       for m in models}, "settings": "paper", "precision": "fp32", "launcher": "local"}  # fmt: skip
    plan["tasks"] = tasks
    failed = {"status": "failed", "reason": "video_seg: error: no JPEGImages", "log": "ibot_vits16/davis/log.txt"}
    (root / "ibot_vits16" / "davis").mkdir(parents=True)
    (root / "ibot_vits16" / "davis" / "benchmark_state.json").write_text(json.dumps(failed))
    (root / "benchmark.json").write_text(json.dumps(plan))
    for m, (knn, linear, rox, semi) in models.items():
        bb, prov = _backbone(VITS, m), provenance()
        write(root / m / "knn", {"knn": {"k=20": {"top1": knn}}, "backbone": bb, "provenance": prov}, KNN_CFG)
        write(root / m / "linear", {"best": {"top1": linear}, "heads": [], "backbone": bb, "provenance": prov},
              LINEAR_CFG)  # fmt: skip
        write(root / m / "semi_logreg_1pct", {"best": {"top1": semi, "lambda": 1.0}, "sweep": [], "backbone": bb,
              "provenance": prov}, LOGREG_CFG + "train_list: /data/semi_supervised/1percent.txt\n")  # fmt: skip
        retrieval = {
            "dataset": "roxford5k",
            "mAP": {"medium": rox, "hard": rox / 3},
            "backbone": bb,
            "provenance": prov,
        }
        write(root / m / "roxford5k", retrieval, "multiscale: false\ncrop_queries: false\ndataset: roxford5k\n")
    return root


def _md(root: Path) -> str:
    return Path(build(root)["markdown"]).read_text()


def test_header_says_what_the_cells_are_and_empty_tables_are_one_line(tmp_path):
    md = _md(make_benchmark(tmp_path / "b"))
    assert "in brackets, where the paper has one, the paper's iBOT number for the same architecture" in md
    assert "then the paper's own rows, marked 'paper:'" in md
    one_liners = [ln for ln in md.splitlines() if ln.endswith("paper numbers, listed at the end).")]
    table4 = "Table 4 (semi-supervised learning on ImageNet-1K): not run in this folder (4 paper numbers"
    assert any(ln.startswith(table4) for ln in one_liners)
    assert any(ln.startswith("Table 19 (time and memory requirements): not measured by any") for ln in one_liners)
    tables = md.split("## The paper's tables")[1].split("## Evaluations found")[0]
    rows = [ln.split(" | ")[1:] for ln in tables.splitlines() if ln.startswith("| ") and "(ViT-S/16) |" in ln]
    assert rows and all(any(c[0].isdigit() for c in cells) for cells in rows)  # no row of a checkpoint without numbers
    for table in load_paper().tables():  # every table of the paper: a section with its grid, or one line
        assert f"### {table}" in md or any(ln.startswith(f"{table}: ") for ln in one_liners), table


def test_several_checkpoints_side_by_side_with_differences(tmp_path):
    md = _md(make_benchmark(tmp_path / "b"))
    side = md.split("## The checkpoints side by side (differences to ibot_vits16)")[1].split("\n## ")[0]
    assert "| measure | ibot_vits16 (ViT-S/16) | dino_vits16 (ViT-S/16) | dino_vits16 - ibot_vits16 |" in side
    assert "| k-NN top-1 (k=20) % | 75.00 (paper 75.2) | 74.00 (paper 75.2) | -1.00 |" in side
    assert "| logistic regression top-1 %, 1% labels | 61.00 (paper 65.9) | 60.20 (paper 65.9) | -0.80 |" in side
    table12 = md.split("### Table 12 (evaluation protocols for semi-supervised learning)")[1].split("\n#")[0]
    ibot = next(ln for ln in table12.splitlines() if ln.startswith("| ibot_vits16 (ViT-S/16) | not run (paper 62.3) |"))
    assert "| 61.00 (paper 65.9) | not run (paper 73.4) |" in ibot  # 1% labels: logistic regression only
    table16 = md.split("### Table 16 (nearest-neighbour")[1].split("\n#")[0]
    assert table16.count("| dino_vits16 (ViT-S/16) | 33.50 (paper ") == 1 and "paper: DINO ViT-S/16" in table16
    assert "| ibot_vits16 | ViT-S/16 (4 of 4 results record it) | ibot_vits16.pth | ibot-official-full |" in md
    plan = md.split("## Benchmark plan (benchmark.json)")[1].split("\n## ")[0]
    assert "ran at the paper's settings, precision=fp32, launcher=local: 8 of 11 tasks done." in plan
    assert "| dino_vits16 | davis | planned | - | - |" in plan and "| knn |" not in plan
    assert "| ibot_vits16 | detection | skipped | no data at /data/coco | - |" in plan
    assert "| ibot_vits16 | davis | failed | video_seg: error: no JPEGImages | ibot_vits16/davis/log.txt |" in plan


def test_architecture_comes_from_the_recorded_results(tmp_path):
    """A folder named like another architecture does not change what results.json records."""
    write(tmp_path / "vit_base_16_mine" / "knn", {"knn": {"k=20": {"top1": 50.0}}, "backbone": _backbone(VITS, "a"),
          "provenance": provenance()}, KNN_CFG)  # fmt: skip
    write(tmp_path / "vit_large_16_other" / "knn", {"knn": {"k=20": {"top1": 40.0}}}, KNN_CFG)  # records nothing
    md = _md(tmp_path)
    assert "| vit_base_16_mine (ViT-S/16) | 50.00 (paper 75.2) |" in md
    assert "| vit_large_16_other (arch unknown) | 40.00 |" in md


def test_demo_report_opens_with_the_verdict_and_the_learning_curve(tmp_path):
    root = make_demo(tmp_path / "demo")
    paths = build(root)
    md = Path(paths["markdown"]).read_text()
    sections = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert sections[0] == "## Does pre-training beat random init?"
    first = md.split("## Does pre-training beat random init?")[1].split("\n## ")[0]
    assert "| measurement | live | reference | random_init | live vs random_init | reference vs random_init |" in first
    assert "| k-NN top-1 (k=20, %) | 45.0 | 62.8 | 21.8 | learned (+23.2) | learned (+41.0) |" in first
    assert "live pre-training: 12 epochs" in first and "not run: dense: skipped (budget)" in first
    assert "### Learning curve of the pre-training" in first and "![learning curve of pretrain" in first
    assert "| live | ViT-T/8 (depth 4) (3 of 3 results record it) | live.pth | ibot-suite-backbone |" in md
    assert "2 different: fp32, bf16" in md


@pytest.mark.parametrize(
    ("paper", "suite"),
    [("knn_top1", "knn_top1"), ("semisup_10pct_ft_proj_top1", "finetune_proj_top1@10%"), ("in9_mixed_rand_top1",
     "bg_mixed_rand"), ("coco_ap_box", "coco_box_ap"), ("imagenet_c_mce", "corr_mean_error"),
     ("throughput_im_per_s", None), ("cifar10_finetune_top1", None)],
)  # fmt: skip
def test_paper_metrics_meet_the_suite(paper, suite):
    assert suite_metric(paper) == suite


def test_the_paper_file_is_complete():
    paper = load_paper()
    assert len(paper.records) == 345 and len(paper.tables()) == 28
    effective = [r for r in paper.records if r.epochs_kind == "effective"]
    assert effective and all("effective" in r.row_label() for r in effective)
    assert paper.beside("knn_top1", "ViT-S/16").value == 75.2 and paper.beside("knn_top1", "ViT-T/8") is None


def test_explorer_pages_are_linked_relative_to_the_report(tmp_path):
    """An analysis.explore result (its `page`) gets a link in report.md and report.html, relative to the report
    (the page is too large to embed); a page that is gone gets none."""
    root = make_demo(tmp_path / "demo")
    folder = root / "analysis" / "reference" / "explore"
    folder.mkdir(parents=True)
    (folder / "explore.html").write_text("<html></html>")
    page = str(folder / "explore.html")
    write(folder, {"images": 24, "page": page, "page_bytes": 13, "backbone": _backbone(VITS, "r"),
                   "provenance": provenance()})  # fmt: skip
    gone = root / "analysis" / "live" / "explore"
    write(gone, {"images": 24, "page": str(gone / "explore.html"), "page_bytes": 13, "provenance": provenance()})
    paths = build(root)
    md, page = Path(paths["markdown"]).read_text(), Path(paths["html"]).read_text()
    assert "## Explore the backbones" in md
    assert "(<../analysis/reference/explore/explore.html>)" in md
    assert '<a href="../analysis/reference/explore/explore.html">' in page
    assert "live/explore/explore.html" not in md
