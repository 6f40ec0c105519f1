"""The contract between a method and the loop: data, batches, phases, stages.

A method (posecli/training/<name>.py) builds its networks, says which of them are
per-image latent tables, and lists its stages. A stage runs for some epochs on one
kind of batch; each step it runs its phases in order. A phase is an objective (an
``nn.Module`` whose ``forward(batch)`` returns a dict of loss terms, ``"loss"`` the one
to minimise), the optimiser over exactly the parameters it trains, how often it runs
and its learning-rate schedule. The loop (loop.py) does everything else.

Objectives are modules so that the loop can wrap each one in DistributedDataParallel
and compile it: gradients are all-reduced only for what runs through a wrapper's own
``forward``, so an objective must compute its loss there, never through methods
called on the side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal

import torch
from torch import nn

from ..errors import UsageError

Schedule = Literal["cosine", "linear", "constant"]


@dataclass
class TrainData:
    """The decoded training set, resident on the device."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    labels: torch.Tensor  # (N,) int64 identity index
    n_identities: int
    key: str  # identifies the decoded data (for resume checks)
    clips: torch.Tensor | None = None  # (N,) int64 video clip index, -1 for stills
    frames: torch.Tensor | None = None  # (N,) int64 frame index within the clip, -1 for stills
    mining: object | None = None  # set by a method that draws triplets (training/mining.py Mining)

    def __post_init__(self):
        n = len(self.images)
        if self.clips is None:
            self.clips = torch.full((n,), -1, dtype=torch.int64, device=self.labels.device)
        if self.frames is None:
            self.frames = torch.full((n,), -1, dtype=torch.int64, device=self.labels.device)

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Batch:
    """One process's share of a global batch, built by the loop."""

    idx: torch.Tensor  # (B,) indices of the anchor images
    x: torch.Tensor  # (B, 3, S, S) float in [0, 1]
    labels: torch.Tensor  # (B,) identity index
    gen: torch.Generator  # seeded by (seed, stage, step): the same on every process
    rank: int = 0
    world: int = 1
    step: int = 0  # step within the stage
    partner_idx: torch.Tensor | None = None  # (B,) same identity (same clip for video), never idx itself if avoidable
    partner: torch.Tensor | None = None  # (B, 3, S, S) float
    other_idx: torch.Tensor | None = None  # (B,) triplets: an image of another clip, chosen by the method
    other: torch.Tensor | None = None  # (B, 3, S, S) float
    stash: dict = field(default_factory=dict)  # what one phase hands to the next within a step

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal noise (B, *shape), drawn for the whole global batch and sliced, so
        that the noise an image gets does not depend on the number of processes."""
        full = torch.randn((len(self.idx) * self.world, *shape), generator=self.gen, device=self.gen.device)
        return full[self.rank :: self.world].to(self.x.device)

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) noise (B, *shape), drawn like ``randn``."""
        full = torch.rand((len(self.idx) * self.world, *shape), generator=self.gen, device=self.gen.device)
        return full[self.rank :: self.world].to(self.x.device)


@dataclass
class Phase:
    name: str
    objective: nn.Module  # forward(batch) -> {"loss": scalar, term: scalar, ...}
    make_optimizer: Callable[[], torch.optim.Optimizer]
    every: int = 1  # runs on steps t with t % every == 0
    schedule: Schedule = "cosine"
    lr_end: float | None = None  # where cosine/linear end; None: TrainOptions.lr_min (linear: 0)
    # how its terms are named in the history: None: unprefixed for a stage's first phase (its
    # "loss" is the stage's), "<name>_" for the others
    prefix: str | None = None


@dataclass
class Stage:
    name: str
    epochs: int
    phases: list[Phase]
    batch: str = "anchors"  # a key of BATCH_KINDS
    # called once when the stage starts (fresh or resumed), before optimisers exist:
    # freeze what the stage does not train, set statistics the stage relies on
    begin: Callable[[], None] = lambda: None
    # after every step's phases, with the step's terms and batch: update non-gradient state
    # (e.g. Lagrange multipliers) from values all-reduced over processes (Method.dist), so
    # that every rank holds the same; returns terms to record
    end_step: Callable[[dict, "Batch"], dict] | None = None
    # (id_idx, pose_idx) -> generated cells (len(id_idx) * len(pose_idx), 3, S, S), identity
    # major; None: encode the images with final_model() and generate
    sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    ema: dict[str, float] = field(default_factory=dict)  # name in Method.modules -> EMA decay


