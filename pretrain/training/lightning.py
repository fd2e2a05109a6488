"""iBOT pre-training in PyTorch Lightning, built from the plain loop's step pieces (`pretrain.training.step`).

A Lightning user trains with (one process, or one per device under `strategy="ddp"`):

    import lightning
    from plumbing import parse_config
    from pretrain import IBOTDataModule, IBOTLightningModule, TrainConfig

    cfg = parse_config(TrainConfig, ["data_path=/data/imagenet/train", "epochs=100", "batch_size_per_gpu=64"])
    trainer = lightning.Trainer(accelerator="gpu", devices=8, strategy="ddp", max_epochs=cfg.epochs)
    trainer.fit(IBOTLightningModule(cfg), IBOTDataModule(cfg))

The step is the plain loop's (`pretrain.train`), so both give the same losses for the same seed: the
same models and initialisation, AdamW over the same two parameter groups, lr / wd / teacher momentum
set every step from the schedules precomputed over `cfg.epochs` (indexed by global step), per-parameter
gradient clipping before the update, the prototype layers frozen for `cfg.freeze_last_layer` epochs,
the EMA teacher after the update, the loss centers updated (all-reduced) inside the loss; the same
seeded crops and masks, and the same batches per step and rank (`EpochDistributedSampler`: the plain
loop's `EpochSampler` as a `DistributedSampler`, which Lightning keeps instead of wrapping it).
Under DDP, SyncBatchNorm replaces the batch norms of student and teacher when the models have any
(the suite's `IBOTHead` has no batch-norm option and its backbones use LayerNorm, so by default there
are none; a customised head or backbone with batch norm gets them synchronised).

The cfg decides what the plain loop's cfg decides, except `device` (the Trainer's accelerator and
devices choose), `resume`, `saveckp_freq`, `export_every`, `checkpoint_every_steps`, `time_limit_min` and
`log_every` (Lightning's callbacks and loggers do that). Losses, lr, wd and momentum go to the
Trainer's logger (`train/*`) and to `module.history` (one row per step, as the plain loop's log.jsonl);
at the end rank 0 exports the teacher to `cfg.output_dir/backbone.pth` (read by every evaluation).

Not supported: resuming from (or writing) the plain loop's `checkpoint.pth`, and the plain loop's
run-folder identity, lock, SIGTERM handling and online k-NN monitor (a Lightning callback can call
`evalkit.KNNMonitor` on `module.teacher.backbone`). Use Lightning's own checkpoints instead
(`trainer.fit(module, dm, ckpt_path=...)`; the module adds the random stream to them): exact at epoch
ends; a mid-epoch checkpoint is not replayed exactly (Lightning restarts a DataLoader without state
at its first batch). To evaluate from a checkpoint, `IBOTLightningModule.load_from_checkpoint(path,
cfg=cfg)`, or the exported `backbone.pth`. Trainer settings that change the step are
refused: `precision` other than "32-true" (set `cfg.precision` instead: the step runs under
`plumbing.autocast`), `max_epochs` unset or above `cfg.epochs` (the schedules span `cfg.epochs`);
Lightning itself refuses `accumulate_grad_batches` and `gradient_clip_val` with manual optimisation.
`seed_everything` is not needed: the module seeds as the plain loop does when it is built.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from plumbing import ConfigError, DatasetError, MissingExtraError, auto_threads, resolve_precision, to_plain

try:
    import lightning as L
except ImportError as e:  # the core runs without it; only these classes need it
    msg = "the Lightning trainer needs the `lightning` package: pip install 'ibot-suite[lightning]'"
    raise MissingExtraError(msg) from e

from ..checkpoints.saving import export_backbone
from ..config import TrainConfig, validate
from ..data.augment import MultiCropAugmentation, MultiCropDataset
from ..data.fastaug import FastMultiCropDataset
from ..data.folder import seed_worker
from ..models.backbones import build_backbone, mask_grid
from .loop import EpochSampler
from .step import (
    backbone_kwargs,
    build_loss,
    build_models,
    build_schedules,
    ema_pairs,
    ibot_update,
    param_groups,
)

log = logging.getLogger("pretrain")


class EpochDistributedSampler(DistributedSampler):
    """The plain loop's `EpochSampler` (one seeded permutation per epoch; global batch b is
    perm[b*GB:(b+1)*GB], rank r takes its slice) dressed as a `DistributedSampler`.

    Lightning replaces any other sampler with its own `DistributedSampler` under DDP; a subclass is
    kept as it is, and Lightning calls `set_epoch` every epoch (which also reseeds the crops and masks).
    """

    def __init__(self, dataset: MultiCropDataset, batch: int, rank: int, world: int, seed: int, num_batches: int):
        super().__init__(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch, self.num_batches = batch, num_batches

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)

    def __iter__(self):
        return iter(EpochSampler(len(self.dataset), self.batch, self.rank, self.num_replicas, self.seed, self.epoch,
                                 self.num_batches))  # fmt: skip

    def __len__(self) -> int:
        return self.num_batches * self.batch


def iters_per_epoch(n_images: int, cfg: TrainConfig, world: int) -> int:
    """Steps per epoch as in the plain loop: whole global batches, capped by `max_steps_per_epoch`."""
    gb = cfg.batch_size_per_gpu * world
    iters = n_images // gb
    if cfg.max_steps_per_epoch:
        iters = min(iters, cfg.max_steps_per_epoch)
    if iters == 0:
        raise DatasetError(f"{cfg.data_path}: {n_images} images, fewer than one global batch ({gb})")
    return iters


def _rank_world(trainer) -> tuple[int, int]:
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


class IBOTDataModule(L.LightningDataModule):
    """The plain loop's multi-crop dataset, collate and sampler: the same crops, masks and batches per
    step and rank. `iters` (steps per epoch) is known after `setup`."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        validate(cfg)
        if not cfg.data_path:
            raise DatasetError("data_path is empty: give an image folder, e.g. data_path=/data/imagenet/train")
        self.cfg = cfg
        self.dataset: MultiCropDataset | None = None
        self.iters = 0

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        cfg = self.cfg
        aug = MultiCropAugmentation(
            cfg.global_crops_scale, cfg.local_crops_scale, cfg.global_crops_number, cfg.local_crops_number,
            cfg.global_crop_size, cfg.local_crop_size, cfg.grayscale_p, cfg.invert_p, cfg.rotate_deg,
            cfg.blur_radius,
        )  # fmt: skip
        mask_args = dict(pred_ratio=cfg.pred_ratio, pred_ratio_var=cfg.pred_ratio_var, pred_shape=cfg.pred_shape)
        dataset = FastMultiCropDataset if cfg.loader == "fast" else MultiCropDataset  # as the plain loop
        self.dataset = dataset(
            cfg.data_path, aug, cfg.global_crops_number, self._grid(), mask_args, cfg.seed, cfg.pred_start_epoch
        )
        self.iters = iters_per_epoch(len(self.dataset), cfg, _rank_world(self.trainer)[1])

    def _grid(self) -> int:
        """Mask cell in pixels (the backbone's output-token grid), read from the module being trained."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        if isinstance(module, IBOTLightningModule):
            return mask_grid(module.student.backbone)
        with torch.random.fork_rng(devices=[]):  # building a backbone draws weights: keep the seeded stream
            return mask_grid(build_backbone(self.cfg.arch, **backbone_kwargs(self.cfg)[1]))

    def _device(self) -> torch.device:
        """Where the steps run: the fast loader's colour operations go there (CUDA) or into the collate."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def train_dataloader(self) -> DataLoader:
        cfg = self.cfg
        if self.dataset is None:
            self.setup("fit")
        rank, world = _rank_world(self.trainer)
        sampler = EpochDistributedSampler(self.dataset, cfg.batch_size_per_gpu, rank, world, cfg.seed, self.iters)
        # Lightning sets the epoch before each epoch's iterator, except for the first iterator of a
        # resumed run: worker processes copy the dataset, so its epoch must be right from the start
        sampler.set_epoch(self.trainer.current_epoch if self.trainer is not None else 0)
        return DataLoader(
            self.dataset, batch_size=cfg.batch_size_per_gpu, sampler=sampler, num_workers=cfg.num_workers,
            collate_fn=self.dataset.collate_fn(self._device()), drop_last=True, pin_memory=torch.cuda.is_available(),
            worker_init_fn=seed_worker,
        )  # fmt: skip


