"""Reconstruction losses.

vgg: pixel L1 + L1 of frozen VGG16 ImageNet features (torchvision indices
     2, 7, 12, 21, 30), as in LORD. Needs torchvision's vgg16 weights.
lap: pixel L1 + Laplacian-pyramid L1, the offline loss (no pretrained network).
l1:  pixel L1 only.
auto: vgg when its weights can be had, else lap with a one-line notice.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..downloads import fallback_notice
from ..errors import MissingWeightsError, UsageError

log = logging.getLogger("posecli")
LOSSES = ("auto", "vgg", "lap", "l1")
VGG_LAYERS = (2, 7, 12, 21, 30)


def hub_file(weights) -> Path:
    """Where torchvision keeps a weights enum member's file ($TORCH_HOME/hub/checkpoints/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def vgg_weights_file() -> Path:
    from torchvision.models import VGG16_Weights

    return hub_file(VGG16_Weights.IMAGENET1K_V1)


def pretrained(build, weights, name: str) -> nn.Module:
    """``build(weights=weights)`` the normal way (torchvision downloads into the hub folder),
    or MissingWeightsError naming the file and where to place it. POSECLI_OFFLINE forbids
    the download; ``weights=None`` builds random weights (speed benchmarks only)."""
    from ..downloads import forget_failure, recent_failure, record_failure
    from ..runtime import OFFLINE_ENV, offline

    if weights is None:
        return build(weights=None)
    target = hub_file(weights)
    there = target.is_file()
    if offline() and not there:
        raise MissingWeightsError(f"{name} ImageNet weights are not in place and {OFFLINE_ENV} forbids "
                                  f"downloading them; place {weights.url} at {target}",
                                  short=f"{name} ImageNet weights not on disk ({OFFLINE_ENV} is set)")
    why = None if there else recent_failure(weights.url)
    if why:  # no new attempt (and no wait for a timeout) within a day of a failed one
        raise MissingWeightsError(f"{name} ImageNet weights are not in place: {why}; download {weights.url} and "
                                  f"place it at {target}", short=f"{name} ImageNet weights unavailable ({why.split(';')[0]})")
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):  # torch.hub announces downloads on stdout: -v shows it
            net = build(weights=weights)
    except Exception as e:  # URLError, hash mismatch, SSL...: any failure to obtain the file
        if not there:
            record_failure(weights.url, type(e).__name__)
        raise MissingWeightsError(f"{name} ImageNet weights are unavailable ({type(e).__name__}); download "
                                  f"{weights.url} and place it at {target}",
                                  short=f"{name} ImageNet weights could not be downloaded ({type(e).__name__})") from None
    finally:
        if said.getvalue().strip():
            log.info(said.getvalue().strip())
    if not there:
        forget_failure(weights.url)
    return net


class ImageNetInput(nn.Module):
    """ImageNet normalisation of [0, 1] images, for the frozen feature networks."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class VGGFeatures(nn.Module):
    """Frozen VGG16 conv features at VGG_LAYERS of ImageNet-normalised input."""

    def __init__(self, pretrained_weights: bool = True):
        super().__init__()
        from torchvision.models import VGG16_Weights, vgg16

        weights = VGG16_Weights.IMAGENET1K_V1 if pretrained_weights else None
        self.features = pretrained(vgg16, weights, "VGG16").features[: max(VGG_LAYERS) + 1]
        self.features.eval().requires_grad_(False)
        self.normalise = ImageNetInput()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalise(x)
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_LAYERS:
                out.append(x)
        return out


def resnet18_weights_file() -> Path:
    from torchvision.models import ResNet18_Weights

    return hub_file(ResNet18_Weights.IMAGENET1K_V1)


class ResNetFeatures(nn.Module):
    """Frozen ResNet-18 ImageNet features (stem and layer1..layer4) of ImageNet-normalised
    input upsampled to 128 px: C-S's instance-discrimination network. Raises
    MissingWeightsError naming the file when its weights cannot be had."""

    def __init__(self):
        super().__init__()
        from torchvision.models import ResNet18_Weights, resnet18

        net = pretrained(resnet18, ResNet18_Weights.IMAGENET1K_V1, "ResNet-18")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.blocks = nn.ModuleList([nn.Sequential(net.maxpool, net.layer1), net.layer2, net.layer3, net.layer4])
        self.normalise = ImageNetInput()
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNetFeatures":
        return super().train(False)  # batch norm keeps its ImageNet statistics

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(self.normalise(x), size=128, mode="bilinear", align_corners=False)
        out = [self.stem(x)]
        for block in self.blocks:
            out.append(block(out[-1]))
        return out


def _blur_down(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype) / 16
    k2 = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 5, 5)
    x = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k2, groups=x.shape[1])
    return x[:, :, ::2, ::2]


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    out = []
    for _ in range(levels):
        if min(x.shape[-2:]) < 8:
            break
        down = _blur_down(x)
        up = F.interpolate(down, size=x.shape[-2:], mode="bilinear", align_corners=False)
        out.append(x - up)
        x = down
    out.append(x)
    return out


class ReconstructionLoss(nn.Module):
    """loss(pred, target) -> scalar; ``kind`` is the resolved loss name."""

    def __init__(self, kind: str = "auto"):
        super().__init__()
        if kind not in LOSSES:
            raise UsageError(f"--loss {kind}: expected one of {', '.join(LOSSES)}")
        self.vgg = None
        if kind in ("auto", "vgg"):
            try:
                self.vgg = VGGFeatures()
                kind = "vgg"
            except MissingWeightsError as e:
                if kind == "vgg":
                    raise
                fallback_notice(f"{e.short}: using the offline loss 'lap'", f"{e}; the offline loss 'lap' "
                                "(pixel L1 + Laplacian-pyramid L1) is used instead")
                kind = "lap"
        self.kind = kind

    @classmethod
    def random_vgg(cls) -> "ReconstructionLoss":
        """The VGG loss's cost with random weights: for benchmarks where the file is absent."""
        loss = cls("l1")
        loss.vgg, loss.kind = VGGFeatures(pretrained_weights=False), "vgg"
        return loss

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.float(), target.float()
        loss = (pred - target).abs().mean()
        if self.kind == "vgg":
            with torch.no_grad():
                t_feats = self.vgg(target)
            for p, t in zip(self.vgg(pred), t_feats):
                loss = loss + (p.float() - t.float()).abs().mean()
        elif self.kind == "lap":
            levels = max(1, int(math.log2(min(pred.shape[-2:]))) - 3)
            for i, (p, t) in enumerate(zip(laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels))):
                loss = loss + (2.0 ** i) * (p - t).abs().mean()
        return loss
