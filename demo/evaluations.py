"""The classification stages of the demo, each run on every model: frozen features (k-NN, logistic
regression, linear probe, unsupervised clusters), fine-tuning, robustness; and retrieval and video
object segmentation where this tree has them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import shutil

import eval_knn
from eval_knn import KNNConfig
from eval_knn import run as knn_run
from eval_linear import LinearConfig, LogRegConfig, run_logreg
from eval_linear import run as linear_run
from plumbing import resolve_device
from pretrain import load_backbone, load_head

from .common import Context, make_config, save, write_json

log = logging.getLogger("demo")
LOGREG_LAMBDAS = [1e-4, 1e-3, 1e-2]  # the paper's {0.01, 0.1, 1} leave this tiny world at chance
LINEAR_LRS = [0.1, 1.0, 10.0]  # before the batch scaling (x 64 / 256); the paper's 45 lrs are 100 epochs long


class NotRun(Exception):
    """An evaluation this tree cannot run (a missing package or public name): the table says why."""


def frozen(ctx: Context, model: str) -> None:
    """k-NN, logistic regression, a short linear probe and the unsupervised clusters on frozen [CLS]."""
    path = ctx.models[model]
    backbone, _ = load_backbone(path)
    # k-NN and logistic regression share the cached features (keyed by weights, dataset and transform)
    cache = str(ctx.folder("frozen", model) / "feature_cache")
    common = dict(data_path=str(ctx.classification), image_size=ctx.image_size, batch_size_per_gpu=128,
                  num_workers=0, progress=False, device=ctx.device)  # fmt: skip
    cfg = make_config(KNNConfig, **common, pretrained=str(path), output_dir=str(ctx.folder("frozen", model, "knn")),
                      ks=[20], cache_dir=cache)  # fmt: skip
    save(cfg, knn_run(backbone, cfg))
    cfg = make_config(LogRegConfig, **common, pretrained=str(path), lambdas=LOGREG_LAMBDAS, cache_dir=cache,
                      output_dir=str(ctx.folder("frozen", model, "logreg")))  # fmt: skip
    save(cfg, run_logreg(backbone, cfg))
    epochs = ctx.budgets["linear_epochs"]
    cfg = make_config(LinearConfig, **{**common, "batch_size_per_gpu": 64}, pretrained=str(path), recipes=["cls"],
                      n_last_blocks=1, lrs=LINEAR_LRS, epochs=epochs, resume=False,
                      output_dir=str(ctx.folder("frozen", model, "linear")))  # fmt: skip
    save(cfg, linear_run(backbone, cfg))
    unsupervised(ctx, model, common)


def unsupervised(ctx: Context, model: str, common: dict) -> None:
    """Clusters from the iBOT head's prototypes (argmax), scored against the labels (NMI, ARI, ...)."""
    run_unsup, schema = getattr(eval_knn, "run_unsup", None), getattr(eval_knn, "UnsupConfig", None)
    if run_unsup is None or schema is None:
        raise NotRun("eval_knn exports no run_unsup / UnsupConfig in this tree")
    path = ctx.models[model]
    backbone, _ = load_backbone(path)
    head, _ = load_head(path)
    cfg = make_config(schema, **common, pretrained=str(path), output_dir=str(ctx.folder("frozen", model, "unsup")))
    save(cfg, run_unsup(backbone, cfg, head=head))


def finetune(ctx: Context, model: str) -> None:
    """A short end-to-end fine-tuning run (finetune.demo_finetune: as many epochs as the budget allows)."""
    from finetune import demo_finetune

    out = ctx.folder("finetune", model)
    demo_finetune(str(ctx.models[model]), str(ctx.classification), str(out), minutes=ctx.budgets["finetune_s"] / 60,
                  device=ctx.device)  # fmt: skip
    timed = out / "one_epoch"  # where demo_finetune's timing epoch went; its result when no second run fitted
    if not (out / "results.json").is_file() and (timed / "results.json").is_file():
        for entry in timed.iterdir():  # up into the model's folder: the report names its rows by that folder
            shutil.move(str(entry), out / entry.name)
        timed.rmdir()


def robustness(ctx: Context, model: str) -> None:
    """Occlusion, patch shuffle, corruptions and backgrounds with the frozen stage's best linear head."""
    from analysis import demo_robustness

    head = ctx.folder("frozen", model, "linear") / "linear_head_best.pth"
    if not head.is_file():
        raise NotRun(f"{head} is missing: the robustness stage uses the frozen stage's linear head (run it first)")
    device = str(resolve_device(ctx.device))  # auto: CUDA when available
    res = demo_robustness((str(head), str(ctx.models[model])), str(ctx.world), str(ctx.folder("robustness", model)),
                          max_images=ctx.budgets["robustness_images"], device=device)  # fmt: skip
    write_json(ctx.folder("robustness", model) / "summary.json", {k: v for k, v in res.items() if k != "results"})


def retrieval(ctx: Context, model: str) -> None:
    """Image retrieval (revisited-Oxford-style, mAP Medium/Hard) and copy detection on the world's retrieval part."""
    parts = (ctx.world / "retrieval").is_dir()
    if not parts or importlib.util.find_spec("retrieval") is None:
        raise NotRun("no retrieval part in the world (WorldConfig.retrieval) or no retrieval package")
    from retrieval import CopydaysConfig, RetrievalConfig, run_copydays
    from retrieval import run as retrieval_run

    path = ctx.models[model]
    backbone, _ = load_backbone(path)
    common = dict(pretrained=str(path), num_workers=0, progress=False, device=ctx.device)
    cfg = RetrievalConfig(**common, data_path=str(ctx.world / "retrieval"), dataset="roxford5k",
                          output_dir=str(ctx.folder("retrieval", model, "roxford5k")))  # fmt: skip
    save(cfg, retrieval_run(backbone, cfg))
    parts = ctx.world / "retrieval"
    cfg = CopydaysConfig(**common, data_path=str(parts / "copydays"), distractors_path=str(parts / "distractors"),
                         image_size=ctx.image_size,
                         output_dir=str(ctx.folder("retrieval", model, "copydays")))  # fmt: skip
    save(cfg, run_copydays(backbone, cfg))


def video(ctx: Context, model: str) -> None:
    """DAVIS-style video object segmentation by label propagation, where the tree has video_seg and the world videos."""
    if not (ctx.world / "video").is_dir() or importlib.util.find_spec("video_seg") is None:
        raise NotRun("no video part in the world (WorldConfig.video) or no video_seg package in this tree")
    video_seg = importlib.import_module("video_seg")  # an optional evaluation: only its public names are used
    path = ctx.models[model]
    backbone, _ = load_backbone(path)
    cfg = video_seg.VideoSegConfig(pretrained=str(path), data_path=str(ctx.world / "video"), short_side=72,
                                   num_workers=0, progress=False, device=ctx.device,
                                   output_dir=str(ctx.folder("video", model, "davis")))  # fmt: skip
    save(cfg, video_seg.run(backbone, cfg))
