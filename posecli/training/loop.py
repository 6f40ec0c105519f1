"""The one training loop every method, stage and phase shares.

A method (posecli/training/<name>.py) provides its networks and stages; a stage
runs its phases on every step (method.py has the contract). The loop owns the
rest: seeding and device placement, batches built on the device (uint8 to float
through media.convert), autocast and the gradient scaler, torch.compile,
DistributedDataParallel under torchrun, per-phase gradients, optimisers and
learning-rate schedules, EMA copies, metrics, the progress bar, checkpoints (every
epoch, every few minutes and on Ctrl-C or SIGTERM), resume, sample grids and the
loss curve.

Everything random is derived from (seed, stage, step) and the global batch is cut
the same way whatever the number of processes, so a resumed run ends with the same
weights as an uninterrupted one, and a checkpoint resumes with any world size.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import signal
import sys
import time
from pathlib import Path

import torch
from torch import nn

from ..errors import PoseCliError
from ..fileio import write_bytes_atomic
from ..signals import interrupt_for
from ..media.convert import uint8_to_float
from ..progress import progress
from . import distributed as D
from .checkpoint import load_checkpoint, save_checkpoint
from .method import BATCH_KINDS, Batch, Phase, Stage, TrainData
from .options import TrainOptions

log = logging.getLogger("posecli")
CHECKPOINT_VERSION = 2
N_SAMPLES = 6


def ema_update(decay: float):
    """An AveragedModel multi_avg_fn: EMA with the warm-up of TensorFlow's ExponentialMovingAverage,
    decay_n = min(decay, (1 + n) / (10 + n)) at the n-th update. A fixed 0.999 would keep 90 % of the
    initial weights for the first 2,300 steps, so short runs would save a model near its
    initialisation; with the warm-up the average spans about the last tenth of the run until it
    reaches ``decay``. Computed on the device (no host sync)."""

    @torch.no_grad()
    def update(ema_params, model_params, n_averaged) -> None:
        n = n_averaged.float()
        weight = 1 - torch.clamp((1 + n) / (10 + n), max=decay)
        if torch.is_floating_point(ema_params[0]):
            torch._foreach_lerp_(ema_params, model_params, [weight.to(ema_params[0].dtype)] * len(ema_params))
        else:
            for e, m in zip(ema_params, model_params):
                e.copy_(e * (1 - weight) + m * weight)

    return update


def cosine_lr(base: float, lr_min: float, t: int, total: int) -> float:
    return lr_min + (base - lr_min) * 0.5 * (1 + math.cos(math.pi * min(t, total) / max(total, 1)))


def scheduled_lr(phase: Phase, base: float, lr_min: float, t: int, total: int) -> float:
    if phase.schedule == "constant":
        return base
    if phase.schedule == "linear":
        end = 0.0 if phase.lr_end is None else phase.lr_end
        return end + (base - end) * (1 - min(t, total) / max(total, 1))
    return cosine_lr(base, lr_min if phase.lr_end is None else phase.lr_end, t, total)


def _without_epochs(fingerprint: str | None) -> str | None:
    """A fingerprint (TrainOptions.fingerprint) less the epoch counts, which a resumed run may raise."""
    if fingerprint is None:
        return None
    fp = json.loads(fingerprint)
    fp.get("shared", {}).pop("epochs", None)
    # a stage's epoch count (stage2_epochs), not those of a pre-training (npid_epochs, rotnet_epochs)
    fp["method"] = {k: v for k, v in fp.get("method", {}).items() if not re.fullmatch(r"stage\d*_epochs", k)}
    return json.dumps(fp, sort_keys=True)


class _StopFlag:
    """SIGINT or SIGTERM sets a flag; the loop stops between steps (a second signal
    aborts at once; under torchrun, where the launcher forwards the terminal's Ctrl-C
    that every process already got, only one that comes more than 3 s later)."""

    def __init__(self, grace: float = 0.0):
        self.set, self.grace, self.t = False, grace, 0.0
        self.signum = signal.SIGINT  # the stop ends as interrupt_for(signum): exit 130, or 143 for SIGTERM

    @contextlib.contextmanager
    def installed(self):
        """Handle SIGINT and SIGTERM within the block; one the process was started with ignored
        (``nohup``, ``cmd &`` in a script: SIGINT) stays ignored, as it does in every other command."""
        try:
            prev = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)
                    if signal.getsignal(s) is not signal.SIG_IGN}
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            for s, h in prev.items():
                signal.signal(s, h)

    def _handler(self, signum, frame):
        if self.set:
            if time.monotonic() - self.t > self.grace:
                raise interrupt_for(self.signum)
            return
        self.set, self.t, self.signum = True, time.monotonic(), signum
        log.warning(f"{signal.Signals(signum).name}: finishing this step and writing a checkpoint "
                    "(signal again to abort at once)")


class _PhaseRun:
    """A phase ready to run: its (wrapped) objective, optimiser, parameters and scaler."""

    def __init__(self, phase: Phase, method, dist: D.Dist, compile_: bool, fp16: bool):
        self.phase = phase
        self.opt = phase.make_optimizer()
        for g in self.opt.param_groups:
            g.setdefault("base_lr", g["lr"])
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        latent_ids = {id(t.weight) for t in method.latents.values()}
        self.latents = [t.weight for t in method.latents.values() if any(p is t.weight for p in self.params)]
        shared = [p for p in self.params if id(p) not in latent_ids]
        for p in self.params:
            p.requires_grad_(True)
        self.run = D.wrap(phase.objective, shared, dist)
        if compile_:
            self.run = torch.compile(self.run)
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None


class Trainer:
    def __init__(self, method_cls, data: TrainData, opts: TrainOptions, workdir: Path, device: torch.device,
                 recon: nn.Module, quiet: bool = False, stop_after_steps: int | None = None,
                 dist: D.Dist = D.Dist()):
        self.data, self.opts, self.workdir = data, opts, Path(workdir)
        self.device, self.quiet, self.stop_after_steps, self.dist = device, quiet, stop_after_steps, dist
        D.check_batch(opts.batch_size, dist)
        # bf16 autocast where the GPU has it (no scaler needed), fp16 with a gradient
        # scaler on older GPUs; on CPU only when asked (fp32 is the safe default; CPUs
        # with AMX run the networks about twice as fast in bf16 + channels_last)
        cuda = device.type == "cuda"
        auto_bf16 = cuda and torch.cuda.is_bf16_supported()
        self.amp_dtype = (torch.bfloat16 if opts.precision == "bf16" or (opts.precision == "auto" and auto_bf16)
                          else torch.float16 if opts.precision == "auto" and cuda else None)
        self.channels_last = self.amp_dtype is not None or cuda
        torch.manual_seed(opts.seed)  # the method's initial weights: the same on every rank
        self.method = method_cls(opts, data, recon)
        self.method.dist, self.method.workdir = dist, self.workdir
        for m in self.method.modules.values():
            m.to(device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)
        self.all_params = [p for m in self.method.modules.values() for p in m.parameters()]
        self.history: list[dict] = []
        self.stop = _StopFlag(grace=3.0 if dist.enabled else 0.0)
        self.elapsed = 0.0
        self.ema: dict[str, torch.optim.swa_utils.AveragedModel] = {}
        # the images shown in sample grids: distinct identities, varied poses
        g = torch.Generator().manual_seed(opts.seed)
        labels = data.labels.cpu()
        self.sample_ids = torch.tensor([int(torch.nonzero(labels == i)[0])
                                        for i in range(min(N_SAMPLES, data.n_identities)) if (labels == i).any()])
        self.sample_poses = torch.randperm(len(data), generator=g)[:N_SAMPLES]

    @property
    def precision(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.amp_dtype]

    # -- checkpoints -----------------------------------------------------------
    def _state(self, pos: tuple[int, int, int], gstep: int, runs: list[_PhaseRun], acc=None, n_acc=0) -> dict:
        return {
            "acc": {k: v.cpu() for k, v in (acc or {}).items()}, "n_acc": n_acc,  # a log window cut short
            "version": CHECKPOINT_VERSION, "opts": self.opts.fingerprint(), "data_key": self.data.key,
            "stage_epochs": list(self.stage_epochs),  # what each stage runs (a finished run can be extended)
            "stage": pos[0], "epoch": pos[1], "step": pos[2], "global_step": gstep, "world_size": self.dist.world,
            "modules": {k: m.state_dict() for k, m in self.method.modules.items()},
            "optim": {r.phase.name: r.opt.state_dict() for r in runs},
            "scaler": {r.phase.name: r.scaler.state_dict() for r in runs if r.scaler is not None},
            "ema": {k: m.state_dict() for k, m in self.ema.items()},
            "method": self.method.state_dict(),
            "history": json.dumps(self.history), "elapsed": self.elapsed,
        }

    def _save(self, state_fn) -> None:
        if self.dist.main:  # every rank holds the same state: rank 0 writes it
            save_checkpoint(self.workdir, state_fn())

    def _load(self, resume: bool, restart: bool) -> dict | None:
        ckpt = load_checkpoint(self.workdir) if self.dist.main else None
        if self.dist.enabled:  # other machines may not see rank 0's disk
            box = [ckpt]
            torch.distributed.broadcast_object_list(box, src=0)
            ckpt = box[0]
        if ckpt is None and resume:
            raise PoseCliError("--resume: no checkpoint here to continue; leave out --resume to start a new run",
                               self.workdir)
        if ckpt is not None and not resume:
            if not restart:
                raise PoseCliError("a checkpoint from an earlier run is here; pass --resume to continue it, "
                                   "--overwrite to start afresh, or choose another --workdir", self.workdir)
            log.warning(f"--overwrite: starting afresh; the checkpoint in {self.workdir} will be replaced")
            return None
        if ckpt is None:
            return None
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise PoseCliError(f"--resume: the checkpoint is from another posecli version (format "
                               f"{ckpt.get('version')}, this one reads {CHECKPOINT_VERSION}); start in another --workdir",
                               self.workdir)
        if ckpt.get("data_key") != self.data.key or _without_epochs(ckpt.get("opts")) != \
                _without_epochs(self.opts.fingerprint()):
            raise PoseCliError("--resume: the checkpoint was made with other data or options; "
                               "use the same command line (--epochs may grow), or another --workdir", self.workdir)
        for k, m in self.method.modules.items():
            m.load_state_dict(ckpt["modules"][k])
        self.method.load_state_dict(ckpt["method"])
        self.history = json.loads(ckpt["history"])
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        if ckpt["world_size"] != self.dist.world:
            log.warning(f"resuming a {ckpt['world_size']}-process run with {self.dist.world}")
        return ckpt

    # -- the loop --------------------------------------------------------------
    def run(self, resume: bool = False, restart: bool = False, init=None) -> None:
        """Train every stage; ``resume`` continues the work folder's checkpoint, ``restart``
        (--overwrite) replaces it; ``init`` (a model of this method) is where a new run starts."""
        ckpt = self._load(resume, restart)
        if init is not None and ckpt is None:
            self.method.warm_start(init.to(self.device))  # copied into the run's tensors: layout kept
            D.broadcast_state(self.method.modules.values(), self.dist)
        elif init is not None:
            log.warning("--init: resuming, so the checkpoint's weights are used (--init gave the run's start)")
        start = (0, 0, 0, 0)
        stages = self.method.stages()
        self.stage_epochs = [s.epochs for s in stages]
        if ckpt is not None:
            start = (ckpt["stage"], ckpt["epoch"], ckpt["step"], ckpt["global_step"])
            start = self._extend(ckpt, stages, start)
            if start[0] >= len(stages):
                log.warning(f"{self.workdir / 'checkpoint.pt'} is of a finished run: writing its model")
            else:
                log.warning(f"resuming from {self.workdir / 'checkpoint.pt'}: stage {start[0] + 1} of "
                            f"{len(stages)}, epoch {start[1] + 1}, step {start[2]}")
        per_epoch = len(self.data) // self.opts.batch_size  # drop_last: fixed shapes
        total = sum(self.stage_epochs) * per_epoch
        done_before = sum(self.stage_epochs[: start[0]]) * per_epoch + start[1] * per_epoch + start[2]
        if ckpt is not None and start[0] == len(stages):  # resumed after the last step
            for si, stage in enumerate(stages):
                self._make_ema(si, stage, ckpt)
        bar = progress(total=total, desc="training", unit="step", quiet=self.quiet or not self.dist.main,
                       initial=done_before)
        self._notice(f"training {self.opts.method} on {len(self.data)} images of {self.data.n_identities} identities: "
                     f"{len(stages)} stage(s), {total} steps of {self.opts.batch_size} "
                     f"images on {self.device}" + (f" ({self.dist.world} processes)" if self.dist.enabled else ""))
        try:
            with self.stop.installed():
                for si in range(start[0], len(stages)):
                    here = ckpt if si == start[0] and ckpt is not None else None
                    self._run_stage(si, stages[si], per_epoch, start if here else (si, 0, 0, None), here, bar)
        finally:
            bar.close()

    def _extend(self, ckpt: dict, stages: list[Stage], start: tuple) -> tuple:
        """--resume with other --epochs: the stage the checkpoint is in (or, for a finished
        run, the last stage) runs to its new count; stages already finished keep the
        epochs they ran (they are not run again). Returns where to start."""
        new = [s.epochs for s in stages]
        old = ckpt.get("stage_epochs")
        if old == new or (old is None and ckpt.get("opts") == self.opts.fingerprint()):
            return start
        if old is None or len(old) != len(new):
            raise PoseCliError("--resume: this checkpoint cannot take other --epochs (it was written by an older "
                               "posecli); use its command line, or another --workdir", self.workdir)
        si, epoch = start[0], start[1]
        last = min(si, len(new) - 1)
        if si >= len(new):  # finished: the last stage goes on from where it ended
            if new[last] < old[last]:
                raise PoseCliError(f"--resume: the run finished {stages[last].name} at {old[last]} epoch(s); "
                                   f"--epochs can only grow", self.workdir)
            if new[last] == old[last]:  # nothing to add: the finished run's model is written again
                self.stage_epochs = list(old)
                return start
            start = (last, old[last], 0, start[3])
        elif new[si] < epoch + (start[2] > 0):
            raise PoseCliError(f"--resume: {stages[si].name} is already at epoch {epoch + 1}; give at least that "
                               "many --epochs", self.workdir)
        kept = [i for i in range(last) if new[i] != old[i]]
        self.stage_epochs = [old[i] if i < last else new[i] for i in range(len(new))]
        log.warning(f"--resume: {stages[last].name} continues to {new[last]} epoch(s)"
                    + (f"; {', '.join(stages[i].name for i in kept)} finished with "
                       f"{', '.join(str(old[i]) for i in kept)} epoch(s) and is not run again" if kept else ""))
        return start

    def _make_ema(self, si: int, stage: Stage, ckpt: dict | None) -> None:
        """The stage's averaged copies (kept by the method for final_model), restored
        from the checkpoint when it holds them."""
        from torch.optim.swa_utils import AveragedModel

        for name, decay in stage.ema.items():
            ema = AveragedModel(self.method.modules[name], multi_avg_fn=ema_update(decay), use_buffers=True)
            if ckpt is not None and f"{si}.{name}" in ckpt["ema"]:
                ema.load_state_dict(ckpt["ema"][f"{si}.{name}"])
            self.ema[f"{si}.{name}"] = ema
            self.method.ema[name] = ema.module

    def _notice(self, message: str) -> None:
        """Progress lines: shown by default where no progress bar is (scripts, nohup, a pipe),
        with -v on a terminal; -q silences them."""
        if self.dist.main and not self.quiet:
            log.log(logging.INFO if sys.stderr.isatty() else logging.WARNING, message)

    def _enable(self, run: _PhaseRun) -> None:
        """Gradients for this phase's parameters only."""
        ids = {id(p) for p in run.params}
        for p in self.all_params:
            p.requires_grad_(id(p) in ids)

    def _run_stage(self, si: int, stage: Stage, per_epoch: int, start, ckpt, bar) -> None:
        opts, data, dist = self.opts, self.data, self.dist
        self._stage_i = si
        stage.begin()
        runs = [_PhaseRun(ph, self.method, dist, opts.compile, self.amp_dtype == torch.float16) for ph in stage.phases]
        seen: set[int] = set()
        for r in runs:
            if seen & {id(p) for p in r.params}:
                raise RuntimeError(f"stage {stage.name}: phases share parameters")  # a method bug
            seen |= {id(p) for p in r.params}
        self._make_ema(si, stage, ckpt)
        if ckpt is not None and ckpt["stage"] == si:
            for r in runs:
                if r.phase.name in ckpt["optim"]:
                    r.opt.load_state_dict(ckpt["optim"][r.phase.name])
                if r.scaler is not None and r.phase.name in ckpt["scaler"]:
                    r.scaler.load_state_dict(ckpt["scaler"][r.phase.name])
        if len(runs) == 1:
            self._enable(runs[0])
        _, epoch0, step0, gstep = start
        stage_total = stage.epochs * per_epoch
        t_stage = epoch0 * per_epoch + step0  # step within this stage
        if gstep is None:
            gstep = self.history[-1]["step"] if self.history else 0
        bs, device = opts.batch_size, self.device
        make_extra = BATCH_KINDS[stage.batch]
        last_ckpt = time.monotonic()
        for epoch in range(epoch0, stage.epochs):
            perm_gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + si * 10_007 + epoch)
            perm = torch.randperm(len(data), generator=perm_gen).to(device)
            acc: dict[str, torch.Tensor] = {}  # term -> (sum, count) on the device
            n_acc, t0 = 0, time.monotonic()
            if ckpt is not None and epoch == epoch0 and ckpt["n_acc"]:  # the window the interrupt cut
                acc, n_acc = {k: v.to(device) for k, v in ckpt["acc"].items()}, ckpt["n_acc"]
            for step in range(step0 if epoch == epoch0 else 0, per_epoch):
                gen = torch.Generator(device=device).manual_seed(opts.seed * 1_000_003 + si * 100_000_007 + t_stage)
                batch = self._batch(perm[step * bs:(step + 1) * bs], make_extra, gen)
                batch.step = t_stage
                terms = self._step(runs, stage, batch, t_stage, stage_total)
                for k, v in terms.items():  # stays on the device: no host sync per step
                    acc[k] = acc.get(k, 0) + torch.stack([v.detach().float(), torch.ones((), device=device)])
                n_acc += 1
                t_stage += 1
                gstep += 1
                bar.update(1)
                window_end = n_acc == opts.log_every or step == per_epoch - 1
                if window_end:
                    self._log_row(acc, n_acc, t0, gstep, stage, epoch, bar)
                    acc, n_acc, t0 = {}, 0, time.monotonic()
                # under torchrun the ranks agree on a stop at the end of each log window (one
                # all-reduce there, not a host sync every step); alone, at once
                stop = self.stop.set if not dist.enabled else (window_end and D.any_set(self.stop.set, dist, device))
                interrupted = stop or (self.stop_after_steps is not None and gstep >= self.stop_after_steps)
                if interrupted or time.monotonic() - last_ckpt > opts.checkpoint_minutes * 60:
                    nxt = (si, epoch, step + 1) if step + 1 < per_epoch else (si, epoch + 1, 0)
                    self._save(lambda: self._state(nxt, gstep, runs, acc, n_acc))
                    last_ckpt = time.monotonic()
                    if interrupted:
                        D.barrier(dist)  # rank 0's checkpoint is complete before anyone exits
                        raise interrupt_for(self.stop.signum)
            # end of epoch: checkpoint, samples and the loss curve
            nxt = (si, epoch + 1, 0) if epoch + 1 < stage.epochs else (si + 1, 0, 0)
            self._save(lambda: self._state(nxt, gstep, runs if nxt[0] == si else []))
            last_ckpt = time.monotonic()
            if dist.main:
                self._write_pictures(stage, epoch)
            if self.history:  # a line an epoch: what scripts and logs see, where no progress bar shows
                row = self.history[-1]
                extra = "".join(f", {k} {row[k]:.4g}" for k in row if k not in
                                ("step", "stage", "epoch", "images_per_s", "loss"))
                self._notice(f"{stage.name} epoch {epoch + 1}/{stage.epochs}: loss {row['loss']:.4f}{extra}, "
                             f"{row['images_per_s']:.0f} img/s")

    def _batch(self, gidx: torch.Tensor, make_extra, gen: torch.Generator) -> Batch:
        """This process's share of the global batch ``gidx`` (every rank cuts it the same way)."""
        d, data = self.dist, self.data
        extra = make_extra(data, gidx, gen)
        idx = gidx[d.rank :: d.world]
        batch = Batch(idx, self._float(data.images[idx]), data.labels[idx], gen, d.rank, d.world)
        for name in ("partner", "other"):
            if f"{name}_idx" in extra:
                ii = extra[f"{name}_idx"][d.rank :: d.world]
                setattr(batch, f"{name}_idx", ii)
                setattr(batch, name, self._float(data.images[ii]))
        return batch

    def _float(self, images: torch.Tensor) -> torch.Tensor:
        x = uint8_to_float(images)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _step(self, runs: list[_PhaseRun], stage: Stage, batch: Batch, t: int, total: int) -> dict:
        out: dict[str, torch.Tensor] = {}
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                                  enabled=self.amp_dtype is not None)
        for i, r in enumerate(runs):
            if t % r.phase.every:
                continue
            if len(runs) > 1:
                self._enable(r)
            for g in r.opt.param_groups:
                g["lr"] = scheduled_lr(r.phase, g["base_lr"], self.opts.lr_min, t, total)
            r.opt.zero_grad(set_to_none=True)
            with autocast:
                terms = r.run(batch)
            loss = terms["loss"]
            (r.scaler.scale(loss) if r.scaler is not None else loss).backward()
            for table in r.latents:
                D.sync_latent_grads(table, batch.idx, self.dist)
            if r.scaler is not None:
                r.scaler.step(r.opt)
                r.scaler.update()
            else:
                r.opt.step()
            prefix = r.phase.prefix if r.phase.prefix is not None else "" if i == 0 else f"{r.phase.name}_"
            out.update({prefix + k: v for k, v in terms.items()})
        for name in stage.ema:
            self.ema[f"{self._stage_i}.{name}"].update_parameters(self.method.modules[name])
        if stage.end_step is not None:
            out.update(stage.end_step(out, batch))
        return out

    def _log_row(self, acc: dict, n_acc: int, t0: float, gstep: int, stage: Stage, epoch: int, bar) -> None:
        keys = sorted(acc)
        sums = D.mean(torch.stack([acc[k] for k in keys]), self.dist)  # one sync: (terms, [sum, count])
        means = (sums[:, 0] / sums[:, 1]).tolist()  # a term's mean over the steps that computed it
        dt = max(time.monotonic() - t0, 1e-9)
        self.elapsed += dt
        row = {"step": gstep, "stage": stage.name, "epoch": epoch + 1,
               "images_per_s": n_acc * self.opts.batch_size / dt}
        row.update(dict(zip(keys, means)))
        self.history.append(row)
        bar.set_postfix_str(f"{stage.name} epoch {epoch + 1}/{stage.epochs} loss {row['loss']:.4f} "
                            f"{row['images_per_s']:.0f} img/s")

    # -- pictures --------------------------------------------------------------
    def _write_pictures(self, stage: Stage, epoch: int) -> None:
        from ..media.images import write_image
        from .plots import loss_curve
        from .samples import encoder_cells, grid_image

        ids, poses = self.sample_ids.to(self.device), self.sample_poses.to(self.device)
        modules = list(self.method.modules.values()) + [m.module for m in self.ema.values()]
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            with torch.no_grad():
                if stage.sample is not None:
                    cells = stage.sample(ids, poses)
                else:
                    cells = encoder_cells(self.method.final_model(), self._float(self.data.images[ids]),
                                          self._float(self.data.images[poses]))
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        grid = grid_image(cells, self.data.images[ids], self.data.images[poses])
        write_image(self.workdir / "samples" / f"{stage.name}_epoch{epoch + 1:03d}.png", grid, overwrite=True)
        write_image(self.workdir / "loss.png", loss_curve(self.history), overwrite=True)
        write_bytes_atomic(self.workdir / "history.json", json.dumps(self.history).encode(), overwrite=True)
