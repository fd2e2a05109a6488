"""Lightning runs for test_lightning; run by torchrun it trains the plain loop and then the Lightning
module in the same process group, and each rank saves both runs' weights and per-step losses."""

import sys
from dataclasses import replace
from pathlib import Path

import torch

from plumbing import parse_config
from pretrain import IBOTDataModule, IBOTLightningModule, TrainConfig, TrainingRun


def fit_lightning(
    cfg: TrainConfig, world: int = 1, ckpt_path: str | None = None, **trainer_kw
) -> tuple[IBOTLightningModule, object]:
    """Fit the Lightning module on CPU with `world` processes (ddp on gloo when > 1); quiet, no files
    but the exported teacher."""
    import lightning

    kw = dict(accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto", max_epochs=cfg.epochs,
              logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
              default_root_dir=cfg.output_dir, num_sanity_val_steps=0)  # fmt: skip
    trainer = lightning.Trainer(**{**kw, **trainer_kw})
    module = IBOTLightningModule(cfg)
    trainer.fit(module, IBOTDataModule(cfg), ckpt_path=ckpt_path)
    return module, trainer


def weights(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


if __name__ == "__main__":
    cfg = parse_config(TrainConfig, sys.argv[1:])
    out = Path(cfg.output_dir)
    plain = TrainingRun(replace(cfg, output_dir=str(out / "plain")))
    plain.run()  # joins torchrun's gloo group; Lightning then uses the same group
    module, trainer = fit_lightning(replace(cfg, output_dir=str(out / "lightning")), world=2)
    saved = {"plain": {"student": weights(plain.student), "teacher": weights(plain.teacher),
                       "loss": weights(plain.loss_fn)},
             "lightning": {"student": weights(module.student), "teacher": weights(module.teacher),
                           "loss": weights(module.loss_fn)},
             "history": module.history}  # fmt: skip
    torch.save(saved, out / f"rank{trainer.global_rank}.pt")
    torch.distributed.barrier()  # gloo: every rank must arrive before the group goes
    torch.distributed.destroy_process_group()