def sync_batchnorm(model: nn.Module) -> tuple[nn.Module, bool]:
    """`model` with its BatchNorm layers turned into SyncBatchNorm (same parameters and buffers), and
    whether it had any: batch statistics over all processes, as the authors do when the head has BN."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, False
    return nn.SyncBatchNorm.convert_sync_batchnorm(model), True


def _check_trainer(trainer, cfg: TrainConfig) -> None:
    """Trainer settings that would change the plain loop's step: one-line ConfigError."""
    bad = []
    if str(trainer.precision) not in ("32-true", "32"):
        bad.append(f"Trainer(precision={trainer.precision!r}): leave it at 32-true and set cfg.precision instead")
    if trainer.max_epochs is None or not 1 <= trainer.max_epochs <= cfg.epochs:
        bad.append(f"Trainer(max_epochs={trainer.max_epochs}): give max_epochs between 1 and cfg.epochs "
                   f"({cfg.epochs}), the span of the schedules")  # fmt: skip
    if bad:
        raise ConfigError("; ".join(bad))


class IBOTLightningModule(L.LightningModule):
    """iBOT student + EMA teacher + loss, trained with manual optimisation: the plain loop's step.

    Fit it with `IBOTDataModule(cfg)` (the schedules need its steps per epoch). `history` holds one
    row per step (losses averaged over processes, lr, wd, momentum), as the plain loop's log.jsonl.
    """

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        validate(cfg)
        self.cfg = cfg
        self.automatic_optimization = False  # the step sets lr/wd, clips, freezes and updates the EMA itself
        torch.manual_seed(cfg.seed)  # as the plain loop, before the models draw their weights
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.student, self.teacher = build_models(cfg)
        if cfg.compile:  # in place: parameter names stay the same
            self.student.backbone.compile()
            self.teacher.backbone.compile()
        self.loss_fn = build_loss(cfg)  # its centers are buffers: in Lightning's checkpoints
        self.history: list[dict] = []
        self.skipped = 0  # unreadable images dropped by the collate
        self._step_in_epoch = 0

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        dm = self.trainer.datamodule
        if not isinstance(dm, IBOTDataModule):
            raise ConfigError("fit IBOTLightningModule with its data module: trainer.fit(module, IBOTDataModule(cfg))")
        _check_trainer(self.trainer, self.cfg)
        self.iters = dm.iters
        self.sched = build_schedules(self.cfg, self.iters, self.trainer.world_size)
        if self.trainer.world_size > 1:
            self.student, converted = sync_batchnorm(self.student)
            self.teacher, _ = sync_batchnorm(self.teacher)
            if converted:
                log.info("batch norm layers synchronised across %d processes", self.trainer.world_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # fused: one pass over the parameters, as the plain loop
        return torch.optim.AdamW(param_groups(self.student), lr=0.0, fused=True)

    def on_fit_start(self) -> None:
        # after the move to the device and any batch-norm conversion: the tensors the step updates
        self.pairs = ema_pairs(self.student, self.teacher)
        self.params = [p for p in self.student.parameters() if p.requires_grad]
        self.precision_mode = resolve_precision(self.cfg.precision, self.device)
        if self.device.type == "cpu" or self.cfg.threads:  # the core's CPU thread rule, as the plain loop
            torch.set_num_threads(self.cfg.threads or auto_threads(self.cfg.num_workers))

    def on_train_epoch_start(self) -> None:
        self._step_in_epoch = 0

    def training_step(self, batch, batch_idx: int) -> None:
        data, skipped = batch  # collate_skip: (crops, masks) or None when no image was readable
        self.skipped += int(skipped)
        if data is None:  # as the plain loop: no step, the global step index does not move
            return None
        it = self.current_epoch * self.iters + self._step_in_epoch
        losses = self._step(data, it)
        self._step_in_epoch += 1
        row = {"step": it, "epoch": self.current_epoch, **losses, "lr": float(self.sched.lr[it]),
               "wd": float(self.sched.wd[it]), "momentum": float(self.sched.momentum[it])}  # fmt: skip
        self.history.append(row)
        # values are already means over processes: no sync_dist
        self.log_dict({f"train/{k}": float(v) for k, v in row.items() if k not in ("step", "epoch")},
                      on_step=True, on_epoch=False, prog_bar=False, batch_size=self.cfg.batch_size_per_gpu)  # fmt: skip
        return None

    def _step(self, data, it: int) -> dict:
        """One iBOT update through the plain loop's `ibot_update`, with Lightning's optimizer wrapper and
        `manual_backward` (which lets DDP reduce the gradients)."""
        return ibot_update(self, self.student, self.optimizers(), data, it, self.current_epoch, self.device,
                           self.precision_mode, backward=self.manual_backward)  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning keeps weights, optimizer, loss centers (buffers) and loop counters; the random
        # stream (drop-path) and the skipped-image count are the plain loop's other resume state
        checkpoint["ibot"] = {"rng": torch.get_rng_state(), "skipped_images": self.skipped}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("ibot")
        if state is not None:
            torch.set_rng_state(state["rng"])
            self.skipped = state["skipped_images"]

    def on_train_end(self) -> None:
        """Rank 0 exports the teacher as the plain loop does (`backbone.pth`, read by the evaluations)."""
        if not self.trainer.is_global_zero:
            return
        out = Path(self.cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"epoch": self.current_epoch, "config": to_plain(self.cfg), "trainer": "lightning"}
        export_backbone(self.teacher.backbone, out / "backbone.pth", head=self.teacher.head, meta=meta)
        log.info("exported the teacher to %s", out / "backbone.pth")
