"""The pre-training loop: data, epochs, logging, atomic checkpoints, exact resume, export.

`TrainingRun(cfg).run()` (what `pretrain.train` calls) runs single-process or under `torchrun` (DDP;
gloo on CPU). A checkpoint is written at every epoch end (and every `checkpoint_every_steps` steps, and
on SIGTERM); `resume=true` restarts from it and replays exactly the same crops, masks and random draws.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from plumbing import (
    CheckpointError,
    DatasetError,
    RunIdentity,
    RunLock,
    describe_files,
    init_distributed,
    open_run_folder,
    out_of_time,
    read_identity,
    resolve_precision,
    save_config,
    to_plain,
    upgrade_identity,
    write_identity,
    write_results,
)

from ..checkpoints.loading import FORMAT_TRAINING, safe_load
from ..checkpoints.saving import atomic_save, export_backbone
from ..config import TrainConfig, validate
from ..data.augment import MultiCropAugmentation, MultiCropDataset
from ..data.fastaug import FastMultiCropDataset
from ..data.folder import seed_worker
from ..models.backbones import mask_grid
from .step import (
    build_loss,
    build_models,
    build_schedules,
    ema_pairs,
    ibot_update,
    param_groups,
)

log = logging.getLogger("pretrain")
# Keys a resumed run may change: bookkeeping, and a longer or shorter schedule (logged when changed).
# (beside runfolder.BOOKKEEPING) the loader: the two draw the same crops and masks, only pixel rounding differs
RESUME_COMPATIBLE = frozenset({"saveckp_freq", "export_every", "checkpoint_every_steps", "compile", "loader"})


class EpochSampler(Sampler):
    """One seeded permutation per epoch; global batch b = perm[b*GB:(b+1)*GB], rank r takes its slice.

    So the union of the ranks' batches equals the single-process batch, and a resumed epoch can
    start at any batch.
    """

    def __init__(self, n, batch, rank, world, seed, epoch, num_batches, start_batch=0):
        self.n, self.batch, self.rank, self.world = n, batch, rank, world
        self.seed, self.epoch, self.num_batches, self.start = seed, epoch, num_batches, start_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        gb = self.batch * self.world
        for b in range(self.start, self.num_batches):
            yield from perm[b * gb + self.rank * self.batch : b * gb + (self.rank + 1) * self.batch]

    def __len__(self):
        return (self.num_batches - self.start) * self.batch


class TrainingRun:
    """Everything one training run holds; methods are the loop's named pieces."""

    def __init__(self, cfg: TrainConfig, monitor: Monitor | None = None):
        validate(cfg)
        self.cfg = cfg
        self.rank, self.world, self.device = init_distributed(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.out = Path(cfg.output_dir)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        if not cfg.data_path:
            raise DatasetError("data_path is empty: give an image folder, e.g. data_path=/data/imagenet/train")
        aug = MultiCropAugmentation(
            cfg.global_crops_scale, cfg.local_crops_scale, cfg.global_crops_number, cfg.local_crops_number,
            cfg.global_crop_size, cfg.local_crop_size, cfg.grayscale_p, cfg.invert_p, cfg.rotate_deg,
            cfg.blur_radius,
        )  # fmt: skip
        self.student, self.teacher = build_models(cfg)
        mask_args = dict(pred_ratio=cfg.pred_ratio, pred_ratio_var=cfg.pred_ratio_var, pred_shape=cfg.pred_shape)
        grid = mask_grid(self.student.backbone)  # masks on the output-token grid (ViT: patch, Swin: 32 px)
        dataset = FastMultiCropDataset if cfg.loader == "fast" else MultiCropDataset
        self.dataset = dataset(
            cfg.data_path, aug, cfg.global_crops_number, grid, mask_args, cfg.seed, cfg.pred_start_epoch
        )
        gb = cfg.batch_size_per_gpu * self.world
        self.iters = len(self.dataset) // gb
        if cfg.max_steps_per_epoch:
            self.iters = min(self.iters, cfg.max_steps_per_epoch)
        if self.iters == 0:
            raise DatasetError(f"{cfg.data_path}: {len(self.dataset)} images, fewer than one global batch ({gb})")
        self.student, self.teacher = self.student.to(self.device), self.teacher.to(self.device)
        if cfg.compile:  # in place: parameter names and checkpoints stay the same
            self.student.backbone.compile()
            self.teacher.backbone.compile()
        self.loss_fn = build_loss(cfg).to(self.device)
        # fused on CPU too: one pass over the parameters (ViT-S/16 + head on 2 CPU threads: 19 ms vs 86)
        self.optimizer = torch.optim.AdamW(param_groups(self.student), lr=0.0, fused=True)
        self.sched = build_schedules(cfg, self.iters, self.world)
        self.params = [p for p in self.student.parameters() if p.requires_grad]
        self.epoch, self.step = 0, 0  # next step to run
        self.stop_requested, self.stop_reason = False, ""
        self.skipped = 0
        self.knn = monitor

    # ---------------------------------------------------------------- checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pth"

    def state(self) -> dict:
        plain = lambda m: {k: v.detach().cpu() for k, v in m.state_dict().items()}  # noqa: E731
        return {
            "format": FORMAT_TRAINING,
            "epoch": self.epoch,
            "step": self.step,
            "student": plain(self.student),
            "teacher": plain(self.teacher),
            "backbone_kwargs": {
                "student": self.student.backbone.arch_kwargs(),
                "teacher": self.teacher.backbone.arch_kwargs(),
            },
            "head_kwargs": {"student": dict(self.student.head.kwargs), "teacher": dict(self.teacher.head.kwargs)},
            "arch": self.cfg.arch,
            "optimizer": self.optimizer.state_dict(),
            "ibot_loss": plain(self.loss_fn),
            "config": to_plain(self.cfg),
            "rng": torch.get_rng_state(),
            "skipped_images": self.skipped,
        }

    def save(self) -> None:
        if self.rank != 0:
            return
        atomic_save(self.state(), self.ckpt_path)
        f = self.cfg.saveckp_freq
        if self.step == 0 and f and self.epoch % f == 0:
            shutil.copyfile(self.ckpt_path, self.out / f"checkpoint{self.epoch:04d}.pth")

    def restore(self) -> bool:
        if not (self.cfg.resume and self.ckpt_path.is_file()):
            return False
        state = safe_load(self.ckpt_path, map_location="cpu")
        try:
            self.student.load_state_dict(state["student"])
            self.teacher.load_state_dict(state["teacher"])
        except RuntimeError as e:  # a checkpoint of other shapes (written without an identity file)
            raise CheckpointError(f"{self.ckpt_path} does not fit this configuration: {str(e).splitlines()[0]}; "
                                  f"choose a new output_dir or give resume=false") from None  # fmt: skip
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss_fn.load_state_dict(state["ibot_loss"])
        torch.set_rng_state(state["rng"])
        self.epoch, self.step, self.skipped = state["epoch"], state["step"], state.get("skipped_images", 0)
        log.info("resumed from %s at epoch %d step %d", self.ckpt_path, self.epoch, self.step)
        return True

    def export(self, final: bool) -> Path | None:
        if self.rank != 0:
            return None
        meta = {"epoch": self.epoch, "minutes": (time.time() - self.started) / 60, "config": to_plain(self.cfg)}
        name = "backbone.pth" if final else f"backbone_ep{self.epoch:04d}.pth"
        export_backbone(self.teacher.backbone, self.out / name, head=self.teacher.head, meta=meta)
        return self.out / name

    # ---------------------------------------------------------------- one step
    def train_step(self, model, batch, it: int) -> dict:
        return ibot_update(self, model, self.optimizer, batch, it, self.epoch, self.device, self.precision)

    def loader(self) -> DataLoader:
        cfg = self.cfg
        self.dataset.set_epoch(self.epoch)
        sampler = EpochSampler(len(self.dataset), cfg.batch_size_per_gpu, self.rank, self.world, cfg.seed,
                               self.epoch, self.iters, self.step)  # fmt: skip
        return DataLoader(
            self.dataset, batch_size=cfg.batch_size_per_gpu, sampler=sampler, num_workers=cfg.num_workers,
            collate_fn=self.dataset.collate_fn(self.device), drop_last=True, pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init,
        )  # fmt: skip

    # ---------------------------------------------------------------- the loop
    def prepare_folder(self) -> None:
        """Rank 0, before anything is written: leftovers of a killed write go; a checkpoint of another
        configuration or dataset (its files' fingerprint, `plumbing.describe_files`) stops the start
        (resume=true) or is moved aside (resume=false)."""
        cfg = self.cfg
        files = [p for p, _ in self.dataset.images.samples]
        identity = RunIdentity(dataset=describe_files(cfg.data_path, files), config=to_plain(cfg))
        if self.ckpt_path.is_file() and read_identity(self.out) is None:  # a run written before identities
            old = safe_load(self.ckpt_path, map_location="cpu").get("config", {})
            write_identity(self.out, RunIdentity(dataset=identity.dataset, config=old))
        upgrade_identity(self.out, identity.dataset)  # a run recorded before fingerprints
        open_run_folder(self.out, identity, cfg.resume, self.ckpt_path.is_file(), RESUME_COMPATIBLE,
                        what="pre-training run")  # fmt: skip
        save_config(cfg, self.out)

    def run(self) -> dict:
        lock = RunLock(self.out) if self.rank == 0 else nullcontext()
        with lock:
            if self.rank == 0:
                self.prepare_folder()
            return self._run()

    def _run(self) -> dict:
        cfg = self.cfg
        self.restore()
        model = DistributedDataParallel(self.student) if self.world > 1 else self.student
        self.pairs = ema_pairs(self.student, self.teacher)
        logger = StepLogger(self.out, enabled=self.rank == 0, resume_step=self.epoch * self.iters + self.step)
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        start, last = time.time(), {}
        self.started = start
        try:
            while self.epoch < cfg.epochs and not self.stop_requested:
                bar = tqdm(self.loader(), total=self.iters - self.step, disable=self.rank != 0,
                           desc=f"epoch {self.epoch}/{cfg.epochs}", dynamic_ncols=True)  # fmt: skip
                stepped = self.step > 0  # a resumed epoch has stepped already
                for batch, skipped in bar:
                    self.skipped += skipped
                    it = self.epoch * self.iters + self.step
                    if batch is None:
                        continue
                    stepped = True
                    last = self.train_step(model, batch, it)
                    row = {"step": it, "epoch": self.epoch, **last, "lr": float(self.sched.lr[it]),
                           "wd": float(self.sched.wd[it]), "momentum": float(self.sched.momentum[it]),
                           "skipped_images": self.skipped}  # fmt: skip
                    logger.log(row, bar, every=cfg.log_every)
                    self.step += 1
                    # every rank gets the same answer (plumbing.out_of_time), so all stop after the same step
                    if out_of_time(start, cfg.time_limit_min, self.device) and not self.stop_requested:
                        self.stop_requested, self.stop_reason = True, "time_limit"
                    every = cfg.checkpoint_every_steps
                    if self.stop_requested or (every and self.step % every == 0):
                        self.save()
                    if self.stop_requested:
                        break
                if self.stop_requested:
                    break
                if not stepped:
                    self._no_step()
                self.epoch, self.step = self.epoch + 1, 0
                self.save()
                self.monitor(logger)
                if cfg.export_every and self.epoch % cfg.export_every == 0:
                    self.export(final=False)
            exported = self.export(final=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
            logger.close()
        results = {"epoch": self.epoch, "step": self.step, "completed": self.epoch >= cfg.epochs, "last": last,
                   "skipped_images": self.skipped, "backbone": str(exported) if exported else None,
                   "minutes": (time.time() - start) / 60}  # fmt: skip
        if self.stop_requested and not results["completed"]:
            results["stopped"] = self.stop_reason
        if self.rank == 0:
            write_results(
                results, self.out, prog="pretrain", cfg=cfg, precision=self.precision, device=str(self.device)
            )
        return results

    def monitor(self, logger: StepLogger) -> None:
        """The online monitor on the teacher every `monitor.every` epochs (all ranks run it, rank 0 logs)."""
        if self.knn is None or self.epoch % max(int(self.knn.every), 1):
            return
        top1 = self.knn(self.teacher.backbone)
        log.info("epoch %d: online k-NN top-1 %.2f", self.epoch, top1)
        logger.log_knn(self.epoch, top1)

    def _on_sigterm(self, signum, frame) -> None:
        log.warning("SIGTERM: checkpointing after the current step")
        self.stop_requested, self.stop_reason = True, "SIGTERM"

    def _no_step(self) -> None:
        """An epoch that ended without one optimisation step: every batch was unreadable."""
        raise DatasetError(
            f"no optimisation step in epoch {self.epoch}: every image of {self.cfg.data_path} read so far was "
            f"unreadable ({self.skipped} skipped of {len(self.dataset)} images); nothing was exported"
        )


def _worker_init(worker_id: int) -> None:
    """Workers leave SIGTERM to the main process, which checkpoints and then ends them."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed_worker(worker_id)


class StepLogger:
    """JSON lines (every step), TensorBoard scalars and the progress-bar postfix (rank 0 only)."""

    def __init__(self, out: Path, enabled: bool, resume_step: int):
        self.enabled, self.out = enabled, out
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        path = out / "log.jsonl"
        if path.exists():  # drop lines of steps that the resumed run will replay
            kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] < resume_step]
            path.write_text("".join(ln + "\n" for ln in kept))
        self.file = path.open("a")
        self.tb = SummaryWriter(str(out / "tensorboard"))

    def log(self, row: dict, bar, every: int) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if row["step"] % max(every, 1) == 0:
            for k in ("loss", "cls", "patch", "lr", "wd", "momentum"):
                self.tb.add_scalar(f"train/{k}", row[k], row["step"])
        bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}", wd=f"{row['wd']:.3f}",
                        m=f"{row['momentum']:.4f}")  # fmt: skip

    def log_knn(self, epoch: int, top1: float) -> None:
        if self.enabled:
            with (self.out / "knn.jsonl").open("a") as f:
                f.write(json.dumps({"epoch": epoch, "knn_top1": top1}) + "\n")
            self.tb.add_scalar("monitor/knn_top1", top1, epoch)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()


class Monitor(Protocol):
    """An online evaluation of the teacher backbone during training, e.g. `evalkit.KNNMonitor`."""

    every: int  # epochs between calls

    def __call__(self, backbone: nn.Module) -> float: ...  # k-NN top-1 (%)
