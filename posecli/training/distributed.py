"""Multi-process training under torchrun: process group, rank gates, reductions.

``torchrun --nproc-per-node N -m posecli train ...`` starts N processes with RANK,
LOCAL_RANK and WORLD_SIZE set; ``setup()`` joins them in a process group (NCCL on
CUDA, gloo on CPU). A plain ``posecli train`` has no such variables: one process,
no group, and every function here is a no-op or the identity.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger("posecli")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def main(self) -> bool:
        return self.rank == 0


_slow_group = None  # gloo, long timeout: waiting for rank 0 to decode the data


def launched() -> bool:
    """Started by torchrun (or another launcher that sets the env:// variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; returns the ranks and this
    process's device (cuda:LOCAL_RANK on CUDA)."""
    global _slow_group
    if not launched():
        return Dist(), device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kw = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, **kw)
        _slow_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=12))
    return Dist(rank, local, world), device


def slow_group():
    """The gloo group with the long timeout (None outside torchrun: the default group)."""
    return _slow_group


def teardown() -> None:
    global _slow_group
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _slow_group = None


@contextlib.contextmanager
def main_first(d: Dist):
    """Rank 0 runs the block first (e.g. decodes the data into the cache); the others
    wait for it, then run it (and find the cache)."""
    if d.enabled and not d.main:
        dist.barrier(group=_slow_group)
    try:
        yield
    finally:
        if d.enabled and d.main:
            dist.barrier(group=_slow_group)


def check_batch(batch_size: int, d: Dist) -> None:
    """The global batch splits evenly over the processes."""
    from ..errors import UsageError

    if batch_size % d.world:
        raise UsageError(f"--batch-size {batch_size}: must be a multiple of the {d.world} processes")


def main_checks(d: Dist, check) -> None:
    """Run ``check()`` on rank 0; if it raises a user error, every rank raises it (the
    others would otherwise wait for rank 0 or fail with a broken connection)."""
    from ..errors import PoseCliError

    err = None
    if d.main:
        try:
            check()
        except PoseCliError as e:
            err = e
    if d.enabled:
        box = [None if err is None else (str(err), int(err.exit_code))]
        dist.broadcast_object_list(box, src=0)
        if box[0] is not None and err is None:
            err = PoseCliError(box[0][0])
            err.exit_code = box[0][1]
    if err is not None:
        raise err


def peer_failure(e: BaseException, d: Dist) -> bool:
    """A collective that failed because another process stopped (its own error says why)."""
    text = str(e)
    return d.enabled and isinstance(e, RuntimeError) and any(
        s in text for s in ("Connection closed by peer", "remote worker", "Connection reset by peer", "NCCL error"))


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier(group=_slow_group)


def mean(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean over processes of a tensor (a copy; the identity in one process)."""
    if not d.enabled:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / d.world


def any_set(flag: bool, d: Dist, device: torch.device) -> bool:
    """True on every rank when any rank's flag is set (the stop signal)."""
    if not d.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sync_latent_grads(table: torch.nn.Parameter, idx: torch.Tensor, d: Dist) -> None:
    """Make a per-image table's gradient that of the global batch without all-reducing
    the table: gather the rows this step touched (their indices and gradients) from
    every rank and scatter them into each rank's copy, scaled like DDP's mean.

    Every rank then applies the same update to the same table, so the tables never
    diverge and a checkpoint needs no gather."""
    if not d.enabled or table.grad is None:
        return
    rows = table.grad[idx]  # (B_local, D)
    all_idx = [torch.empty_like(idx) for _ in range(d.world)]
    all_rows = [torch.empty_like(rows) for _ in range(d.world)]
    dist.all_gather(all_idx, idx.contiguous())
    dist.all_gather(all_rows, rows.contiguous())
    table.grad.zero_()
    table.grad.index_add_(0, torch.cat(all_idx), torch.cat(all_rows).div_(d.world))


def broadcast_state(modules, d: Dist) -> None:
    """Every rank takes rank 0's parameters and buffers (after a start computed on each rank,
    such as ``train --init``'s tables: GPUs may differ in the last bit)."""
    if not d.enabled:
        return
    with torch.no_grad():
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                dist.broadcast(t.data, src=0)


def wrap(objective: torch.nn.Module, trained: list[torch.nn.Parameter], d: Dist):
    """DistributedDataParallel over exactly the parameters a phase trains (the rest of
    the objective, latent tables included, is left out of the all-reduce)."""
    if not d.enabled:
        return objective
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = {id(p) for p in trained}
    ignore = [n for n, p in objective.named_parameters() if id(p) not in ids]
    ignore += [n for n, _ in objective.named_buffers()]  # deterministic; never broadcast
    DDP._set_params_and_buffers_to_ignore_for_model(objective, ignore)
    return DDP(objective)  # ignored buffers are neither broadcast at start nor synced
