"""The classification stages of the demo, each run on every model: frozen features (k-NN, logistic
regression, linear probe, unsupervised clusters) and fine-tuning; and retrieval and video object
segmentation where this tree has them. Each evaluation is its command's `run(backbone, cfg)` through
`evalkit.evaluate`: the same checks, run folder and results.json (with provenance) as the command line.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os

import eval_knn
from eval_knn import KNNConfig
from eval_knn import run as knn_run
from eval_linear import LinearConfig, LogRegConfig, run_logreg
from eval_linear import run as linear_run
from evalkit import evaluate
from finetune import FinetuneConfig
from finetune import run as finetune_run
from pretrain import load_backbone, load_head

from .common import Context, NotRun, make_config

log = logging.getLogger("demo")
LOGREG_LAMBDAS = [1e-4, 1e-3, 1e-2]  # the paper's {0.01, 0.1, 1} leave this tiny world at chance
LINEAR_LRS = [0.1, 1.0, 10.0]  # before the batch scaling (x 64 / 256); the paper's 45 lrs are 100 epochs long
# the ViT-S/16 recipe at the backbone's own image size with batch 64 and lr 1e-3 (4e-3 assumes batch 1024), no
# mixup/cutmix (a few epochs are too short for them to pay off)
FINETUNE = dict(batch_size_per_gpu=64, lr=1e-3, mixup=0.0, cutmix=0.0, num_workers=min(4, os.cpu_count() or 1),
                progress=False)  # fmt: skip


def frozen(ctx: Context, model: str) -> None:
    """k-NN, logistic regression, a short linear probe and the unsupervised clusters on frozen [CLS]."""
    path = ctx.models[model]
    backbone, info = load_backbone(path)
    # k-NN and logistic regression share the cached features (keyed by weights, dataset and transform)
    cache = str(ctx.folder("frozen", model) / "feature_cache")
    common = dict(data_path=str(ctx.classification), image_size=ctx.image_size, batch_size_per_gpu=128,
                  num_workers=0, progress=False, device=ctx.device, threads=ctx.threads)  # fmt: skip
    cfg = make_config(KNNConfig, **common, pretrained=str(path), output_dir=str(ctx.folder("frozen", model, "knn")),
                      ks=[20], cache_dir=cache)  # fmt: skip
    evaluate(knn_run, backbone, cfg, "eval_knn", info)
    cfg = make_config(LogRegConfig, **common, pretrained=str(path), lambdas=LOGREG_LAMBDAS, cache_dir=cache,
                      output_dir=str(ctx.folder("frozen", model, "logreg")))  # fmt: skip
    evaluate(run_logreg, backbone, cfg, "eval_linear.logreg", info)
    epochs = ctx.budgets["linear_epochs"]
    cfg = make_config(LinearConfig, **{**common, "batch_size_per_gpu": 64}, pretrained=str(path), recipes=["cls"],
                      n_last_blocks=1, lrs=LINEAR_LRS, epochs=epochs, resume=False,
                      output_dir=str(ctx.folder("frozen", model, "linear")))  # fmt: skip
    evaluate(linear_run, backbone, cfg, "eval_linear", info)
    unsupervised(ctx, model, common)


def unsupervised(ctx: Context, model: str, common: dict) -> None:
    """Clusters from the iBOT head's prototypes (argmax), scored against the labels (NMI, ARI, ...)."""
    run_unsup, schema = getattr(eval_knn, "run_unsup", None), getattr(eval_knn, "UnsupConfig", None)
    if run_unsup is None or schema is None:
        raise NotRun("eval_knn exports no run_unsup / UnsupConfig in this tree")
    path = ctx.models[model]
    backbone, info = load_backbone(path)
    head, _ = load_head(path)
    cfg = make_config(schema, **common, pretrained=str(path), output_dir=str(ctx.folder("frozen", model, "unsup")))
    evaluate(functools.partial(run_unsup, head=head), backbone, cfg, "eval_knn.unsup", info)


def finetune(ctx: Context, model: str) -> None:
    """A short end-to-end fine-tuning run: `finetune_epochs` epochs (the cosine schedule sized to them), and
    `time_limit_min` stops it at the end of the epoch that passes `finetune_s` on a slower machine."""
    path = ctx.models[model]
    backbone, info = load_backbone(path)
    epochs = int(ctx.budgets["finetune_epochs"])
    size = int(backbone.arch_kwargs()["img_size"])
    cfg = FinetuneConfig(pretrained=str(path), data_path=str(ctx.classification), image_size=size,
                         epochs=epochs, warmup_epochs=0 if epochs == 1 else max(1, epochs // 10),
                         time_limit_min=ctx.budgets["finetune_s"] / 60, device=ctx.device, threads=ctx.threads,
                         output_dir=str(ctx.folder("finetune", model)), **FINETUNE)  # fmt: skip
    evaluate(finetune_run, backbone, cfg, "finetune", info)


def retrieval(ctx: Context, model: str) -> None:
    """Image retrieval (revisited-Oxford-style, mAP Medium/Hard) and copy detection on the world's retrieval part."""
    parts = (ctx.world / "retrieval").is_dir()
    if not parts or importlib.util.find_spec("retrieval") is None:
        raise NotRun("no retrieval part in the world (WorldConfig.retrieval) or no retrieval package")
    from retrieval import CopydaysConfig, RetrievalConfig, run_copydays
    from retrieval import run as retrieval_run

    path = ctx.models[model]
    backbone, info = load_backbone(path)
    common = dict(pretrained=str(path), num_workers=0, progress=False, device=ctx.device, threads=ctx.threads)
    cfg = RetrievalConfig(**common, data_path=str(ctx.world / "retrieval"), dataset="roxford5k",
                          output_dir=str(ctx.folder("retrieval", model, "roxford5k")))  # fmt: skip
    evaluate(retrieval_run, backbone, cfg, "retrieval", info)
    parts = ctx.world / "retrieval"
    cfg = CopydaysConfig(**common, data_path=str(parts / "copydays"), distractors_path=str(parts / "distractors"),
                         image_size=ctx.image_size,
                         output_dir=str(ctx.folder("retrieval", model, "copydays")))  # fmt: skip
    evaluate(run_copydays, backbone, cfg, "retrieval.copydays", info)


def video(ctx: Context, model: str) -> None:
    """DAVIS-style video object segmentation by label propagation, where the tree has video_seg and the world videos."""
    if not (ctx.world / "video").is_dir() or importlib.util.find_spec("video_seg") is None:
        raise NotRun("no video part in the world (WorldConfig.video) or no video_seg package in this tree")
    video_seg = importlib.import_module("video_seg")  # an optional evaluation: only its public names are used
    path = ctx.models[model]
    backbone, info = load_backbone(path)
    cfg = video_seg.VideoSegConfig(pretrained=str(path), data_path=str(ctx.world / "video"), short_side=72,
                                   num_workers=0, progress=False, device=ctx.device, threads=ctx.threads,
                                   output_dir=str(ctx.folder("video", model, "davis")))  # fmt: skip
    evaluate(video_seg.run, backbone, cfg, "video_seg", info)
