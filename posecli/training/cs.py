"""C-S disentanglement (Ren, Yang, Wang & Zeng 2021): no labels at all.

Stage 1, latent optimisation: a style (identity) code and a content (pose) code per
image, optimised jointly with the generator of posecli/models/cs.py (multiple C-S
fusion: content normalised to one shared distribution, style predicting its scale
and shift before every layer). Losses (paper eq. 4-7):
- w_P x perceptual reconstruction of the image from its two codes, after the
  reparametrisation module R: N(0, 1) noise added to both codes in training;
- w_IB x information bottleneck gamma_c |‖c‖² - C_c| + gamma_s |‖s‖² - C_s|, the
  capacities rising linearly over ``ib_ramp`` of stage 1;
- w_ID x instance discrimination: features of mixed images G(s_i, c_j) pulled towards
  those of G(s_i, c_i) (and G(s_j, c_i) towards G(s_j, c_j)) through a frozen
  ResNet-18, over its stem and four stages, L1, each weight 1.
Stage 2, amortisation: encoders for new images. Default: LORD's stage 2 (codes as
targets relative to their spread, plus reconstruction, generator fine-tuned);
``stage2=codes`` is the paper's eq. 6 (L1 to the codes only, generator frozen).

No label is read: batches are anchors, and each image's codes are its own.

Stand-ins where the paper is vague (each checked against code of the components it cites):
- the feature network is torchvision's ImageNet ResNet-18 (the paper pre-trained its
  own with NPID); where that file cannot be had, ``id_features=auto`` pre-trains a
  small network by NPID on the training images (posecli/training/npid.py, cached in
  the work folder), with a notice naming the file; the model file records which ran;
- mixed pairs pair each image with the previous one in the batch (a derangement);
  the self images x = G(s_i, c_i) are detached in L_ID, a pure consistency target;
- capacities: C_c from 2 to 5 and gamma_s = 0 (the paper's Chairs values, the only
  ones it gives); batch, Adam betas (0.5, 0.999), cosine schedule and the codes'
  U(-0.05, 0.05) start are lord-pytorch's, as the paper's baselines;
- the ResNet sees the images upsampled to 128 px (the paper does not say how 64 px
  images met a network made for 224).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import MissingWeightsError, UsageError
from ..models.cs import PRIORS, CsConfig, CsModel
from . import lord
from .method import Batch, Method as MethodBase, Phase, Stage, module_params
from .options import at_least, non_negative, one_of, opt, positive
from .samples import pair_cells

log = logging.getLogger("posecli")
ADAM_BETAS = (0.5, 0.999)


@dataclass(frozen=True)
class Options:
    """C-S's hyper-parameters (the paper's appendix unless noted)."""

    stage2_epochs: int | None = opt(None, "epochs of stage 2 (default: --epochs)")
    lr_generator: float = opt(3e-4, "stage-1 generator learning rate")
    lr_latent: float = opt(3e-3, "stage-1 learning rate of the per-image codes")
    lr_encoder: float = opt(1e-4, "stage-2 learning rate")
    noise_std: float = opt(1.0, "standard deviation of the reparametrisation noise on both codes")
    prior: Literal["gaussian", "uniform"] = opt("gaussian", "content prior: gaussian (instance norm) or uniform (L2)")
    w_perceptual: float = opt(5.0, "weight of the reconstruction loss")
    w_ib: float = opt(1.0, "weight of the information bottleneck")
    w_id: float = opt(1.0, "weight of instance discrimination")
    ib_pose: float = opt(1.0, "gamma_c: bottleneck weight of the pose (content) code")
    ib_identity: float = opt(0.0, "gamma_s: bottleneck weight of the identity (style) code (0: unconstrained)")
    capacity_pose: str = opt("2:5", "C_c, start:end of the pose code's squared-norm capacity")
    capacity_identity: str = opt("0:0", "C_s, start:end of the identity code's squared-norm capacity")
    ib_ramp: float = opt(1.0, "fraction of stage 1 over which the capacities rise")
    id_features: Literal["auto", "resnet18", "npid", "off"] = opt(
        "auto", "instance-discrimination network: resnet18 (ImageNet file required), npid (pre-trained here on "
                "the training images, cached in the work folder), off, or auto (resnet18 when its file is in "
                "place, else npid)")
    npid_epochs: int = opt(10, "epochs of the npid network's pre-training")
    stage2: Literal["lord", "codes"] = opt("lord", "lord: codes + reconstruction, generator fine-tuned; codes: "
                                                   "the paper's eq. 6 (L1 to the codes, generator frozen)")
    code_weight: float = opt(10.0, "stage-2 (lord) weight of the code regression")
    width: float = opt(1.0, "channel multiplier of the networks (1 = the papers' networks)")
    identity_dim: int = opt(256, "identity (style) code size")
    pose_dim: int = opt(128, "pose (content) code size (the paper: other sizes put shape into it)")

    def __post_init__(self) -> None:
        at_least(self, 1, "stage2_epochs", "identity_dim", "pose_dim", "npid_epochs")
        positive(self, "lr_generator", "lr_latent", "lr_encoder", "width")
        non_negative(self, "noise_std", "w_perceptual", "w_ib", "w_id", "ib_pose", "ib_identity", "code_weight")
        if not 0 < self.ib_ramp <= 1:
            raise UsageError(f"--opt ib_ramp={self.ib_ramp}: expected a fraction in (0, 1]")
        for name in ("capacity_pose", "capacity_identity"):
            capacity(getattr(self, name), name)
        one_of(self, "prior", PRIORS)
        one_of(self, "id_features", ("auto", "resnet18", "npid", "off"))
        one_of(self, "stage2", ("lord", "codes"))


def capacity(text: str, name: str = "capacity") -> tuple[float, float]:
    try:
        start, end = (float(v) for v in text.split(":"))
    except ValueError:
        raise UsageError(f"--opt {name}={text}: expected START:END, e.g. 2:5") from None
    if not (math.isfinite(start) and math.isfinite(end) and start >= 0 and end >= 0):
        raise UsageError(f"--opt {name}={text}: expected two finite numbers >= 0")
    return start, end


def scheduled(cap: tuple[float, float], t: int, ramp_steps: int) -> float:
    """A capacity rising linearly from start to end over ramp_steps, then held."""
    start, end = cap
    return start + (end - start) * min(1.0, t / max(ramp_steps, 1))


def bottleneck(codes: torch.Tensor, cap: float) -> torch.Tensor:
    """mean over the batch of | ‖code‖² - C |: zero at the capacity, growing on either side."""
    return (codes.float().pow(2).sum(1) - cap).abs().mean()


def instance_discrimination(features: nn.Module, mixed: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """Sum over the feature network's layers of the L1 distance between the features of
    mixed images and of the (detached) self images they should look like."""
    with torch.no_grad():
        targets = features(own.detach().float())
    return sum((f.float() - t.float()).abs().mean() for f, t in zip(features(mixed.float()), targets))


class Stage1(nn.Module):
    def __init__(self, model: CsModel, style: nn.Embedding, content: nn.Embedding, recon: nn.Module,
                 method: "Method", o: Options, ramp_steps: int):
        super().__init__()
        self.model, self.style, self.content, self.recon = model, style, content, recon
        self.method = [method]  # in a list: not a submodule (the frozen features stay out of DDP and checkpoints)
        self.o, self.ramp_steps = o, ramp_steps
        self.cap_pose, self.cap_identity = capacity(o.capacity_pose), capacity(o.capacity_identity)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        o, m = self.o, self.model
        s, c = self.style(batch.idx), self.content(batch.idx)  # (B, D_id), (B, D_pose): per image, no labels
        s_n = s + o.noise_std * batch.randn(s.shape[1])  # the reparametrisation module R
        c_n = c + o.noise_std * batch.randn(c.shape[1])
        own = m.generate(s_n, c_n)
        recon = self.recon(own, batch.x)
        cap_c = scheduled(self.cap_pose, batch.step, self.ramp_steps)
        cap_s = scheduled(self.cap_identity, batch.step, self.ramp_steps)
        ib = o.ib_pose * bottleneck(c, cap_c) + (o.ib_identity * bottleneck(s, cap_s) if o.ib_identity else 0)
        loss = o.w_perceptual * recon + o.w_ib * ib
        terms = {"recon": recon, "ib": ib, "capacity_pose": torch.tensor(cap_c, device=c.device),
                 "pose_norm2": c.detach().float().pow(2).sum(1).mean(),
                 "identity_norm2": s.detach().float().pow(2).sum(1).mean()}
        features = self.method[0].features
        if features is not None and o.w_id > 0:
            # image i's style with image i-1's content, and the reverse (a derangement of the batch)
            mixed = m.generate(torch.cat([s_n, s_n.roll(1, 0)]), torch.cat([c_n.roll(1, 0), c_n]))
            ident = instance_discrimination(features, mixed, torch.cat([own, own.roll(1, 0)]))
            loss = loss + o.w_id * ident
            terms["instance"] = ident
        return {"loss": loss, **terms}


class Stage2(lord.Stage2):
    """LORD's stage 2 with per-image codes as targets (or the paper's codes-only eq. 6)."""

    def __init__(self, *args, codes_only: bool = False, **kw):
        super().__init__(*args, **kw)
        self.codes_only = codes_only

    def targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.identity_table(batch.idx), self.pose_table(batch.idx)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.codes_only:
            return super().forward(batch)
        m = self.model
        with torch.no_grad():
            t_id, t_pose = self.targets(batch)
        code_id = (m.encode_identity(batch.x) - t_id).abs().mean() / m.identity_scale.mean()
        code_pose = (m.encode_pose(batch.x) - t_pose).abs().mean() / m.pose_scale.mean()
        return {"loss": code_id + code_pose, "code_identity": code_id, "code_pose": code_pose}


def feature_network(choice: str, data=None, seed: int = 0, epochs: int = 10, cache_dir=None, quiet: bool = False):
    """(network or None, what ran): the ImageNet ResNet-18; else the npid network
    pre-trained on the training images (cached); or nothing."""
    from .losses import ResNetFeatures

    if choice == "off":
        return None, "off"
    if choice in ("auto", "resnet18"):
        try:
            return ResNetFeatures(), "resnet18"
        except MissingWeightsError as e:
            if choice == "resnet18":
                raise
            from ..downloads import fallback_notice

            fallback_notice(f"{e.short}: pre-training a network on the training images instead "
                            "(--opt id_features=npid)", str(e))
    from .npid import cached

    return (cached(data.images, data.key, epochs, seed, cache_dir, quiet),
            f"npid ({epochs} epochs on the training images)")


class Method(MethodBase):
    name = "cs"
    needs_labels = False

    def __init__(self, opts, data, recon: nn.Module):
        super().__init__(opts, data, recon)
        o = self.o
        self.model = CsModel(CsConfig(image_size=opts.image_size, identity_dim=o.identity_dim, pose_dim=o.pose_dim,
                                      width=o.width, prior=o.prior))
        n = len(data)
        self.style, self.content = nn.Embedding(n, o.identity_dim), nn.Embedding(n, o.pose_dim)
        for table in (self.style, self.content):
            nn.init.uniform_(table.weight, -0.05, 0.05)
        self.modules = {"model": self.model, "style": self.style, "content": self.content}
        self.latents = {"style": self.style, "content": self.content}
        self.features, self.features_ran = None, "off"

    def _stage1_begin(self) -> None:
        if self.o.w_id == 0:
            self.features_ran = "off (w_id 0)"
            return
        from . import distributed as D

        cache = self.workdir / "cache" if self.workdir is not None else None
        with D.main_first(self.dist):  # rank 0 pre-trains (if it must) and caches; the others read the cache
            self.features, self.features_ran = feature_network(self.o.id_features, self.data, self.opts.seed,
                                                               self.o.npid_epochs, cache, quiet=not self.dist.main)
        if self.features is not None:
            self.features.to(self.data.images.device)

    def _stage1_optimizer(self):
        m, o = self.model, self.o
        return torch.optim.Adam([
            {"params": module_params(m.generator, m.modulation, m.fusion), "lr": o.lr_generator},
            {"params": module_params(self.style, self.content), "lr": o.lr_latent},
        ], betas=ADAM_BETAS)

    def _stage1_sample(self, id_idx: torch.Tensor, pose_idx: torch.Tensor) -> torch.Tensor:
        return pair_cells(self.model.generate, self.style(id_idx), self.content(pose_idx))

    def _stage2_begin(self) -> None:
        self.model.set_code_statistics(self.style.weight, self.content.weight)

    def _stage2_optimizer(self):
        m = self.model
        params = (module_params(m.identity_encoder, m.pose_encoder) if self.o.stage2 == "codes"
                  else list(m.parameters()))
        return torch.optim.Adam(params, lr=self.o.lr_encoder, betas=ADAM_BETAS)

    def stages(self) -> list[Stage]:
        o, opts = self.o, self.opts
        ramp = int(o.ib_ramp * opts.epochs * (len(self.data) // opts.batch_size))
        s1 = Phase("main", Stage1(self.model, self.style, self.content, self.recon, self, o, ramp),
                   self._stage1_optimizer)
        s2 = Phase("main", Stage2(self.model, self.style, self.content, self.recon, o.code_weight,
                                  codes_only=o.stage2 == "codes"), self._stage2_optimizer)
        e2 = o.stage2_epochs if o.stage2_epochs is not None else opts.epochs
        return [Stage("stage1", opts.epochs, [s1], begin=self._stage1_begin, sample=self._stage1_sample),
                Stage("stage2", e2, [s2], begin=self._stage2_begin)]

    def final_model(self) -> CsModel:
        return self.model

    def state_dict(self) -> dict:
        return {"id_features": self.features_ran}  # which network stage 1 used, for the model file

    def load_state_dict(self, state: dict) -> None:
        self.features_ran = state["id_features"]

    def summary(self) -> dict:
        return {"cs": {"id_features": self.features_ran, "labels_used": False}}
