"""Training throughput of every method on the shared loop, with the work per image.

    .venv/bin/python benchmarks/train_throughput.py [--methods lord,esser] [--size 64] [--batch 64]
        [--width 0.25] [--steps 24] [--loss vgg] [--device auto] [--baseline fc04dad]
        [--processes 1,2] [--append]

For each method and stage: GFLOP per image of one training step (every phase,
forward and backward, counted by torch's FlopCounterMode), images/s (median of
the logged windows after the first, i.e. after warm-up and compilation) and the
GFLOP/s that makes. ``--baseline REV`` also runs LORD on the loop of another
commit (checked out in a temporary git worktree, same networks, sizes and data):
the loop before the multi-method core is fc04dad. ``--processes 1,2`` runs the new
loop under torchrun with that many processes (gloo on CPU, NCCL on CUDA): the
global batch stays ``--batch``. Random data; the VGG loss with random weights when
the ImageNet file is absent (same cost). ``--append`` adds the tables to
benchmarks/RESULTS.md with hardware, date, commit and command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

# options that make each method's networks comparable at a --width
METHOD_OPTS = {
    "lord": lambda w: {"width": w},
    "esser": lambda w: {"width": w, "critic_width": w, "warmup": 0},
    # the instance-discrimination term on: a network pre-trained here (its one epoch is not timed)
    "cs": lambda w: {"width": w, "id_features": "npid", "npid_epochs": 1},
    # triplets mined by edge features (the mining is not timed); pixel verification at 64 x 64 at most
    "xiao": lambda w: {"width": w, "d_width": w, "pose_features": "edges"},
}


def make_loss(kind: str, device):
    from posecli.training.losses import ReconstructionLoss, vgg_weights_file

    if kind == "vgg" and not vgg_weights_file().is_file():
        return ReconstructionLoss.random_vgg().to(device)
    return ReconstructionLoss(kind).to(device)


def random_data(n: int, size: int, device):
    from posecli.training.method import TrainData

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    ids = min(64, n // 2)  # at least two images an identity: pairs and triplets need them
    return TrainData(images.to(device), (torch.arange(n) % ids).to(device), ids, "bench")


def options(a, method: str, epochs: int):
    from posecli.training import options_class
    from posecli.training.options import TrainOptions

    mo = options_class(method)(**METHOD_OPTS.get(method, lambda w: {"width": w})(a.width))
    return TrainOptions(method=method, image_size=a.size, batch_size=a.batch, epochs=epochs, loss=a.loss,
                        compile=a.compile, precision=a.precision, log_every=max(1, a.images // a.batch // 2),
                        method_options=mo)


def step_gflop(a, method: str, device) -> dict[str, float]:
    """GFLOP per image of one training step of each stage (all its phases)."""
    from torch.utils.flop_counter import FlopCounterMode

    from posecli.training import method_class
    from posecli.training.loop import Trainer, _PhaseRun
    from posecli.training.method import BATCH_KINDS

    opts = options(a, method, 1)
    data = random_data(a.batch, a.size, device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(method_class(method), data, opts, Path(tmp), device, make_loss(a.loss, device), quiet=True)
        out = {}
        for si, stage in enumerate(trainer.method.stages()):
            trainer._stage_i = si
            stage.begin()
            runs = [_PhaseRun(ph, trainer.method, trainer.dist, False, False) for ph in stage.phases]
            trainer._make_ema(si, stage, None)
            batch = trainer._batch(torch.arange(a.batch, device=device), BATCH_KINDS[stage.batch],
                                   torch.Generator(device=device).manual_seed(0))
            batch.step = 10**9  # past every warm-up: the full objective
            with FlopCounterMode(display=False) as fc:
                trainer._step(runs, stage, batch, 0, 1)
            out[stage.name] = fc.get_total_flops() / a.batch / 1e9
    return out


def rates(history: list[dict]) -> dict[str, float]:
    out = {}
    for stage in dict.fromkeys(h["stage"] for h in history):
        rows = [h["images_per_s"] for h in history if h["stage"] == stage]
        rows = rows[1:] or rows  # the first window: warm-up and compilation
        out[stage] = sorted(rows)[len(rows) // 2]
    return out


def loop_rates(a, method: str, device) -> dict[str, float]:
    """images/s of each stage on this checkout's loop (run in this process or under torchrun)."""
    from posecli.training import method_class
    from posecli.training import distributed as D
    from posecli.training.loop import Trainer

    per_epoch = a.images // a.batch
    opts = options(a, method, max(2, -(-a.steps // per_epoch)))
    dist, device = D.setup(device)
    try:
        data = random_data(a.images, a.size, device)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(method_class(method), data, opts, Path(tmp), device, make_loss(a.loss, device),
                              quiet=True, dist=dist)
            trainer.run()
        return rates(trainer.history) if dist.main else {}
    finally:
        D.teardown()


BASELINE = """
import json, sys, tempfile, torch
from pathlib import Path
sys.path.insert(0, {wt!r})
from posecli.training.loop import TrainData, Trainer, TrainOptions
from posecli.training.lord import LordMethod
from posecli.training.losses import ReconstructionLoss, vgg_weights_file
assert {wt!r} in __import__("posecli").__file__
a = json.loads({args!r})
device = torch.device(a["device"])
g = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (a["images"], 3, a["size"], a["size"]), generator=g, dtype=torch.uint8)
data = TrainData(images.to(device), (torch.arange(a["images"]) % 64).to(device), 64, "bench")
per_epoch = a["images"] // a["batch"]
opts = TrainOptions(image_size=a["size"], batch_size=a["batch"], width=a["width"], loss=a["loss"],
                    epochs=max(2, -(-a["steps"] // per_epoch)), log_every=max(1, per_epoch // 2), compile=a["compile"])
loss = ReconstructionLoss.random_vgg() if a["loss"] == "vgg" and not vgg_weights_file().is_file() else ReconstructionLoss(a["loss"])
with tempfile.TemporaryDirectory() as tmp:
    method = LordMethod(opts, data, device, loss.to(device))
    trainer = Trainer(method, data, opts, Path(tmp), device, quiet=True, precision=a["precision"])
    trainer.run()
print(json.dumps(trainer.history))
"""


def baseline_rates(a, rev: str, device) -> dict[str, float]:
    """LORD on the loop of commit ``rev``, from a temporary git worktree."""
    with tempfile.TemporaryDirectory() as tmp:
        wt = str(Path(tmp) / "wt")
        subprocess.run(["git", "worktree", "add", "--detach", "-f", wt, rev], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            args = json.dumps({**vars(a), "device": str(device)})
            r = subprocess.run([sys.executable, "-c", BASELINE.format(wt=wt, args=args)], capture_output=True,
                               text=True, cwd=tmp)
            if r.returncode:
                raise SystemExit(f"baseline {rev} failed:\n{r.stderr[-3000:]}")
            return rates(json.loads(r.stdout.strip().splitlines()[-1]))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=ROOT, capture_output=True)


def torchrun_rates(a, method: str, n: int) -> dict[str, float]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
           str(Path(__file__).resolve()), "--worker", method, *sys.argv[1:]]
    r = subprocess.run([c for c in cmd if c != "--append"], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{n} processes failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    from posecli.runtime import hardware_name, resolve_device
    from posecli.training import METHODS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=24, help="steps per stage")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--loss", default="vgg")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--baseline", metavar="REV", help="also run LORD on the loop of this commit (e.g. fc04dad)")
    ap.add_argument("--processes", default="", help="e.g. 1,2: also run under torchrun with these many processes")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--append", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    a = ap.parse_args()
    a.images = max(a.images, a.batch * 4)
    device = resolve_device(a.device)
    if a.worker:  # one torchrun process
        out = loop_rates(a, a.worker, device)
        if out:
            print(json.dumps(out))
        return

    methods = [m for m in a.methods.split(",") if m]
    lines = [f"size {a.size}, batch {a.batch}, width {a.width}, {a.loss} loss, precision {a.precision}, "
             f"device {device.type}, {a.images} random images", "",
             "| method | stage | GFLOP/image (train step) | images/s | GFLOP/s |", "|---|---|---:|---:|---:|"]
    lord_now = None
    for m in methods:
        flops, r = step_gflop(a, m, device), loop_rates(a, m, device)
        lord_now = r if m == "lord" else lord_now
        lines += [f"| {m} | {s} | {flops[s]:.3f} | {r[s]:.1f} | {flops[s] * r[s]:.1f} |" for s in r]
    if a.baseline and lord_now:
        old = baseline_rates(a, a.baseline, device)
        lines += ["", f"LORD on this loop against the loop of {a.baseline} (same run, same data):", "",
                  "| stage | this loop images/s | old loop images/s | ratio |", "|---|---:|---:|---:|"]
        lines += [f"| {s} | {lord_now[s]:.1f} | {old[s]:.1f} | {lord_now[s] / old[s]:.2f} |" for s in lord_now]
    procs = [int(p) for p in a.processes.split(",") if p]
    if procs:
        lines += ["", "Under torchrun (global batch as above):", "", "| method | processes | stage | images/s |",
                  "|---|---:|---|---:|"]
        for m in methods:
            for n in procs:
                lines += [f"| {m} | {n} | {s} | {v:.1f} |" for s, v in torchrun_rates(a, m, n).items()]
    text = "\n".join(lines)
    print(f"# train throughput on {hardware_name(device)}\n{text}")
    if a.append:
        from report import append_section

        append_section("train throughput", device, text)


if __name__ == "__main__":
    os.environ.setdefault("POSECLI_OFFLINE", "1")
    main()
