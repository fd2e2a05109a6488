"""`make demo`: the whole suite on the embedded shapes world, on CPU, in minutes.

  python -m demo [out=demo_out] [minutes=8] [stages=pretrain,frozen,analysis,...]

Generates the world, pre-trains a small ViT with `pretrain/recipes/tiny_cpu.yaml` for at most
`minutes`, exports the teacher, then runs each evaluation on the trained model and on the same
architecture at random initialisation, and prints one table. Every stage writes its own folder
(config.yaml, results.json, figures) under `out/`; the table is also saved as `out/summary.json`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from demo_world import write_world
from pretrain import TrainConfig, build_backbone, export_backbone, load_backbone, load_head, parse_config, train

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "pretrain" / "recipes" / "tiny_cpu.yaml"
log = logging.getLogger("demo")


class Demo:
    def __init__(self, out: Path, minutes: float):
        self.out, self.minutes = out, minutes
        self.world = out / "world"
        self.rows: list[dict] = []  # one row per (stage, metric): trained vs random init
        self.errors: list[str] = []
        # Set by the pretrain stage; these defaults let later stages be re-run alone (stages=frozen,...).
        self.trained_path = out / "pretrain" / "backbone.pth"
        self.random_path = out / "pretrain" / "random_init_backbone.pth"

    # ---------------------------------------------------------------- stages
    def make_world(self) -> None:
        if not (self.world / "world.json").exists():
            write_world(self.world, seed=0)

    def pretrain(self) -> None:
        args = ["--config", str(RECIPE), f"data_path={self.world / 'classification' / 'train'}",
                f"output_dir={self.out / 'pretrain'}", f"time_limit_min={self.minutes}"]  # fmt: skip
        cfg = parse_config(TrainConfig, args)
        res = train(cfg)
        self.trained_path = Path(res["backbone"])
        # The same architecture at random initialisation, exported the same way, as the baseline.
        torch.manual_seed(cfg.seed)
        init = build_backbone(cfg.arch, patch_size=cfg.patch_size, img_size=cfg.global_crop_size, depth=cfg.depth,
                              use_mask_token=False)  # fmt: skip
        self.random_path = self.out / "pretrain" / "random_init_backbone.pth"
        export_backbone(init, self.random_path)
        self.rows.append({"stage": "pretrain", "metric": "epochs done / minutes",
                          "trained": f"{res['epoch']} / {res['minutes']:.1f}", "random": "-"})  # fmt: skip

    def frozen(self) -> None:
        """k-NN, logistic regression and a short linear-probe sweep on frozen [CLS] features."""
        from eval_knn import KNNConfig
        from eval_knn import run as knn_run
        from eval_linear import LinearConfig, LogRegConfig, run_logreg
        from eval_linear import run as linear_run

        for name, path in self.models():
            backbone, _ = load_backbone(path)
            out = self.out / "frozen" / name
            common = dict(data_path=str(self.world / "classification"), image_size=64, batch_size_per_gpu=64,
                          num_workers=0, progress=False, device="cpu",
                          cache_dir=str(out / "feature_cache"))  # fmt: skip
            knn = knn_run(backbone, KNNConfig(**common, output_dir=str(out / "knn"), ks=[20]))
            self.record("k-NN (k=20)", "top-1 %", name, knn["knn"]["k=20"]["top1"])
            lambdas = [1e-4, 1e-3, 1e-2]  # the paper's {0.01, 0.1, 1} leave this tiny world at chance
            lr = run_logreg(backbone, LogRegConfig(**common, output_dir=str(out / "logreg"), lambdas=lambdas))
            self.record("logistic regression", "top-1 %", name, lr["best"]["top1"])
            lin_cfg = LinearConfig(**common, output_dir=str(out / "linear"), recipes=["cls"], n_last_blocks=1,
                                   lrs=[1.0, 10.0], epochs=2, resume=False)  # fmt: skip
            lin = linear_run(backbone, lin_cfg)
            self.record("linear probe (2 epochs)", "top-1 %", name, lin["best"]["top1"])

    def finetune(self) -> None:
        from finetune import demo_finetune

        for name, path in self.models():
            res = demo_finetune(str(path), str(self.world / "classification"), str(self.out / "finetune" / name),
                                minutes=self.minutes / 4, device="cpu", num_workers=0)  # fmt: skip
            self.record("fine-tuning", "top-1 %", name, res["best_top1"])

    def dense(self) -> None:
        """Short detection (Mask R-CNN) and segmentation (UperNet, linear) runs on the world's scenes."""
        from detection import demo_detection
        from segmentation import demo_segmentation

        budget = self.minutes / 4
        for name, path in self.models():
            det = demo_detection(str(path), str(self.world / "coco"), str(self.out / "detection" / name), budget)
            self.record("detection (Mask R-CNN)", "box AP50", name, det["bbox_AP50"])
            self.record("instance segmentation", "mask AP50", name, det["segm_AP50"])
            for head in ("upernet", "linear"):
                seg_out = self.out / "segmentation" / head / name
                seg = demo_segmentation(str(path), str(self.world / "ade"), str(seg_out), budget / 2, head=head)
                self.record(f"segmentation ({head})", "mIoU", name, seg["mIoU"])

    def robustness(self) -> None:
        """Occlusion, shuffle, corruptions and background variants with the linear probe's best head."""
        from analysis import demo_robustness

        for name, path in self.models():
            head = self.out / "frozen" / name / "linear" / "linear_head_best.pth"
            res = demo_robustness((str(head), str(path)), str(self.world), str(self.out / "robustness" / name))
            self.record("robustness: clean", "top-1 %", name, res["clean_top1"])
            self.record("robustness: 50% patches dropped", "top-1 %", name, res["occlusion_50pct_top1"])
            self.record("robustness: corruptions", "mean error %", name, res["corruption_mean_error"])
            self.record("robustness: BG-gap", "points", name, res["bg_gap"])

    def analysis(self) -> None:
        """Attention maps + Jaccard (both models); correspondence, patch clusters, PCA (trained model)."""
        from skimage import data as skdata

        from analysis import (
            AttentionConfig,
            CorrespondenceConfig,
            PatternsConfig,
            PCAConfig,
            run_attention,
            run_correspondence,
            run_patterns,
            run_pca,
        )

        val, out = self.world / "classification" / "val", self.out / "analysis"
        masks = self.world / "classification" / "masks" / "val"
        for name, path in self.models():
            backbone, _ = load_backbone(path)
            cfg = AttentionConfig(data_path=str(val), masks=str(masks), resize="none", max_figures=4, num_workers=0,
                                  output_dir=str(out / f"attention_{name}"))  # fmt: skip
            res = run_attention(backbone, cfg)
            self.record("attention Jaccard (best head)", "Jaccard", name, res["jaccard_best_head"])
            self.record("attention Jaccard, chance level", "Jaccard", name, res["jaccard_chance"])
        self.rows.append({"stage": "attention Jaccard ceiling", "metric": "Jaccard",
                          "trained": f"{res['jaccard_ceiling']:.3f}", "random": "-"})  # fmt: skip
        backbone, _ = load_backbone(self.trained_path)
        head, _ = load_head(self.trained_path)
        stereo = out / "stereo"
        stereo.mkdir(parents=True, exist_ok=True)
        left, right, _ = skdata.stereo_motorcycle()
        for img, side in ((left, "left"), (right, "right")):
            Image.fromarray(img).save(stereo / f"{side}.png")
        pairs = [str(stereo / "left.png"), str(stereo / "right.png")]
        run_correspondence(
            backbone,
            CorrespondenceConfig(
                mode="class", images=pairs, image_size=128, num_workers=0, output_dir=str(out / "correspondence")
            ),  # fmt: skip
        )
        inst = run_correspondence(
            backbone,
            CorrespondenceConfig(
                mode="instance",
                data_path=str(val),
                image_size=64,
                max_figures=4,
                num_workers=0,
                output_dir=str(out / "corr_instance"),
            ),
        )
        self.rows.append(
            {
                "stage": "correspondence (two views)",
                "metric": "accuracy",
                "trained": f"{inst['accuracy']:.3f}",
                "random": "-",
            }
        )
        run_patterns(
            backbone,
            PatternsConfig(
                data_path=str(val),
                resize_size=64,
                image_size=64,
                num_prototypes=8,
                topk=16,
                num_workers=0,
                output_dir=str(out / "patterns"),
            ),
            head=head,
        )
        firsts = [str(val / c / "00000.png") for c in ("circle", "star", "ring", "cross")]
        cfg = PCAConfig(images=firsts, resize="none", foreground=True, num_workers=0, output_dir=str(out / "pca"))
        run_pca(backbone, cfg)

    # ---------------------------------------------------------------- helpers
    def models(self) -> list[tuple[str, Path]]:
        return [("trained", self.trained_path), ("random", self.random_path)]

    def record(self, stage: str, metric: str, which: str, value: float) -> None:
        row = next((r for r in self.rows if r["stage"] == stage), None)
        if row is None:
            row = {"stage": stage, "metric": metric, "trained": "-", "random": "-"}
            self.rows.append(row)
        row[which] = "-" if value is None else (f"{value:.3f}" if abs(value) < 1.5 else f"{value:.1f}")

    def stage(self, name: str, fn: Callable[[], None]) -> None:
        t0 = time.time()
        print(f"\n=== {name} ===", flush=True)
        try:
            fn()
        except Exception:  # keep going: the other stages still say something; the exit code tells
            self.errors.append(f"{name}: {traceback.format_exc(limit=3)}")
            print(f"stage {name} FAILED (see the summary)", flush=True)
        print(f"=== {name}: {time.time() - t0:.0f} s ===", flush=True)

    def table(self) -> str:
        lines = [f"{'stage':34} {'metric':22} {'trained':>12} {'random init':>12}", "-" * 84]
        lines += [f"{r['stage']:34} {r['metric']:22} {r['trained']:>12} {r['random']:>12}" for r in self.rows]
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    argv = sys.argv[1:] if argv is None else argv
    opts = dict(a.split("=", 1) for a in argv)
    demo = Demo(Path(opts.get("out", "demo_out")), float(opts.get("minutes", 8)))
    stages = {"world": demo.make_world, "pretrain": demo.pretrain, "frozen": demo.frozen, "finetune": demo.finetune,
              "dense": demo.dense, "robustness": demo.robustness, "analysis": demo.analysis}  # fmt: skip
    wanted = opts.get("stages", ",".join(stages)).split(",")
    for name in wanted:
        demo.stage(name, stages[name])
    (demo.out / "summary.json").write_text(json.dumps({"rows": demo.rows, "errors": demo.errors}, indent=2))
    print("\n" + demo.table())
    print(f"\nresults, figures and configs: {demo.out.resolve()}/ (summary.json, pretrain/, eval_*/, analysis/)")
    for err in demo.errors:
        print(f"\nERROR in {err}", file=sys.stderr)
    return 1 if demo.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
