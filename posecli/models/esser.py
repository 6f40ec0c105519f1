"""Esser, Haux & Ommer 2019 networks: two encoders, a decoder, the MI critic.

The paper ("Unsupervised robust disentangling of latent characteristics for
image synthesis", ICCV 2019) encodes pose with a stochastic encoder E_pi (a
diagonal Gaussian) and identity with a deterministic E_alpha, decodes their
concatenation with D, and bounds the mutual information between the two codes
with a separable critic T(pi, alpha) = <f(pi), g(alpha)> trained as a density-
ratio classifier (see posecli/training for the losses and the Lagrangian).

Taken from the PyTorch port of the reference code (CompVis/robust-disentangling,
rodi/pt/models.py; re-derived, not copied): no normalisation layers; ReLU;
one-conv residual blocks; stride-2 conv4x4 down, conv3x3 + PixelShuffle up;
widths 16 ... 256; 4x4 spatial codes of 16 channels each; pose log-variance
clamped to [-30, 10]; the decoder's residual blocks act on the concatenated
codes; critic halves are conv3x3 -> 512, 4 residual blocks, ReLU, conv3x3.

posecli's own choices:
- the decoder ends in a sigmoid: posecli images are floats in [0, 1] (the port
  regresses [-1, 1] with no output activation);
- ResBlock applies its ReLU (the port computes it and then convolves the
  un-activated input, an upstream bug);
- encoder widths double per level (16, 32, 64, 128, 256) where the port grows
  as 16, 32, 128, 256; the decoder mirrors them;
- the codes stay spatial (B, C, 4, 4) inside the networks, as in the port, and
  are flattened to (B, C*16) vectors only at the PoseModel interface (the TF
  DeepFashion model pools to vectors instead; pooling would drop where a pose
  is, which a 4x4 map keeps);
- He initialisation with near-identity residual blocks and ICNR upsampling
  (the port keeps PyTorch's default initialisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import PoseModel


@dataclass(frozen=True)
class EsserConfig:
    image_size: int = 64
    identity_channels: int = 16  # codes are (C, 4, 4) maps; the interface sees C*16 numbers
    pose_channels: int = 16
    width: float = 1.0  # channel multiplier; 1.0 = the reference networks
    n_res: int = 4  # residual blocks at 4x4, in each encoder and in the decoder
    critic_channels: int = 512

    def __post_init__(self):
        self.n_down  # reject a bad size when the config is made, not at the first forward

    def ch(self, c: int) -> int:
        return max(8, int(round(c * self.width)))

    @property
    def n_down(self) -> int:
        n = int(math.log2(max(self.image_size // 4, 1)))
        if self.image_size < 8 or 4 * 2**n != self.image_size:
            raise ValueError(f"image size {self.image_size} is not 4 * a power of two, at least 8 (32, 64, 128)")
        return n

    @property
    def identity_dim(self) -> int:
        return self.identity_channels * 16

    @property
    def pose_dim(self) -> int:
        return self.pose_channels * 16

    @property
    def encoder_channels(self) -> tuple[int, ...]:
        """Width at each resolution, from S x S down to 4x4 (n_down + 1 entries)."""
        return (self.ch(16),) + tuple(min(self.ch(256), self.ch(16 * 2 ** (i + 1))) for i in range(self.n_down))


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class ResBlock(nn.Module):
    """x + conv3x3(ReLU(x)): one conv per block, as the reference (activation applied)."""

    def __init__(self, c: int):
        super().__init__()
        self.act = nn.ReLU()
        self.conv = conv3x3(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.act(x))


class Down(nn.Conv2d):
    """stride-2 conv4x4: halves H and W."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 4, stride=2, padding=1)


