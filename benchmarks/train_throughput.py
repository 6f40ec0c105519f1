"""Training throughput: posecli's loop against a plain loop done the lord-pytorch way.

    .venv/bin/python benchmarks/train_throughput.py [--size 64] [--steps 30] [--batch 128] [--device auto] [--append]

Both train the same LORD networks with the VGG perceptual loss (random VGG
weights when the ImageNet file is absent: same cost). posecli: data resident on
the device as uint8, bf16 autocast + channels_last on CUDA, frozen VGG with the
target's features under no_grad, no host sync per step. Plain: fp32 NCHW, a
DataLoader of float tensors, VGG with gradients, .item() every step.
Prints one table (images/s of stage 1 and stage 2, and the ratio); ``--append`` adds it to
benchmarks/RESULTS.md with hardware, date, commit and command.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from posecli.runtime import hardware_name, resolve_device
from posecli.training.loop import TrainData, Trainer, TrainOptions
from posecli.training.lord import LordMethod
from posecli.training.losses import ReconstructionLoss, vgg_weights_file


def make_loss(device) -> ReconstructionLoss:
    loss = ReconstructionLoss("vgg") if vgg_weights_file().is_file() else ReconstructionLoss.random_vgg()
    return loss.to(device)


def posecli_rates(opts, data, device, steps) -> tuple[float, float]:
    per_epoch = len(data.images) // opts.batch_size
    opts = TrainOptions(**{**opts.__dict__, "epochs": max(2, -(-steps // per_epoch)), "log_every": per_epoch})
    with tempfile.TemporaryDirectory() as tmp:
        method = LordMethod(opts, data, device, make_loss(device))
        trainer = Trainer(method, data, opts, Path(tmp), device, quiet=True)
        trainer.run()
    rates = {}
    for stage in ("stage1", "stage2"):  # skip the first epoch: warm-up and compilation
        rows = [h["images_per_s"] for h in trainer.history if h["stage"] == stage][1:]
        rates[stage] = sorted(rows)[len(rows) // 2]
    return rates["stage1"], rates["stage2"]


def plain_rates(opts, data, device, steps) -> tuple[float, float]:
    """The lord-pytorch way: fp32 NCHW, DataLoader, VGG with gradients, .item() per step."""
    from torch.utils.data import DataLoader, TensorDataset

    loss_fn = make_loss(device)
    loss_fn.vgg.requires_grad_(True)
    method = LordMethod(opts, data, device, loss_fn)
    model = method.model.to(memory_format=torch.contiguous_format)
    ds = TensorDataset(data.images.cpu().float() / 255, data.labels.cpu(), torch.arange(len(data.images)))
    loader = DataLoader(ds, batch_size=opts.batch_size, shuffle=True, drop_last=True)
    rates = []
    for stage in (1, 2):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
        n, t0 = 0, None
        while n < steps:
            for x, y, idx in loader:
                x, y, idx = x.to(device), y.to(device), idx.to(device)
                if stage == 1:
                    pose = method.pose_table(idx)
                    rec = model.generate(method.identity_table(y), pose + torch.randn_like(pose))
                    loss = loss_fn(rec, x) + 1e-3 * pose.pow(2).sum(1).mean()
                else:
                    rec = model.generate(model.encode_identity(x), model.encode_pose(x))
                    loss = loss_fn(rec, x) + F.mse_loss(model.encode_pose(x), method.pose_table(idx))
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss.item()  # the per-step host sync of a tqdm postfix
                n += 1
                if n == 3:  # warm-up done
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                if n >= steps:
                    break
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append((steps - 3) * opts.batch_size / (time.perf_counter() - t0))
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    a = ap.parse_args()
    device = resolve_device(a.device)
    torch.manual_seed(0)
    n = max(a.images, a.batch * 4)
    data = TrainData((torch.rand(n, 3, a.size, a.size) * 255).to(torch.uint8).to(device),
                     (torch.arange(n) % 64).to(device), 64, "bench")
    opts = TrainOptions(image_size=a.size, batch_size=a.batch, width=a.width, loss="vgg", compile=a.compile)
    p1, p2 = posecli_rates(opts, data, device, a.steps)
    q1, q2 = plain_rates(opts, data, device, a.steps)
    text = "\n".join([
        f"size {a.size}, batch {a.batch}, width {a.width}, {opts.loss} loss, device {device.type}",
        "", "| loop | stage 1 images/s | stage 2 images/s |", "|---|---:|---:|",
        f"| posecli | {p1:.1f} | {p2:.1f} |", f"| plain | {q1:.1f} | {q2:.1f} |",
        f"| ratio | {p1 / q1:.2f} | {p2 / q2:.2f} |"])
    print(f"# train throughput on {hardware_name(device)}\n{text}")
    if a.append:
        from report import append_section

        append_section("train throughput", device, text)


if __name__ == "__main__":
    main()
