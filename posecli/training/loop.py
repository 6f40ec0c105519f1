"""The one training loop every method and stage shares.

A method (posecli/training/<method>.py) provides its modules and a list of
stages; each stage makes its optimizers and computes a loss for a batch of
indices. The loop owns batching on the device, the cosine schedule, autocast,
progress, checkpoints (every epoch, every few minutes and on Ctrl-C), sample
grids and loss curves. Everything random is derived from (seed, stage, step), so
a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import PoseCliError, UsageError
from ..fileio import write_bytes_atomic
from ..progress import progress
from .checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger("posecli")
PRECISIONS = ("auto", "fp32", "bf16")
STAGE2_GENERATOR = ("finetune", "frozen")


@dataclass(frozen=True)
class TrainOptions:
    method: str = "lord"
    image_size: int = 64
    epochs: int = 200  # per stage
    stage2_epochs: int | None = None  # default: same as epochs
    batch_size: int = 128
    lr_generator: float = 3e-4
    lr_latent: float = 3e-3
    lr_encoder: float = 1e-4
    lr_min: float = 1e-5
    identity_dim: int = 256
    pose_dim: int = 128
    width: float = 1.0
    noise_std: float = 1.0
    pose_decay: float = 1e-3
    code_weight: float = 10.0
    stage2_generator: str = "finetune"  # finetune (the papers) | frozen
    loss: str = "auto"
    seed: int = 0
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    compile: bool = False

    def __post_init__(self) -> None:
        """Bad options fail here, for the library as for the CLI (messages name the CLI flags)."""
        for name, v in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if v < 1:
                raise UsageError(f"{name} {v}: must be at least 1")
        if self.stage2_epochs is not None and self.stage2_epochs < 1:
            raise UsageError(f"--stage2-epochs {self.stage2_epochs}: must be at least 1")
        for name, v in (("--lr-generator", self.lr_generator), ("--lr-latent", self.lr_latent),
                        ("--lr-encoder", self.lr_encoder)):
            if not (math.isfinite(v) and v > 0):
                raise UsageError(f"{name} {v}: expected a positive number")
        for name, v in (("--noise-std", self.noise_std), ("--pose-decay", self.pose_decay)):
            if not (math.isfinite(v) and v >= 0):
                raise UsageError(f"{name} {v}: expected a finite number >= 0")
        if self.stage2_generator not in STAGE2_GENERATOR:
            raise UsageError(f"--stage2-generator {self.stage2_generator}: expected {' or '.join(STAGE2_GENERATOR)}")

    def fingerprint(self) -> str:
        """What must match to resume: everything that changes the weights (not how
        often to checkpoint or log, nor whether the step is compiled)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("checkpoint_minutes", "log_every", "compile")}
        return json.dumps(d, sort_keys=True)


@dataclass
class Stage:
    name: str
    epochs: int
    make_optimizers: Callable[[], list[torch.optim.Optimizer]]
    # loss(x, labels, idx, generator) -> {"loss": total, term: value, ...}
    loss: Callable[..., dict[str, torch.Tensor]]
    sample: Callable[[], "object"]  # -> uint8 grid image


@dataclass
class TrainData:
    images: torch.Tensor  # (N, 3, S, S) uint8 on the device
    labels: torch.Tensor  # (N,) int64 on the device
    n_identities: int
    key: str  # identifies the decoded data (for resume checks)


def cosine_lr(base: float, lr_min: float, t: int, total: int) -> float:
    return lr_min + (base - lr_min) * 0.5 * (1 + math.cos(math.pi * min(t, total) / max(total, 1)))


