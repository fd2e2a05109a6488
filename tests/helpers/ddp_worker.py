"""Run by torchrun in test_pretrain_loop: trains, then each rank saves its own student weights."""

import sys

import torch

from pretrain import TrainConfig, parse_config
from pretrain.loop import Run

if __name__ == "__main__":
    cfg = parse_config(TrainConfig, sys.argv[1:])
    run = Run(cfg)
    run.run()
    torch.save(run.student.state_dict(), f"{cfg.output_dir}/student_rank{run.rank}.pt")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
