"""LORD networks (Gabbay & Hoshen): AdaIN generator, modulation, two encoders.

Stage 1 optimises latent tables feeding ``LordGenerator``; stage 2 trains the
encoders of ``LordModel`` to amortise them (see posecli/training/lord.py).
The reference widths (lord-pytorch, 64x64) are the defaults; ``width`` scales
every channel count for small CPU-trained models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import PoseModel
from .layers import ConvEncoder, adain, upsample2


@dataclass(frozen=True)
class LordConfig:
    image_size: int = 64
    identity_dim: int = 256
    pose_dim: int = 128
    width: float = 1.0  # channel multiplier; 1.0 = the reference networks

    def ch(self, c: int) -> int:
        return max(8, int(round(c * self.width)))

    @property
    def n_up(self) -> int:
        n = int(math.log2(self.image_size // 4))
        if 4 * 2**n != self.image_size:
            raise ValueError(f"image size {self.image_size} is not 4 * a power of two (32, 64, 128)")
        return n

    @property
    def gen_channels(self) -> int:
        return self.ch(256)

    @property
    def encoder_channels(self) -> tuple[int, ...]:
        widths = [64, 128, 256, 256, 256, 256, 256]
        return tuple(self.ch(c) for c in widths[: self.n_up + 1])


class Modulation(nn.Module):
    """identity code -> per-AdaIN-layer (scale, bias)."""

    def __init__(self, identity_dim: int, channels: int, n_layers: int):
        super().__init__()
        self.channels, self.n_layers = channels, n_layers
        self.fc = nn.Linear(identity_dim, n_layers * 2 * channels)

    def forward(self, identity: torch.Tensor) -> torch.Tensor:
        return self.fc(identity).view(-1, self.n_layers, 2, self.channels)  # (B, L, 2, C)


class LordGenerator(nn.Module):
    """pose code at the bottom (MLP to a 4x4 map), identity through AdaIN params."""

    def __init__(self, cfg: LordConfig):
        super().__init__()
        c = cfg.gen_channels
        self.c = c
        self.fc = nn.Sequential(
            nn.Linear(cfg.pose_dim, cfg.ch(512)), nn.LeakyReLU(0.2),
            nn.Linear(cfg.ch(512), cfg.ch(1024)), nn.LeakyReLU(0.2),
            nn.Linear(cfg.ch(1024), c * 16), nn.LeakyReLU(0.2),
        )
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(cfg.n_up))
        self.act = nn.LeakyReLU(0.2)
        self.head = nn.Sequential(
            nn.Conv2d(c, cfg.ch(64), 5, padding=2), nn.LeakyReLU(0.2),
            nn.Conv2d(cfg.ch(64), 3, 7, padding=3), nn.Sigmoid(),
        )

    def forward(self, pose: torch.Tensor, adain_params: torch.Tensor) -> torch.Tensor:
        x = self.fc(pose).view(-1, self.c, 4, 4)
        if self.convs[0].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # follow the weights' layout
        for i, conv in enumerate(self.convs):
            x = self.act(conv(upsample2(x)))
            x = adain(x, adain_params[:, i, 1], adain_params[:, i, 0])  # (scale, bias) = [1], [0]
        return self.head(x)  # (B, 3, S, S)


class LordModel(PoseModel):
    method = "lord"
    Config = LordConfig

    def __init__(self, config: LordConfig):
        super().__init__(config)
        cfg = config
        self.generator = LordGenerator(cfg)
        self.modulation = Modulation(cfg.identity_dim, cfg.gen_channels, cfg.n_up)
        hidden = cfg.ch(256)
        self.identity_encoder = ConvEncoder(cfg.image_size, cfg.encoder_channels, hidden, cfg.identity_dim)
        self.pose_encoder = ConvEncoder(cfg.image_size, cfg.encoder_channels, hidden, cfg.pose_dim)
        # The encoders predict standardised codes: code = mean + scale * encoder(x), with
        # each stage-1 table's per-dimension mean and spread (set when stage 2 starts).
        # The identity table is tiny (its scale lives in the modulation network), and
        # regressing it directly learned less than half as fast (toy cars, 10 epochs:
        # relative error 1.07 against 0.60 standardised).
        for kind, dim in (("identity", cfg.identity_dim), ("pose", cfg.pose_dim)):
            self.register_buffer(f"{kind}_mean", torch.zeros(dim))
            self.register_buffer(f"{kind}_scale", torch.ones(dim))

    # model files from posecli 0.1.0 have no statistics: they keep the identity map
    optional_state = ("identity_mean", "identity_scale", "pose_mean", "pose_scale")

    @torch.no_grad()
    def set_code_statistics(self, identity_codes: torch.Tensor, pose_codes: torch.Tensor) -> None:
        """Per-dimension mean and spread of the codes the encoders are to predict."""
        for kind, codes in (("identity", identity_codes), ("pose", pose_codes)):
            codes = codes.float()
            getattr(self, f"{kind}_mean").copy_(codes.mean(0))
            getattr(self, f"{kind}_scale").copy_(codes.std(0, correction=0).clamp_min(1e-6))

    def encode_identity(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.identity_mean, self.identity_scale, self.identity_encoder(x).float())

    def encode_pose(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.pose_mean, self.pose_scale, self.pose_encoder(x).float())

    def generate(self, identity: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        return self.generator(pose, self.modulation(identity))
