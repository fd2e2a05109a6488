"""End-to-end fine-tuning of an in-memory backbone: `run(backbone, cfg) -> dict` (command: `python -m finetune`).

Every epoch: one pass of optimizer steps (warm-up from 0 then cosine, per step, times each group's
layer-decay scale), a val pass (top-1 / top-5), TensorBoard scalars (train loss, lr, val top-1/top-5)
in `output_dir/tensorboard/`, an atomic `checkpoint.pth` (model, optimizer, EMA, epoch, bests, RNG
state) and, when val top-1 improves, `classifier.pth` (`evalkit.load_classifier` reads it). Each
epoch's random draws are seeded from (seed, epoch, rank), so `resume=true` after a stop at an epoch
boundary gives the same weights as an uninterrupted run. `time_limit_min` stops training at the end of
the epoch that passes it (evaluated and checkpointed like every epoch); the results record the stop
under `stopped` (absent when the schedule ran to its end), as detection's and segmentation's do.

    python -m finetune --config finetune/recipes/vit_small_16.yaml pretrained=backbone.pth \\
        data_path=/data/imagenet output_dir=runs/finetune/vit_small_16
    torchrun --nproc_per_node=8 -m finetune --config finetune/recipes/vit_small_16.yaml ...
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from evalkit import ScalarLog, describe_datasets, image_splits, open_evaluation_folder, save_finetuned
from plumbing import CheckpointError, ConfigError, DatasetError, init_distributed, out_of_time, to_plain
from pretrain import arch_name, atomic_save, cosine_schedule, load_head, mask_grid, safe_load

from .config import FinetuneConfig, peak_lr
from .data import make_criterion, make_mixup, seed_epoch, train_loader, train_transform, val_loader, val_transform
from .engine import evaluate, train_one_epoch
from .model import build_model, param_groups

log = logging.getLogger("finetune")
CHECKPOINT, CLASSIFIER = "checkpoint.pth", "classifier.pth"
CHECKPOINT_FORMAT = "ibot-suite/finetune-checkpoint"


def _datasets(cfg: FinetuneConfig):
    try:
        train_tf = train_transform(cfg)
        val_tf = val_transform(cfg.image_size, cfg.crop_pct, cfg.eval_interpolation)
    except (AssertionError, KeyError, ValueError) as e:
        raise ConfigError(f"bad augmentation settings (auto_augment={cfg.auto_augment!r}?): {e}") from None
    return image_splits(cfg.data_path, train_tf, val_tf, cfg.train_list, cfg.val_list)


class Finetuner:
    """One fine-tuning run; methods are the loop's named pieces."""

    def __init__(self, backbone: nn.Module, cfg: FinetuneConfig, head: nn.Module | None, arch: str | None):
        cfg.check()
        if cfg.start_from == "head_layer1" and head is None:
            if not cfg.pretrained:
                raise ConfigError("start_from=head_layer1 needs the iBOT head (a checkpoint exported with its head)")
            head = load_head(cfg.pretrained, cfg.checkpoint_key)[0]
        grid = mask_grid(backbone)  # pixels per output token: the ViT patch, 32 for Swin
        if cfg.image_size % grid:
            unit = "the patch size" if grid == backbone.patch_size else "Swin's final-stage stride"
            raise ConfigError(f"image_size={cfg.image_size} is not a multiple of {unit} {grid}")
        self.cfg, self.arch = cfg, arch or arch_name(backbone)
        self.rank, self.world, self.device = init_distributed(cfg.device)  # joined already under torchrun
        self.out = Path(cfg.output_dir)
        self.train_set, self.val_set = _datasets(cfg)
        self.classes = self.train_set.classes
        global_batch = cfg.batch_size_per_gpu * self.world * cfg.accum_steps
        self.steps = len(self.train_set) // global_batch  # optimizer steps per epoch
        if cfg.max_steps_per_epoch:
            self.steps = min(self.steps, cfg.max_steps_per_epoch)
        if self.steps == 0:
            n = len(self.train_set)
            raise DatasetError(f"{n} training images are fewer than one global batch ({global_batch})")
        head = head if cfg.start_from == "head_layer1" else None
        # before anything is built from the folder: same backbone, head, data and keys, or stop
        open_evaluation_folder(cfg, self.out / CHECKPOINT, {"backbone": backbone, "head": head},
                        describe_datasets(train=self.train_set, val=self.val_set), what="fine-tuning run")  # fmt: skip
        torch.manual_seed(cfg.seed)  # classifier init
        self.model = build_model(backbone, len(self.classes), cfg.drop_path_rate, head).to(self.device)
        groups = param_groups(self.model, cfg.layer_decay, cfg.weight_decay)
        self.optimizer = torch.optim.AdamW(groups, lr=0.0, betas=tuple(cfg.betas), eps=cfg.eps)
        self.ema = None
        if cfg.model_ema:
            self.ema = ModelEmaV3(self.model, decay=cfg.model_ema_decay)
        self.schedule = cosine_schedule(peak_lr(cfg, self.world), cfg.min_lr, cfg.epochs, self.steps, cfg.warmup_epochs)
        self.identity = {"classes": self.classes, "start_from": cfg.start_from,
                         "backbone_kwargs": self.model.backbone.arch_kwargs()}  # fmt: skip
        self.epoch, self.history = 0, []
        self.scalars = ScalarLog(cfg.output_dir, enabled=self.rank == 0)
        self.best = {"top1": -1.0, "top5": -1.0, "epoch": None, "ema_top1": -1.0, "ema_epoch": None}

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """Everything `restore` needs to continue exactly (plain types and tensors only)."""
        np_state = np.random.get_state()
        rng = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        }
        return {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "epoch": self.epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "best": dict(self.best),
            "history": list(self.history),
            "rng": rng,
            "config": to_plain(self.cfg),
        }

    def restore(self) -> None:
        """With `resume=true`, load output_dir/checkpoint.pth if present (same classes and backbone only)."""
        path = self.out / CHECKPOINT
        if not (self.cfg.resume and path.is_file()):
            return
        state = safe_load(path)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a fine-tuning checkpoint; use another output_dir or resume=false")
        if state["identity"] != self.identity:
            raise ConfigError(f"{path} was written for other classes, start_from or backbone; use another output_dir")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if state["ema"] is None:
                raise ConfigError(f"{path} holds no EMA weights: resume with model_ema=false")
            self.ema.module.load_state_dict(state["ema"])
        self.epoch, self.best, self.history = state["epoch"], state["best"], state["history"]
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(("MT19937", rng["numpy"]["keys"].numpy().astype(np.uint32), rng["numpy"]["pos"]))
        log.info("resumed from %s at epoch %d", path, self.epoch)

    def save_classifier(self, model: nn.Module, name: str, stats: dict) -> None:
        """Write `model` as a self-describing classifier file with the eval recipe in its meta."""
        meta = {"classes": self.classes, "image_size": self.cfg.image_size, "crop_pct": self.cfg.crop_pct,
                "interpolation": self.cfg.eval_interpolation, "epoch": self.epoch, **stats}  # fmt: skip
        save_finetuned(self.out / name, model, meta)

    # ------------------------------------------------------------------ the loop
    def train_epoch(self, ddp_model: nn.Module) -> float:
        """One epoch of optimizer steps on freshly seeded data; returns the mean train loss."""
        cfg, e = self.cfg, self.epoch
        seed_epoch(cfg.seed, e, self.rank)
        batches = train_loader(self.train_set, cfg, e, self.rank, self.world, self.device.type == "cuda")
        lrs = self.schedule[e * self.steps : (e + 1) * self.steps]
        return train_one_epoch(
            ddp_model, self.optimizer, batches, make_criterion(cfg), lrs, self.device, cfg.accum_steps,
            make_mixup(cfg, len(self.classes)), self.ema, cfg.clip_grad, cfg.progress and self.rank == 0,
            f"epoch {e + 1}/{cfg.epochs}", cfg.precision,
        )  # fmt: skip

    def validate(self, loss: float, val_batches) -> dict:
        """Evaluate, keep the bests, write classifier.pth on improvement; returns the history row."""
        show = self.cfg.progress and self.rank == 0
        stats = evaluate(self.model, val_batches, self.device, show, self.cfg.precision)
        lr_start = float(self.schedule[self.epoch * self.steps])  # the epoch's first step, before layer decay
        row = {"epoch": self.epoch + 1, "train_loss": loss, **stats, "lr_start": lr_start}
        self.epoch += 1
        if stats["top1"] > self.best["top1"]:
            self.best.update(top1=stats["top1"], top5=stats["top5"], epoch=self.epoch)
            if self.rank == 0:
                self.save_classifier(self.model, CLASSIFIER, stats)
        if self.ema is not None:
            row["ema_top1"] = evaluate(self.ema.module, val_batches, self.device, show, self.cfg.precision)["top1"]
            if row["ema_top1"] > self.best["ema_top1"]:
                self.best.update(ema_top1=row["ema_top1"], ema_epoch=self.epoch)
                if self.rank == 0:
                    self.save_classifier(self.ema.module, "classifier_ema.pth", {"top1": row["ema_top1"]})
        return row

    def run(self) -> dict:
        """Train (or resume) to `epochs` or the time limit; returns the results dict."""
        cfg, start = self.cfg, time.time()
        self.restore()
        ddp_model = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            ddp_model = DistributedDataParallel(self.model, device_ids=ids)
        val_batches = val_loader(self.val_set, cfg, self.rank, self.world, self.device.type == "cuda")
        while self.epoch < cfg.epochs:
            row = self.validate(self.train_epoch(ddp_model), val_batches)
            self.history.append(row)
            log.info("epoch %d: train loss %.4f, val top-1 %.2f", row["epoch"], row["train_loss"], row["top1"])
            self.log_scalars(row)
            if self.rank == 0:
                atomic_save(self.state(), self.out / CHECKPOINT)
            if out_of_time(start, cfg.time_limit_min, self.device):
                break
        self.scalars.close()
        return self.results(time.time() - start)

    def stopped(self, seconds: float) -> dict:
        """What the time limit stopped ({} when the run finished its epochs): the optimizer steps and epochs the
        evaluated model had in all (resumed ones included) and the minutes of training in this process."""
        if self.epoch >= self.cfg.epochs:
            return {}
        done = {"iterations": self.epoch * self.steps, "epochs": self.epoch, "minutes": seconds / 60}
        return {"stopped": {"time_limit_min": self.cfg.time_limit_min, **done}}

    def log_scalars(self, row: dict) -> None:
        """TensorBoard, step = epochs done: train loss and the epoch's first lr; val top-1, top-5, loss."""
        self.scalars.log({"loss": row["train_loss"], "lr": row["lr_start"]}, row["epoch"], "train")
        val = {k: row[k] for k in ("top1", "top5", "loss", "ema_top1") if k in row}
        self.scalars.log(val, row["epoch"], "val")

    def results(self, seconds: float) -> dict:
        """The results.json payload."""
        b = self.best
        res = {"best_top1": b["top1"], "best_top5": b["top5"], "best_epoch": b["epoch"], "epochs_done": self.epoch,
               "completed": self.epoch >= self.cfg.epochs, "history": self.history, "num_train": len(self.train_set),
               "num_val": len(self.val_set), "num_classes": len(self.classes), "steps_per_epoch": self.steps,
               "peak_lr": peak_lr(self.cfg, self.world), "world_size": self.world, "minutes": seconds / 60,
               "classifier": str(self.out / CLASSIFIER), **self.stopped(seconds)}  # fmt: skip
        if self.ema is not None:
            res.update(best_ema_top1=b["ema_top1"], best_ema_epoch=b["ema_epoch"])
        return res


def run(backbone: nn.Module, cfg: FinetuneConfig, head: nn.Module | None = None, arch: str | None = None) -> dict:
    """Fine-tune `backbone` (ViT or Swin, + classifier) on `cfg.data_path`; returns best top-1/top-5 and history.

    `head`: the iBOT projection head, needed for `start_from=head_layer1` (None: read from `cfg.pretrained`,
    as the CLI does). `arch` names the registry
    entry stored in classifier.pth (None: `arch_name(backbone)`; the backbone's own kwargs fix its size).
    """
    return Finetuner(backbone, cfg, head, arch).run()
