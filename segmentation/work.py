"""The work of `python -m segmentation`: `run(backbone, cfg) -> dict` trains a segmentor on an ADE20K-layout
folder, evaluates it and draws a figure.

    torchrun --nproc_per_node=8 -m segmentation --config segmentation/recipes/vit_base_upernet.yaml \
        pretrained=ibot_vitb16.pth data_path=/data/ADEChallengeData2016   # 2 crops per GPU: 16 in total

Output files in `output_dir`: `seg_checkpoint.pth` (resumes exactly when the same command is rerun;
`load_segmentor` rebuilds the model from it), `predictions.png`, `tensorboard/` (train/loss, train/lr,
val/mIoU), and from the shell (`evalkit`) `config.yaml` and `results.json` (mIoU, mAcc, aAcc in percent,
per-class IoU/Acc).

With `time_limit_min` set, training stops at the first step boundary after that many minutes, the checkpoint
is written at that step (a rerun resumes exactly from it), the model as trained is evaluated, and the
results hold `"status": "time_limit"` and `"stopped": {"time_limit_min", "iterations", "epochs", "minutes"}`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from evalkit import ScalarLog, open_evaluation_folder
from plumbing import (
    ConfigError,
    autocast,
    dataset_fingerprint,
    init_distributed,
    is_distributed,
    out_of_time,
    resolve_precision,
    shutdown_distributed,
)
from pretrain import arch_name, is_swin, mask_grid, with_drop_path

from .config import SegConfig, backbone_size, read_classes, resolve_hparams, resolve_num_classes
from .data import ADETrainSet, ADEValSet, StepBatchSampler, TrainPipeline, ade_pairs
from .engine import (
    build_optimizer,
    evaluate,
    load_checkpoint,
    poly_lr,
    save_checkpoint,
    set_lr,
    step_seed,
    train_step,
)
from .figure import make_palette, save_prediction_figure
from .inference import InferenceSpec
from .metrics import segmentation_metrics
from .model import Segmentor, build_segmentor, resize_pos_embed

log = logging.getLogger(__name__)
CHECKPOINT, FIGURE = "seg_checkpoint.pth", "predictions.png"


@dataclass
class Setup:
    """Everything a run prepares before its first step."""

    model: Segmentor
    optimizer: torch.optim.AdamW
    hparams: dict
    num_classes: int
    classes: dict | None
    meta: dict  # plain-typed: identity (resume check) and model_args (rebuild)
    scalars: ScalarLog  # TensorBoard scalars in output_dir/tensorboard (rank 0)


def make_model(backbone: nn.Module, cfg: SegConfig, num_classes: int, drop_path_rate: float) -> tuple[Segmentor, dict]:
    """Segmentor around a copy of `backbone` (with drop path) and its plain-typed rebuild arguments."""
    arch = arch_name(backbone)
    vit = with_drop_path(backbone, drop_path_rate)
    if cfg.resize_pos_embed and not is_swin(arch):  # Swin has no absolute position embedding
        resize_pos_embed(vit, cfg.crop_size // vit.patch_size)
    args = {
        "arch": arch,
        "arch_kwargs": vit.arch_kwargs(),
        "head": cfg.head,
        "num_classes": num_classes,
        "out_indices": list(cfg.out_indices) if cfg.out_indices is not None else None,
        "out_with_norm": cfg.out_with_norm,
        "channels": cfg.channels,
        "aux_channels": cfg.aux_channels,
        "dropout": cfg.dropout,
    }
    torch.manual_seed(cfg.seed)  # head initialisation: the same seed gives the same head (as detection, finetune)
    model = build_segmentor(vit, **{k: v for k, v in args.items() if k not in ("arch", "arch_kwargs")})
    return model, args


def prepare(backbone: nn.Module, cfg: SegConfig, device: torch.device, world: int) -> Setup:
    """Model (on device, SyncBN under multi-GPU DDP), optimizer and run metadata."""
    hp = resolve_hparams(cfg, backbone)
    classes = read_classes(cfg.data_path)
    num_classes = resolve_num_classes(cfg, classes)
    model, args = make_model(backbone, cfg, num_classes, hp["drop_path_rate"])
    if world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    optimizer = build_optimizer(model, hp["lr"], hp["layer_decay"], cfg.weight_decay, cfg.betas)
    identity = {
        "head": cfg.head,
        "size": backbone_size(backbone),
        "num_classes": num_classes,
        "iters": cfg.iters,
        "batch_size": cfg.batch_size_per_gpu * world,  # the total: a resume may use another process count
        "crop_size": cfg.crop_size,
        "seed": cfg.seed,
        **hp,
    }
    meta = {"identity": identity, "model_args": args}
    return Setup(model, optimizer, hp, num_classes, classes, meta, ScalarLog(cfg.output_dir))


def train_loop(s: Setup, cfg: SegConfig, device: torch.device, rank: int, world: int, start: int, amp) -> dict:
    """Steps [start, end) with per-step lr; checkpoints every `save_every` steps, at the end, and at the
    step where `time_limit_min` stops it (the results then hold `stopped`)."""
    end = min(cfg.iters, cfg.stop_after or cfg.iters)
    if start >= end:
        return {"final_loss": None, "train_seconds": 0.0, "steps_done": end}
    pipeline = TrainPipeline(tuple(cfg.img_scale), tuple(cfg.ratio_range), cfg.crop_size, cfg.cat_max_ratio,
                             cfg.flip_prob, cfg.photometric)  # fmt: skip
    dataset = ADETrainSet(ade_pairs(cfg.data_path, "train"), s.num_classes, cfg.reduce_zero_label, pipeline, cfg.seed)
    sampler = StepBatchSampler(len(dataset), cfg.batch_size_per_gpu, rank, world, cfg.seed, start, end)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    net = s.model
    if world > 1:
        net = DistributedDataParallel(s.model, device_ids=[device.index] if device.type == "cuda" else None)
    net.train()
    recent: list[float] = []
    t0, path, out = time.time(), Path(cfg.output_dir) / CHECKPOINT, {"steps_done": end}
    bar = tqdm(total=end, initial=start, desc="train", disable=not cfg.progress or rank != 0)
    for step, (img, label) in enumerate(loader, start):
        torch.manual_seed(step_seed(cfg.seed, step, rank))
        lr = poly_lr(step, s.hparams["lr"], cfg.iters, cfg.warmup_iters, cfg.warmup_ratio, cfg.poly_power)
        set_lr(s.optimizer, lr)
        batch = (img.to(device, non_blocking=True), label.to(device, non_blocking=True))
        losses = train_step(net, batch, s.optimizer, cfg.aux_weight, amp)
        recent = (recent + [losses["loss"]])[-50:]
        bar.update(1)
        bar.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}")
        last = step + 1 == end or out_of_time(t0, cfg.time_limit_min, device)
        if step % cfg.log_every == 0 or last:
            s.scalars.log({**losses, "lr": lr}, step, "train")
        if rank == 0 and ((step + 1) % cfg.save_every == 0 or last):
            save_checkpoint(path, s.model, s.optimizer, step + 1, s.meta)
        if last and step + 1 < end:  # the time limit
            out = {"steps_done": step + 1, "stopped": stop_record(cfg, step + 1, len(dataset) / world, t0)}
            break
    bar.close()
    return {"final_loss": sum(recent) / len(recent), "train_seconds": round(time.time() - t0, 2), **out}


def stop_record(cfg: SegConfig, steps: int, per_rank: float, t0: float) -> dict:
    """What a time-limited run trained: steps in all, epochs (passes over the train set, `per_rank` images
    a process), minutes in this process."""
    minutes = round((time.time() - t0) / 60, 3)
    log.info("time limit of %s min reached after step %d (%s min of training)", cfg.time_limit_min, steps, minutes)
    epochs = round(steps * cfg.batch_size_per_gpu / per_rank, 3)
    return {"time_limit_min": cfg.time_limit_min, "iterations": steps, "epochs": epochs, "minutes": minutes}


def inference_spec(cfg: SegConfig) -> InferenceSpec:
    """The test procedure of the config (single scale, or multi-scale + flip with SETR resize)."""
    return InferenceSpec(
        mode=cfg.test_mode,
        scale=tuple(cfg.test_scale or cfg.img_scale),
        crop=cfg.test_crop or cfg.crop_size,
        stride=cfg.test_stride,
        ratios=tuple(cfg.ms_ratios) if cfg.multi_scale else (1.0,),
        flip=cfg.multi_scale,
        setr_resize=cfg.multi_scale,
        window_batch=cfg.window_batch,
    )


def evaluate_and_draw(s: Setup, cfg: SegConfig, device: torch.device, rank: int, amp, step: int) -> dict:
    """Metrics over the val split (or its first `val_limit` images) and, on rank 0, the figure; TensorBoard
    gets them at training step `step`."""
    pairs = ade_pairs(cfg.data_path, "val")[: cfg.val_limit]
    dataset = ADEValSet(pairs, s.num_classes, cfg.reduce_zero_label)
    t0 = time.time()
    progress = cfg.progress and rank == 0
    spec = inference_spec(cfg)
    conf, samples = evaluate(s.model, dataset, spec, device, amp, cfg.n_figure, progress, cfg.num_workers)
    metrics = segmentation_metrics(conf)
    s.scalars.log({k: metrics[k] for k in ("mIoU", "mAcc", "aAcc")}, step, "val")
    out = {**metrics, "num_val": len(dataset), "eval_seconds": round(time.time() - t0, 2)}
    if rank == 0 and cfg.n_figure > 0:
        palette = make_palette(s.classes, cfg.reduce_zero_label)
        title = f"{cfg.head}: mIoU {metrics['mIoU']:.1f}"
        out["figure"] = str(save_prediction_figure(samples, palette, Path(cfg.output_dir) / FIGURE, title))
    return out


def run(backbone: nn.Module, cfg: SegConfig) -> dict:
    """Train (or resume) and evaluate; returns mIoU, mAcc, aAcc (percent) and the run's facts."""
    cfg.check()
    g = mask_grid(backbone)  # pixels per output token: the ViT patch, 32 for Swin
    if cfg.crop_size % g or (cfg.test_crop or cfg.crop_size) % g:
        raise ConfigError(f"crop_size ({cfg.crop_size}) and test_crop ({cfg.test_crop}) must be multiples of "
                          f"{g} px for {arch_name(backbone)}")  # fmt: skip
    ade_pairs(cfg.data_path, "train")  # every image has its label map: fail before building the model
    created = not is_distributed()  # the CLI shell joins torchrun's group itself; a direct call may not have
    rank, world, device = init_distributed(cfg.device)
    try:
        pairs = ade_pairs(cfg.data_path, "train")  # images and label maps: both enter the fingerprint
        print_ = dataset_fingerprint([f for pair in pairs for f in pair], cfg.data_path)
        open_evaluation_folder(cfg, Path(cfg.output_dir) / CHECKPOINT, {"backbone": backbone},
                               f"{cfg.data_path} ({len(pairs)} train images, fingerprint {print_})",
                               compatible={"stop_after"}, what="run")  # fmt: skip
        s = prepare(backbone, cfg, device, world)
        try:
            return train_and_evaluate(s, cfg, device, rank, world)
        finally:
            s.scalars.close()
    finally:
        if created:
            shutdown_distributed()


def train_and_evaluate(s: Setup, cfg: SegConfig, device: torch.device, rank: int, world: int) -> dict:
    """Resume from output_dir's checkpoint when there is one, train to the end (or `stop_after`, or the time
    limit), evaluate (not after `stop_after`: status "stopped"; after the time limit: status "time_limit")."""
    precision = resolve_precision(cfg.precision, device)
    amp = autocast(device, precision)
    path = Path(cfg.output_dir) / CHECKPOINT
    start = load_checkpoint(path, s.model, s.optimizer, s.meta["identity"]) if cfg.resume and path.is_file() else 0
    if start:
        log.info("resuming from %s at step %d", path, start)
    results = {"head": cfg.head, "num_classes": s.num_classes, **s.hparams, "world_size": world}
    results.update(precision=precision, batch_size_total=cfg.batch_size_per_gpu * world)
    results.update(train_loop(s, cfg, device, rank, world, start, amp), checkpoint=str(path))
    if "stopped" not in results and results["steps_done"] < cfg.iters:
        return {**results, "status": "stopped", "mIoU": math.nan}
    status = "time_limit" if "stopped" in results else "done"
    return {**results, **evaluate_and_draw(s, cfg, device, rank, amp, results["steps_done"]), "status": status}
