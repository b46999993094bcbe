"""Data-parallel scans under ``torchrun``: shards, gradient averaging and per-sample state sync.

``torchrun --nproc-per-node N -m noiseaudit.cli scan ...`` starts N processes; each loads the
same dataset, builds the same model (same seed) and trains on its shard of every epoch's
permutation (``order[rank::world]``, so the global batch is the same as in one process), with
gradients averaged by :class:`torch.nn.parallel.DistributedDataParallel`. The per-sample rates
stay in step: the class reference of every batch is averaged over the ranks, and because every
sample is visited exactly once per epoch, by one rank, each rank's per-epoch change of the
log-rates is summed over the ranks at the epoch end. Signal sums are summed at the end; rank 0
writes the report. NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from noiseaudit.errors import UsageError


@dataclass
class Distributed:
    """This process's place in a torchrun job."""

    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        return order[self.rank::self.world]

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.sum_(tensor).div_(self.world)

    def begin_epoch(self, log_rates: list[torch.Tensor]) -> None:
        self._epoch_start = [t.clone() for t in log_rates]

    def end_epoch(self, log_rates: list[torch.Tensor], loss_total: torch.Tensor) -> None:
        """Sum the ranks' epoch losses and their per-epoch changes of the log-rates."""
        self.sum_(loss_total)
        for current, start in zip(log_rates, self._epoch_start):
            current.copy_(start + self.sum_(current - start))

    def end_training(self, sums: list[torch.Tensor]) -> None:
        for tensor in sums:
            self.sum_(tensor)


def job() -> tuple[int, int]:
    """The torchrun job this process is in, as (WORLD_SIZE, RANK) from the environment; (1, 0) alone. A RANK
    without a WORLD_SIZE above 1 (left in a CI runner's environment) is no job: rank 0 of 1."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (world, int(os.environ.get("RANK", "0"))) if world > 1 else (1, 0)
    except ValueError:
        raise UsageError(f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} in the "
                         "environment are not whole numbers (torchrun sets them; unset them to run alone)") from None


def from_environment(device: torch.device) -> Distributed | None:
    """Join the torchrun job described by the environment (:func:`job`), or None when not under torchrun."""
    world, _ = job()
    if world <= 1:
        return None
    if not dist.is_initialized():
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:  # WORLD_SIZE and RANK left in a shell, not a torchrun job: a usage error, not a crash
            raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} in the environment but no "
                             f"{' or '.join(missing)}: not a torchrun job (torchrun sets them all); unset WORLD_SIZE "
                             "and RANK to run alone, or start the scan with torchrun")
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ and device.index is None:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


class FeaturesAndLogits(nn.Module):
    """``model`` as one module returning (features, logits), so that DDP sees the whole forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model.forward_features(x)
        return feats, self.model.head(feats)