class Method:
    """Base of every method; subclasses set ``name`` and build their networks in ``__init__``."""

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = True  # False: identities are ignored (one is enough)
    modules: dict[str, nn.Module]  # everything trained: checkpointed, moved to the device
    latents: dict[str, nn.Embedding]  # per-image tables (also in modules), indexed by Batch.idx

    def __init__(self, opts, data: TrainData, recon: nn.Module):
        from .distributed import Dist

        self.opts, self.data, self.recon = opts, data, recon
        self.o = opts.method_options  # the method's own options
        self.modules, self.latents = {}, {}
        self.dist = Dist()  # set by the loop under torchrun
        self.workdir = None  # set by the loop: where a method may cache what it derives from the data
        self.ema: dict[str, nn.Module] = {}  # filled by the loop: name -> averaged copy

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def final_model(self):
        """The PoseModel to save (the EMA copy where there is one)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Training state outside modules (multipliers, moving averages; tensors and plain
        values), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def summary(self) -> dict:
        """Final values worth keeping in the model file's training summary."""
        return {}

    def warm_start(self, source) -> None:
        """``train --init``: start from a trained model of this method instead of random weights.

        The networks take the source's weights (the same architecture: the CLI adopts
        the source's size and network options); anything else a method trains (critics,
        per-image tables) starts as in a fresh run unless the method seeds it from the
        source (LORD does: its tables start at the source encoders' codes of the data).
        """
        own = getattr(self, "model", None)
        if own is None or type(own) is not type(source):
            raise UsageError(f"--init: a {getattr(source, 'method', type(source).__name__)} model cannot start "
                             f"--method {self.name}")
        if own.config != source.config:
            raise UsageError(f"--init: its network differs from this run's ({network_difference(own.config, source.config)})")
        own.load_state_dict(source.state_dict())


def network_difference(own, source) -> str:
    """What differs between this run's model config and an --init model's, for an error message."""
    import dataclasses

    a, b = dataclasses.asdict(own), dataclasses.asdict(source)
    return ", ".join(f"{k} {a[k]} here, {b.get(k)} in the model" for k in a if a[k] != b.get(k))


def module_params(*mods: nn.Module) -> list[nn.Parameter]:
    return [p for m in mods for p in m.parameters()]


# -- batch kinds ---------------------------------------------------------------

def _anchors(data: TrainData, idx: torch.Tensor, gen: torch.Generator) -> dict:
    return {}


def clip_groups(data: TrainData) -> torch.Tensor:
    """(N,) the clip of each image, numbered 0..G-1: video frames by clip, stills by identity."""
    clips, labels = data.clips, data.labels
    group = torch.where(clips >= 0, clips, labels + int(clips.max().clamp_min(-1)) + 1)
    return torch.unique(group, return_inverse=True)[1]


class _Groups:
    """Images grouped for pairing: by clip for video frames, else by identity."""

    def __init__(self, data: TrainData):
        group = clip_groups(data)
        order = torch.argsort(group, stable=True)
        counts = torch.bincount(group)
        starts = torch.cumsum(counts, 0) - counts
        self.order = order
        self.group = group
        self.start, self.count = starts[group], counts[group]  # per image
        self.rank = torch.empty_like(order)
        self.rank[order] = torch.arange(len(order), device=order.device) - starts[group[order]]


def _pairs(data: TrainData, idx: torch.Tensor, gen: torch.Generator) -> dict:
    """A partner of the same clip (video frames) or identity, never the image itself when
    its group has another member."""
    groups = getattr(data, "_groups", None)
    if groups is None:
        groups = data._groups = _Groups(data)
    count, start, rank = groups.count[idx], groups.start[idx], groups.rank[idx]
    u = torch.rand(idx.shape, generator=gen, device=gen.device).to(idx.device)
    offset = 1 + (u * (count - 1).clamp_min(0)).long().clamp_max((count - 2).clamp_min(0))
    pos = torch.where(count > 1, (rank + offset) % count, rank)
    return {"partner_idx": groups.order[start + pos]}


def _triplets(data: TrainData, idx: torch.Tensor, gen: torch.Generator) -> dict:
    """Xiao et al.'s triplets: a target of the same clip and a pose image of another clip,
    drawn by the tables the method mined (``data.mining``, training/mining.py)."""
    if data.mining is None:
        raise RuntimeError("triplet batches need data.mining, set by the method when its stage begins")
    return data.mining.draw(idx, gen, _pairs(data, idx, gen)["partner_idx"])


# name -> fn(data, global_idx, gen) -> extra Batch fields for the global batch (sliced by rank):
# "partner_idx" and "other_idx", whose images the loop loads into Batch.partner and Batch.other
BATCH_KINDS: dict[str, Callable[[TrainData, torch.Tensor, torch.Generator], dict]] = {
    "anchors": _anchors,
    "pairs": _pairs,
    "triplets": _triplets,
}
