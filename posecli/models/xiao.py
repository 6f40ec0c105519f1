"""Xiao, Liu & Lee 2019 ("Identity from here, pose from there") networks.

The generator (paper section 3.1) has two encoders and one decoder:

- the identity encoder E_id is Conv-ReLU blocks, the pose encoder E_pose
  Conv-InstanceNorm-ReLU blocks ("to remove instance-specific feature means and
  variances, which are correlated with identity"); both give feature *maps*;
- the maps are concatenated on channels and decoded by pix2pixHD's generator "from
  the residual blocks onwards", with nearest upsampling + conv in place of
  transposed convolutions.

The paper leaves the layers to pix2pixHD; posecli takes them from its
GlobalGenerator (NVIDIA/pix2pixHD; re-derived, not copied): a
reflection-padded 7x7 conv of ngf = 64 channels, stride-2 3x3 convs doubling the
channels down to a 16x16 map (one at 32 px, two at 64, three at 128), 9 residual
blocks (reflection pad, conv3x3-IN-ReLU-conv3x3-IN), and back up; N(0, 0.02)
initialisation. The trunk is split into the two encoders at full width each, and a
1x1 conv brings the concatenation back to one trunk's width (the channel split is
not given in the paper: equal halves). The output is tanh mapped to [0, 1], the
range of posecli's images.

Codes are the maps flattened (C x 16 x 16 numbers each) at the ``PoseModel``
interface, so swap, animate, composite, encode and eval work unchanged.

The discriminators are training-only (posecli/training/xiao.py owns the losses):
a 2-scale PatchGAN (pix2pixHD's MultiscaleDiscriminator: 3 stride-2 layers, kernel
4, padding 2, LeakyReLU 0.2, instance norm, channels capped at 512; the second
scale sees the image average-pooled) with an auxiliary clip classifier on the first
scale's last features (AC-GAN), and a pair discriminator, the same PatchGAN on the
6-channel concatenation of two images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import PoseModel

MAP_SIZE = 16  # side of the identity and pose maps


@dataclass(frozen=True)
class XiaoConfig:
    image_size: int = 64
    width: float = 1.0  # channel multiplier: ngf = 64 * width
    n_res: int = 9  # residual blocks of the decoder (pix2pixHD: 9)

    def __post_init__(self):
        self.n_down  # reject a bad size when the config is made

    @property
    def ngf(self) -> int:
        return max(4, int(round(64 * self.width)))

    @property
    def n_down(self) -> int:
        n = int(round(math.log2(max(self.image_size, 1) / MAP_SIZE)))
        if n < 1 or MAP_SIZE * 2**n != self.image_size:
            raise ValueError(f"image size {self.image_size} is not 16 * a power of two, at least 32 (32, 64, 128)")
        return n

    @property
    def map_channels(self) -> int:
        return self.ngf * 2**self.n_down

    @property
    def identity_dim(self) -> int:
        return self.map_channels * MAP_SIZE * MAP_SIZE

    @property
    def pose_dim(self) -> int:
        return self.identity_dim


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """pix2pixHD's initialisation: convolutions N(0, std), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _norm(c: int, on: bool) -> nn.Module:
    return nn.InstanceNorm2d(c) if on else nn.Identity()


class Encoder(nn.Module):
    """image (B, 3, S, S) -> map (B, ngf * 2^n, 16, 16); instance norm on (E_pose) or off (E_id)."""

    def __init__(self, cfg: XiaoConfig, norm: bool):
        super().__init__()
        c = cfg.ngf
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, c, 7), _norm(c, norm), nn.ReLU()]
        for _ in range(cfg.n_down):
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), _norm(2 * c, norm), nn.ReLU()]
            c *= 2
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x * 2 - 1)  # pix2pixHD's inputs are in [-1, 1]


class ResBlock(nn.Module):
    """x + (reflect pad, conv3x3, IN, ReLU, reflect pad, conv3x3, IN)(x), as pix2pixHD."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Up(nn.Module):
    """Nearest x2, conv3x3, IN, ReLU (no transposed convolution: no checkerboard)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.InstanceNorm2d(c_out), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(F.interpolate(x, scale_factor=2, mode="nearest"))


