"""Devices and data-parallel processes of a training run: PyTorch's own ``torch.distributed`` (DDP), started by
``torchrun`` (NCCL between GPUs, gloo between CPU processes).

A run is distributed when ``torchrun`` started it (``WORLD_SIZE`` > 1 in the environment): every process trains
the same model on its shard of each global batch and DDP averages the gradients. ``lite-deploy train --device
0,1,2,3`` starts ``torchrun`` itself (:func:`launch`); multi-node runs use ``torchrun``'s rendezvous options
directly (see the README's training section).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands among the run's processes.

    Attributes:
        rank: global rank (0 validates, keeps the EMA and writes files).
        local_rank: rank on this machine (selects the GPU).
        world_size: processes in the run (1 when not distributed).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        """Whether DDP is used (more than one process)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0


def context_from_env() -> DistContext:
    """The process's place as ``torchrun`` describes it in ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``."""
    return DistContext(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
                       int(os.environ.get("WORLD_SIZE", "1")))


def parse_devices(spec: Optional[str]) -> Optional[List[int]]:
    """CUDA device indices of a ``--device`` value: ``"0"`` -> ``[0]``, ``"0,1"`` -> ``[0, 1]``; None for
    ``cpu``, ``cuda``, ``cuda:N`` or no value.

    Raises:
        ConfigError: a list holds something other than distinct non-negative integers.
    """
    if spec is None or spec == "cpu" or spec.startswith("cuda"):
        return None
    parts = [p.strip() for p in spec.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(f"--device {spec!r}: use cpu, one GPU index (0) or distinct GPU indices (0,1,2,3)")
    return [int(p) for p in parts]


def resolve_device(spec: Optional[str], ctx: DistContext) -> torch.device:
    """The torch device of this process for a ``--device`` value.

    ``None``: this process's CUDA GPU (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU. ``"0,1"`` under
    ``torchrun``: the list's entry for this process's local rank.

    Raises:
        ConfigError: a GPU is asked for but torch sees none, or a list of GPUs is given outside ``torchrun`` or
            does not match the processes per node.
    """
    devices = parse_devices(spec)
    if spec is None:
        return torch.device(f"cuda:{ctx.local_rank}" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec} asks for CUDA but this torch sees no CUDA GPU; use --device cpu")
    if devices is None:  # cuda, cuda:N
        return torch.device(spec)
    if len(devices) == 1 and not ctx.distributed:
        return torch.device(f"cuda:{devices[0]}")
    if not ctx.distributed:
        raise ConfigError(f"--device {spec} trains on {len(devices)} GPUs: start it with `lite-deploy train`, "
                          f"which launches torchrun, or with torchrun --nproc_per_node {len(devices)}")
    if ctx.local_rank >= len(devices):
        raise ConfigError(f"--device {spec} lists {len(devices)} GPUs but torchrun started local rank "
                          f"{ctx.local_rank}; give --nproc_per_node {len(devices)}")
    return torch.device(f"cuda:{devices[ctx.local_rank]}")


def init_process_group(ctx: DistContext, device: torch.device) -> None:
    """Join the run's process group (NCCL on CUDA, gloo on CPU) from ``torchrun``'s environment."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)


def shutdown() -> None:
    """Leave the process group, if one was joined (also after an error or Ctrl-C)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(argv: Sequence[str], devices: Sequence[int]) -> int:
    """Run ``lite-deploy train argv`` as one ``torchrun`` process per GPU of ``devices`` on this machine.

    ``CUDA_VISIBLE_DEVICES`` is set to ``devices`` and each process gets ``--device 0,1,...`` (their indices among
    the visible GPUs); ``torchrun --standalone`` picks a free rendezvous port.

    Returns:
        0 when every process finished, else 1 (torchrun reports the failing rank and its traceback).

    Raises:
        ConfigError: torch sees no CUDA GPU, or fewer than ``devices`` asks for.
    """
    from torch.distributed.run import main as torchrun

    spec = ",".join(str(d) for d in devices)
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec} asks for CUDA but this torch sees no CUDA GPU; use --device cpu")
    if max(devices) >= torch.cuda.device_count():
        raise ConfigError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA GPUs "
                          f"(0-{torch.cuda.device_count() - 1})")
    os.environ["CUDA_VISIBLE_DEVICES"] = spec
    local = ",".join(str(i) for i in range(len(devices)))
    try:
        torchrun(["--standalone", f"--nproc_per_node={len(devices)}", "-m", "lite_deploy", "train",
                  *argv, "--device", local])
    except Exception as exc:  # torchrun raises ChildFailedError after printing the failure
        print(f"error: distributed training failed ({exc.__class__.__name__}); see the failing rank's output above",
              file=sys.stderr)
        return 1
    return 0