class _StopFlag:
    """SIGINT sets a flag; the loop stops between steps (a second Ctrl-C kills at once)."""

    def __init__(self):
        self.set = False

    @contextlib.contextmanager
    def installed(self):
        try:
            prev = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, prev)

    def _handler(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True
        log.warning("interrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort at once)")


class Trainer:
    def __init__(self, method, data: TrainData, opts: TrainOptions, workdir: Path, device: torch.device,
                 quiet: bool = False, stop_after_steps: int | None = None, precision: str = "auto"):
        self.method, self.data, self.opts, self.workdir = method, data, opts, Path(workdir)
        self.device, self.quiet, self.stop_after_steps = device, quiet, stop_after_steps
        # bf16 autocast: always on CUDA; on CPU only when asked (fp32 is the safe default;
        # CPUs with AMX run the networks about twice as fast in bf16 + channels_last)
        if precision not in PRECISIONS:
            raise PoseCliError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
        self.bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
        self.channels_last = self.bf16 or device.type == "cuda"
        if self.channels_last:
            for m in method.modules.values():
                m.to(memory_format=torch.channels_last)
        self.history: list[dict] = []
        self.stop = _StopFlag()
        self.elapsed = 0.0

    # -- checkpoints -----------------------------------------------------------
    def _state(self, stage_i: int, epoch: int, step: int, gstep: int, optimizers) -> dict:
        return {
            "version": 1, "opts": self.opts.fingerprint(), "data_key": self.data.key,
            "stage": stage_i, "epoch": epoch, "step": step, "global_step": gstep,
            "modules": {k: m.state_dict() for k, m in self.method.modules.items()},
            "optim": [o.state_dict() for o in optimizers],
            "history": json.dumps(self.history), "elapsed": self.elapsed,
        }

    def _restore(self, ckpt: dict) -> None:
        if ckpt.get("opts") != self.opts.fingerprint() or ckpt.get("data_key") != self.data.key:
            raise PoseCliError("--resume: the checkpoint was made with other data or options; "
                               "use the same command line, or another --workdir", self.workdir)
        for k, m in self.method.modules.items():
            m.load_state_dict(ckpt["modules"][k])
        self.history = json.loads(ckpt["history"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))

    # -- the loop --------------------------------------------------------------
    def run(self, resume: bool = False) -> None:
        ckpt = load_checkpoint(self.workdir)
        if ckpt is not None and not resume:
            raise PoseCliError("a checkpoint from an earlier run is here; pass --resume to continue it, "
                               "or choose another --workdir", self.workdir)
        start = (0, 0, 0, 0)
        if ckpt is not None:
            self._restore(ckpt)
            start = (ckpt["stage"], ckpt["epoch"], ckpt["step"], ckpt["global_step"])
            log.warning(f"resuming from {self.workdir / 'checkpoint.pt'}: stage {start[0] + 1}, "
                        f"epoch {start[1] + 1}, step {start[2]}")
        stages = self.method.stages()
        n, bs = len(self.data.images), self.opts.batch_size
        per_epoch = n // bs  # drop_last: fixed shapes
        total = sum(s.epochs for s in stages) * per_epoch
        done_before = sum(s.epochs for s in stages[: start[0]]) * per_epoch + start[1] * per_epoch + start[2]
        bar = progress(total=total, desc="training", unit="step", quiet=self.quiet, initial=done_before)
        try:
            with self.stop.installed():
                for si in range(start[0], len(stages)):
                    resume_here = ckpt if si == start[0] and ckpt is not None else None
                    self._run_stage(si, stages[si], per_epoch, start if resume_here else (si, 0, 0, None), resume_here, bar)
        finally:
            bar.close()

    def _run_stage(self, si: int, stage: Stage, per_epoch: int, start, ckpt, bar) -> None:
        opts, device, data = self.opts, self.device, self.data
        optimizers = stage.make_optimizers()
        for o in optimizers:
            for g in o.param_groups:
                g.setdefault("base_lr", g["lr"])
        if ckpt is not None and ckpt["optim"] and ckpt["stage"] == si:
            for o, sd in zip(optimizers, ckpt["optim"]):
                o.load_state_dict(sd)
        _, epoch0, step0, gstep = start
        stage_total = stage.epochs * per_epoch
        t_stage = epoch0 * per_epoch + step0  # step within this stage
        if gstep is None:
            gstep = self.history[-1]["step"] if self.history else 0
        bs = opts.batch_size
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)
        last_ckpt = time.monotonic()
        for epoch in range(epoch0, stage.epochs):
            perm_gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + si * 10_007 + epoch)
            perm = torch.randperm(len(data.images), generator=perm_gen).to(device)
            acc: dict[str, torch.Tensor] = {}
            n_acc, t0 = 0, time.monotonic()
            for step in range(step0 if epoch == epoch0 else 0, per_epoch):
                idx = perm[step * bs:(step + 1) * bs]
                noise_gen = torch.Generator(device=device).manual_seed(
                    opts.seed * 1_000_003 + si * 100_000_007 + t_stage)
                for o in optimizers:
                    for g in o.param_groups:
                        g["lr"] = cosine_lr(g["base_lr"], opts.lr_min, t_stage, stage_total)
                    o.zero_grad(set_to_none=True)
                x = data.images[idx].float().div_(255.0)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast:
                    terms = stage.loss(x, data.labels[idx], idx, noise_gen)
                terms["loss"].backward()
                for o in optimizers:
                    o.step()
                for k, v in terms.items():  # stays on the device: no host sync per step
                    acc[k] = acc.get(k, 0) + v.detach().float()
                n_acc += 1
                t_stage += 1
                gstep += 1
                bar.update(1)
                if n_acc == opts.log_every or step == per_epoch - 1:
                    rate = n_acc * bs / max(time.monotonic() - t0, 1e-9)
                    self.elapsed += time.monotonic() - t0
                    row = {"step": gstep, "stage": stage.name, "epoch": epoch + 1, "images_per_s": rate}
                    row.update({k: float(v) / n_acc for k, v in acc.items()})
                    self.history.append(row)
                    bar.set_postfix_str(f"{stage.name} epoch {epoch + 1}/{stage.epochs} loss {row['loss']:.4f} {rate:.0f} img/s")
                    acc, n_acc, t0 = {}, 0, time.monotonic()
                interrupted = self.stop.set or (self.stop_after_steps is not None and gstep >= self.stop_after_steps)
                if interrupted or time.monotonic() - last_ckpt > opts.checkpoint_minutes * 60:
                    nxt = (epoch, step + 1) if step + 1 < per_epoch else (epoch + 1, 0)
                    save_checkpoint(self.workdir, self._state(si, *nxt, gstep, optimizers))
                    last_ckpt = time.monotonic()
                    if interrupted:
                        raise KeyboardInterrupt
            # end of epoch: checkpoint, samples and the loss curve
            next_pos = (si, epoch + 1, 0) if epoch + 1 < stage.epochs else (si + 1, 0, 0)
            save_checkpoint(self.workdir, self._state(*next_pos, gstep, optimizers if next_pos[0] == si else []))
            last_ckpt = time.monotonic()
            self._write_pictures(stage, epoch)
            if self.history:  # for logs of scripted runs, where no progress bar shows (-v)
                row = self.history[-1]
                log.info(f"{stage.name} epoch {epoch + 1}/{stage.epochs}: loss {row['loss']:.4f}, "
                         f"{row['images_per_s']:.0f} img/s")

    def _write_pictures(self, stage: Stage, epoch: int) -> None:
        from ..media.images import write_image
        from .plots import loss_curve

        with torch.no_grad():
            grid = stage.sample()
        write_image(self.workdir / "samples" / f"{stage.name}_epoch{epoch + 1:03d}.png", grid, overwrite=True)
        write_image(self.workdir / "loss.png", loss_curve(self.history), overwrite=True)
        write_bytes_atomic(self.workdir / "history.json", json.dumps(self.history).encode(), overwrite=True)


def module_params(*mods: nn.Module):
    return [p for m in mods for p in m.parameters()]