class Decoder(nn.Module):
    """(identity map, pose map) -> (image (B, 3, S, S) in [0, 1], features before RGB (B, ngf, S, S))."""

    def __init__(self, cfg: XiaoConfig):
        super().__init__()
        c = cfg.map_channels
        self.fuse = nn.Sequential(nn.Conv2d(2 * c, c, 1), nn.InstanceNorm2d(c), nn.ReLU())
        self.res = nn.Sequential(*[ResBlock(c) for _ in range(cfg.n_res)])
        ups = []
        for _ in range(cfg.n_down):
            ups.append(Up(c, c // 2))
            c //= 2
        self.up = nn.Sequential(*ups)
        self.to_rgb = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(c, 3, 7))

    def forward(self, identity: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.up(self.res(self.fuse(torch.cat([identity, pose], dim=1))))
        return (torch.tanh(self.to_rgb(feats)) + 1) / 2, feats


class XiaoModel(PoseModel):
    """E_id, E_pose and the decoder; the discriminators live in training."""

    method = "xiao"
    Config = XiaoConfig

    def __init__(self, config: XiaoConfig):
        super().__init__(config)
        self.identity_encoder = Encoder(config, norm=False)
        self.pose_encoder = Encoder(config, norm=True)
        self.decoder = Decoder(config)
        init_normal(self)

    def _map(self, code: torch.Tensor) -> torch.Tensor:
        m = code.reshape(-1, self.config.map_channels, MAP_SIZE, MAP_SIZE)
        if self.decoder.fuse[0].weight.is_contiguous(memory_format=torch.channels_last):
            m = m.contiguous(memory_format=torch.channels_last)  # follow the weights' layout
        return m

    def encode_identity(self, x: torch.Tensor) -> torch.Tensor:
        return self.identity_encoder(x).float().flatten(1)  # (B, identity_dim)

    def encode_pose(self, x: torch.Tensor) -> torch.Tensor:
        return self.pose_encoder(x).float().flatten(1)  # (B, pose_dim)

    def generate(self, identity: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Codes (B, D) as the encoders give them, or (B, C, 16, 16) maps."""
        return self.decoder(self._map(identity), self._map(pose))[0]


# -- discriminators (training only) ---------------------------------------------

class PatchGAN(nn.Module):
    """pix2pixHD's NLayerDiscriminator (n_layers 3): image (B, c_in, H, W) -> (patch logits, last features)."""

    def __init__(self, c_in: int, ndf: int, n_layers: int = 3):
        super().__init__()
        cap = 8 * ndf  # pix2pixHD caps at 512 = 8 x 64
        layers: list[nn.Module] = [nn.Conv2d(c_in, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2)]
        c = ndf
        for i in range(1, n_layers + 1):
            c_out = min(2 * c, cap)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(c, c_out, 4, stride=stride, padding=2), nn.InstanceNorm2d(c_out), nn.LeakyReLU(0.2)]
            c = c_out
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 4, padding=2)
        self.channels = c

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.trunk(x * 2 - 1)
        return self.head(f), f


class RealFakeDiscriminator(nn.Module):
    """D_real: a PatchGAN at full and at half resolution, and the auxiliary clip classifier
    (AC-GAN: linear on the first scale's pooled last features)."""

    def __init__(self, ndf: int, n_classes: int, n_scales: int = 2):
        super().__init__()
        self.scales = nn.ModuleList([PatchGAN(3, ndf) for _ in range(n_scales)])
        self.classify = nn.Linear(self.scales[0].channels, n_classes)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """-> (patch logits per scale, clip logits (B, n_classes))."""
        outs, logits = [], None
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out, f = d(x)
            outs.append(out)
            if i == 0:
                logits = self.classify(f.float().mean((2, 3)))
        return outs, logits


class PairDiscriminator(nn.Module):
    """D_pair: do two images show the same object? A PatchGAN on their 6-channel concatenation
    (a matching-aware discriminator, as StackGAN-v2)."""

    def __init__(self, ndf: int):
        super().__init__()
        self.net = PatchGAN(6, ndf)
        init_normal(self)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([a, b], dim=1))[0]
