"""An instance-discrimination feature network trained offline on the user's own images.

C-S pulls features of mixed images towards those of self images through a network
pre-trained by instance discrimination (the paper: a ResNet-18, "pretrained using
the method of Wu et al. 2018", NPID). Where torchvision's ImageNet ResNet-18 cannot
be had, posecli pre-trains this small stand-in on the training images themselves:

- network: five feature levels like ResNet-18's (a stride-2 stem, then four stages
  of two 3x3 conv-BN-ReLU at widths 32, 64, 128, 256), a 128-d L2-normalised head;
- NPID (lemniscate.pytorch): a memory bank of every image's feature, a full
  non-parametric softmax at temperature 0.07 (instead of NCE: posecli's datasets fit
  in memory), memory momentum 0.5, random resized crops (scale 0.2-1), flips and
  colour jitter; SGD lr 0.03, momentum 0.9, weight decay 1e-4.

The network is cached in the work folder (keyed by the data and the recipe), so a
resumed or repeated run reuses it; it is frozen afterwards. Under torchrun rank 0
trains it and the other processes read the cache.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("posecli")
RECIPE = "npid-v1"


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallFeatures(nn.Module):
    """image (B, 3, S, S) in [0, 1] -> five feature maps (stem, stage 1-4), like ResNet-18's."""

    def __init__(self, dim: int = 128):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.stages = nn.ModuleList([_block(32, 32, 1), _block(32, 64, 2), _block(64, 128, 2), _block(128, 256, 2)])
        self.head = nn.Linear(256, dim)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = [self.stem(x * 2 - 1)]
        for stage in self.stages:
            out.append(stage(out[-1]))
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.forward(x)[-1].mean((2, 3))), dim=1)  # (B, dim)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop (scale 0.2-1), horizontal flip and colour jitter, per image."""
    b, _, s, _ = x.shape
    u = torch.rand(b, 6, generator=gen, device=gen.device).to(x.device)
    scale = (0.2 + 0.8 * u[:, 0]).sqrt()  # side of the crop, as a fraction
    cx, cy = (u[:, 1] * 2 - 1) * (1 - scale), (u[:, 2] * 2 - 1) * (1 - scale)
    flip = torch.where(u[:, 3] < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = scale * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = scale, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    brightness = 1 + 0.8 * (u[:, 4] - 0.5)
    grey = x.mean(1, keepdim=True)
    saturation = 1 + 0.8 * (u[:, 5] - 0.5)
    x = grey + (x - grey) * saturation[:, None, None, None]
    return (x * brightness[:, None, None, None]).clamp(0, 1)


@torch.enable_grad()
def pretrain(images: torch.Tensor, epochs: int, seed: int, batch_size: int = 128, quiet: bool = False) -> SmallFeatures:
    """NPID on uint8 images (N, 3, S, S), with a progress bar; returns the frozen network (in eval mode)."""
    from ..media.convert import uint8_to_float
    from ..progress import progress

    device = images.device
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = SmallFeatures().to(device)
    n = len(images)
    bank = F.normalize(torch.randn(n, 128, generator=g), dim=1).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    steps = max(1, math.ceil(n / batch_size))
    gen = torch.Generator(device=device).manual_seed(seed)
    bar = progress(total=epochs * steps, desc="pre-training features", unit="step", quiet=quiet)
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g).to(device)
        total = 0.0
        for i in range(steps):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            v = net.embed(augment(uint8_to_float(images[idx]), gen))  # (B, 128)
            logits = v @ bank.t() / 0.07  # (B, N): every image is its own class
            loss = F.cross_entropy(logits, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                bank[idx] = F.normalize(0.5 * bank[idx] + 0.5 * v.detach(), dim=1)
            total += float(loss.detach())
            bar.update(1)
        log.info(f"instance-discrimination pre-training epoch {epoch + 1}/{epochs}: loss {total / steps:.3f}")
    bar.close()
    return net.eval().requires_grad_(False)


def cached(images: torch.Tensor, data_key: str, epochs: int, seed: int, cache_dir: Path | None,
           quiet: bool = False) -> SmallFeatures:
    """The pre-trained network for these images: from the cache, else trained and cached.
    Under torchrun call it inside ``distributed.main_first``: rank 0 trains, the others
    read its cache."""
    import hashlib

    from safetensors.torch import load_file, save_file

    from ..fileio import atomic_path

    key = hashlib.sha1(f"{RECIPE}:{data_key}:{epochs}:{seed}".encode()).hexdigest()[:12]
    path = cache_dir / f"id-features-{key}.safetensors" if cache_dir is not None else None
    if path is not None and path.is_file():
        net = SmallFeatures().to(images.device)
        net.load_state_dict(load_file(str(path), device=str(images.device)))
        log.info(f"instance-discrimination features from {path}")
        return net.eval().requires_grad_(False)
    log.warning(f"pre-training the instance-discrimination features on the training images ({epochs} epochs; "
                "cached in the work folder)")
    net = pretrain(images, epochs, seed, quiet=quiet)
    if path is not None:
        with atomic_path(path, overwrite=True) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    return net