class Up(nn.Module):
    """conv3x3 to 4*c_out, then PixelShuffle(2): doubles H and W without transposed convs."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv3x3(c_in, 4 * c_out)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def init_weights(module: nn.Module, res_scale: float = 0.1) -> None:
    """He initialisation by what each conv reads; small residual branches; ICNR Up.

    Between residual branches the path is linear (conv, Down, Up, skip sums),
    so a conv that does not read a ReLU's output gets gain 1: with ReLU's
    sqrt(2) everywhere the variance doubles at each such conv; at 64px the
    untrained pose mean had std 2.5 (0.4 with gain 1) and the decoder's
    pre-sigmoid values std 15 (0.3), most pixels saturated. Convs that read a
    ReLU (every residual branch, the encoders' and critics' last convs) get
    the ReLU gain.

    Each ResBlock's branch starts at ``res_scale`` of that: full-size branches
    each add their own variance over the 4-9 blocks in a row; small ones make
    the deep stacks start near the identity, while their gradients (ReLU(x)
    times the upstream gradient) are not zero, so they learn from the first step.
    """
    after_relu = set()
    for m in module.modules():
        if isinstance(m, nn.Sequential):
            layers = list(m)
            after_relu.update(id(b) for a, b in zip(layers[:-1], layers[1:]) if isinstance(a, nn.ReLU))
        if isinstance(m, ResBlock):
            after_relu.add(id(m.conv))
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu" if id(m) in after_relu else "linear")
            nn.init.zeros_(m.bias)
    for m in module.modules():  # a second pass: modules() lists a block before its conv
        if isinstance(m, ResBlock):
            with torch.no_grad():
                m.conv.weight.mul_(res_scale)
        if isinstance(m, Up):
            # ICNR (Aitken et al. 2017): the four sub-pixel outputs of a channel share
            # one kernel, so at init Up is nearest upsampling followed by a conv and
            # shows no checkerboard; PixelShuffle reads channel c*4 + k as sub-pixel k
            w = m.conv.weight
            with torch.no_grad():
                w.copy_(w[::4].repeat_interleave(4, dim=0))


class Encoder(nn.Module):
    """image (B, 3, S, S) -> code map (B, out_channels, 4, 4)."""

    def __init__(self, cfg: EsserConfig, out_channels: int):
        super().__init__()
        widths = cfg.encoder_channels
        layers: list[nn.Module] = [conv3x3(3, widths[0])]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [ResBlock(c_in), Down(c_in, c_out)]
        layers += [ResBlock(widths[-1]) for _ in range(cfg.n_res)]
        layers += [nn.ReLU(), conv3x3(widths[-1], out_channels)]
        self.layers = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, out_channels, 4, 4)


class Decoder(nn.Module):
    """code map (B, in_channels, 4, 4) -> image (B, 3, S, S) in [0, 1]."""

    def __init__(self, cfg: EsserConfig, in_channels: int):
        super().__init__()
        widths = cfg.encoder_channels[::-1]  # mirror of the encoder: 4x4 first
        layers: list[nn.Module] = [conv3x3(in_channels, widths[0])]
        layers += [ResBlock(widths[0]) for _ in range(cfg.n_res)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [ResBlock(c_in), Up(c_in, c_out)]
        layers += [ResBlock(widths[-1]), conv3x3(widths[-1], 3), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)  # (B, 3, S, S)


class EsserModel(PoseModel):
    """E_pi (diagonal Gaussian pose), E_alpha (deterministic identity) and D.

    The MI critics are training-only and live in the training code.
    """

    method = "esser"
    Config = EsserConfig

    def __init__(self, config: EsserConfig):
        super().__init__(config)
        cfg = config
        self.identity_encoder = Encoder(cfg, cfg.identity_channels)
        self.pose_encoder = Encoder(cfg, 2 * cfg.pose_channels)  # mean and log-variance
        self.decoder = Decoder(cfg, cfg.pose_channels + cfg.identity_channels)

    def pose_distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of the pose code, each (B, Cp, 4, 4), in fp32.

        fp32 because the KL and the sampling exponentiate the log-variance; the
        maps are tiny. The clamp keeps exp(logvar) finite, as the reference.
        """
        mean, logvar = self.pose_encoder(x).float().chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 10.0)

    def encode_pose(self, x: torch.Tensor) -> torch.Tensor:
        return self.pose_distribution(x)[0].flatten(1)  # the mean at inference: (B, pose_dim)

    def encode_identity(self, x: torch.Tensor) -> torch.Tensor:
        return self.identity_encoder(x).float().flatten(1)  # (B, identity_dim)

    def generate(self, identity: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Codes (B, D) as the encoders give them; (B, C, 4, 4) maps (a pose sample) work too."""
        cfg = self.config
        z = torch.cat([pose.reshape(-1, cfg.pose_channels, 4, 4),
                       identity.reshape(-1, cfg.identity_channels, 4, 4)], dim=1)  # (B, Cp + Ci, 4, 4)
        if self.decoder.layers[0].weight.is_contiguous(memory_format=torch.channels_last):
            z = z.contiguous(memory_format=torch.channels_last)  # follow the weights' layout
        return self.decoder(z)  # (B, 3, S, S)


class CriticNet(nn.Module):
    """One half of the separable critic: code map (B, C, 4, 4) -> features (B, 16, 4, 4)."""

    out_channels = 16  # fixed, so the logit's scale does not change with ``width``

    def __init__(self, cfg: EsserConfig, in_channels: int):
        super().__init__()
        c = cfg.ch(cfg.critic_channels)
        self.layers = nn.Sequential(
            conv3x3(in_channels, c),
            *[ResBlock(c) for _ in range(4)],
            nn.ReLU(),
            conv3x3(c, self.out_channels),
        )
        init_weights(self)
        # the logit sums out_channels*16 = 256 products of the two halves' features;
        # each half's last conv starts at 256**-0.25 of He scale, so the sum starts
        # 1/sqrt(256) smaller: logits of O(1) (std ~0.5 on N(0, 1) codes), and the
        # critic's BCE does not start saturated
        with torch.no_grad():
            self.layers[-1].weight.mul_((self.out_channels * 16) ** -0.25)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z)


class Critic(nn.Module):
    """Separable MI critic T(pi, alpha) = sum over C, H, W of net_pose(pi) * net_identity(alpha).

    Separable, so the logits of all B x B pairings are one matrix product of the
    flattened features; the training code makes the marginal pairs.
    """

    def __init__(self, cfg: EsserConfig):
        super().__init__()
        self.net_pose = CriticNet(cfg, cfg.pose_channels)
        self.net_identity = CriticNet(cfg, cfg.identity_channels)

    def forward(self, pose: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """pose (B, Cp, 4, 4), identity (B, Ci, 4, 4) -> one logit per sample (B,)."""
        return (self.net_pose(pose) * self.net_identity(identity)).sum(dim=(1, 2, 3))
