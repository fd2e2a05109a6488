"""Run by torchrun in test_pretrain_loop: trains, then each rank saves its own student weights."""

import sys

import torch

from plumbing import parse_config
from pretrain import TrainConfig, TrainingRun

if __name__ == "__main__":
    cfg = parse_config(TrainConfig, sys.argv[1:])
    run = TrainingRun(cfg)
    run.run()
    torch.save(run.student.state_dict(), f"{cfg.output_dir}/student_rank{run.rank}.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
