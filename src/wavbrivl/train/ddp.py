"""Data-parallel training: one rank of a ``torchrun`` job, and the collective operations it needs.

:class:`Collective` is what the training loop asks of a process group; :class:`SingleProcess`
(one process: every operation the identity) and :class:`TorchCollective` (a ``torch.distributed``
group) provide it.

``torchrun --standalone --nproc_per_node N -m wavbrivl.train.ddp JOB.json`` starts N ranks;
each reads the job spec (the keyword arguments of
:func:`wavbrivl.train.stage.run_training`, without ``log``), joins the process group (nccl
on CUDA, gloo on CPU) and runs the ordinary training loop with a :class:`TorchCollective`.
:func:`wavbrivl.train.stage.launch_training` writes the spec and starts torchrun.

How one step stays the single-process step on the same global batch:

- ``batch_size`` is the global batch; every rank decodes its contiguous slice of it
  (:class:`wavbrivl.train.data.TrainData` with ``rank`` / ``world_size``).
- The step's outputs are gathered (:meth:`TorchCollective.gather_outputs`): every rank holds
  the whole batch's queries and keys, its own rows still attached to the graph, so every rank
  computes the global loss (in-batch negatives of the whole batch) and enqueues the same keys
  in the same order: the MoCo queues stay identical, like MoCo's ``concat_all_gather``.
- Backward then gives each rank its rows' share of the global gradient; the shares are summed
  over ranks (:meth:`TorchCollective.sum_gradients`), so every rank applies the same update and
  the momentum copies, moved from identical weights, stay identical too.
- Gradients are reduced once per optimizer step by hand, not by ``DistributedDataParallel``:
  the loss is not a mean of per-rank losses (the negatives cross ranks), the model's own
  methods (``enqueue``, ``momentum_update``, ``embed_audio``) stay callable, and gradient
  accumulation needs no ``no_sync``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

#: Long enough for the main rank's validation while the others wait at a barrier.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=60)


class Collective(Protocol):
    """What :func:`train` needs to run as one rank of a data-parallel job."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool: ...

    def gather_outputs(self, out: Any) -> Any:
        """The global batch's outputs; this rank's rows keep their gradient."""

    def all_true(self, flag: bool) -> bool: ...

    def any_true(self, flag: bool) -> bool: ...

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None: ...

    def sum_counts(self, counts: list[int]) -> list[int]: ...

    def broadcast_model(self, model: torch.nn.Module) -> None: ...

    def barrier(self) -> None: ...

    def gather_objects(self, obj: Any) -> list[Any]: ...


class SingleProcess:
    """The :class:`Collective` of a run with one process: every operation is the identity."""

    rank, world_size, is_main = 0, 1, True

    def gather_outputs(self, out: Any) -> Any:
        return out

    def all_true(self, flag: bool) -> bool:
        return flag

    def any_true(self, flag: bool) -> bool:
        return flag

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        pass

    def sum_counts(self, counts: list[int]) -> list[int]:
        return counts

    def broadcast_model(self, model: torch.nn.Module) -> None:
        pass

    def barrier(self) -> None:
        pass

    def gather_objects(self, obj: Any) -> list[Any]:
        return [obj]


class TorchCollective:
    """:class:`Collective` over an initialised ``torch.distributed`` group."""

    def __init__(self, device: torch.device):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        # nccl moves CUDA tensors only; gloo CPU tensors.
        self.device = device if dist.get_backend() == "nccl" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _all_reduce(self, values: list[float], op: dist.ReduceOp) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def all_true(self, flag: bool) -> bool:
        return bool(self._all_reduce([float(flag)], dist.ReduceOp.MIN)[0])

    def any_true(self, flag: bool) -> bool:
        return bool(self._all_reduce([float(flag)], dist.ReduceOp.MAX)[0])

    def sum_counts(self, counts: list[int]) -> list[int]:
        return [round(c) for c in self._all_reduce([float(c) for c in counts], dist.ReduceOp.SUM)]

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """(B_rank, ...) on every rank -> (sum of B_rank, ...) in rank order; the local rows
        are ``x`` itself (gradient kept), the others are copies (no gradient)."""
        sizes = torch.tensor([x.shape[0]], device=x.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(self.world_size)]
        dist.all_gather(all_sizes, sizes)
        n = [int(s) for s in all_sizes]
        # all_gather wants equal shapes: pad every part to the largest, then cut.
        padded = torch.zeros((max(n), *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: x.shape[0]] = x.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        pieces = [x if r == self.rank else parts[r][: n[r]] for r in range(self.world_size)]
        return torch.cat(pieces)

    def gather_outputs(self, out: Any) -> Any:
        """Every tensor field of a dataclass of (B_rank, D) outputs, gathered by rows."""
        return dataclasses.replace(
            out,
            **{
                f.name: self.gather_rows(getattr(out, f.name))
                for f in dataclasses.fields(out)
                if torch.is_tensor(getattr(out, f.name))
            },
        )

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the ranks (one flat all-reduce per dtype)."""
        with_grad = [p for p in params if p.grad is not None]
        for dtype in {p.grad.dtype for p in with_grad}:
            group = [p for p in with_grad if p.grad.dtype == dtype]
            flat = torch.cat([p.grad.reshape(-1) for p in group])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for p in group:
                p.grad.copy_(flat[offset : offset + p.grad.numel()].view_as(p.grad))
                offset += p.grad.numel()

    @torch.no_grad()
    def broadcast_model(self, model: torch.nn.Module) -> None:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        dist.barrier()

    def gather_objects(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def rank_log(rank: int):
    """Rank 0 logs every line to stderr; the others only their warnings (dropped clips)."""

    def log(message: str) -> None:
        if rank == 0 or message.startswith("WARNING"):
            prefix = "" if rank == 0 else f"[rank {rank}] "
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"[{stamp}] {prefix}{message}", file=sys.stderr, flush=True)

    return log


def read_job(path: str | os.PathLike) -> dict[str, Any]:
    """The job spec written by :func:`wavbrivl.train.stage.write_job`."""
    try:
        job = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable training job spec ({exc})") from exc
    if not isinstance(job, dict):
        raise ValueError(f"{path}: a training job spec is a JSON object")
    return job


def init_process_group(device_name: str) -> torch.device:
    """Join torchrun's group; the device this rank trains on (its own GPU, or the CPU)."""
    from wavbrivl.devices import pick_device

    device = pick_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)
    return device


def main(argv: list[str] | None = None) -> int:
    """Entry point of one rank: ``python -m wavbrivl.train.ddp JOB.json`` under torchrun."""
    from wavbrivl.train.stage import run_training

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: torchrun ... -m wavbrivl.train.ddp JOB.json", file=sys.stderr)
        return 2
    job = read_job(argv[0])
    for key in ("WORLD_SIZE", "RANK"):
        if key not in os.environ:
            print(f"{key} is not set: start this module with torchrun", file=sys.stderr)
            return 2
    device = init_process_group(job.get("train_block", {}).get("device", "auto"))
    collective = TorchCollective(device)
    try:
        run_training(**job, log=rank_log(collective.rank), collective=collective, device=device)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
