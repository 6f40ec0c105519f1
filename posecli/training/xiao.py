"""Xiao, Liu & Lee 2019, "Identity from here, pose from there" (ICCV 2019):
unlabelled videos, training triplets and a GAN.

Each batch is triplets (training/mining.py): I_id and I_target are two frames of one
clip, I_pose a frame of another clip whose pose is nearest to I_target's. The
generator G(E_id(I_id), E_pose(I_pose)) must produce I_target, and (paper eq. 1-6,
all weights 1):

- L_dis, the disentangling reconstructions: the transfer to I_target, and the two
  self-reconstructions G(E_id(I_id), E_pose(I_id)) = I_id and
  G(E_id(I_pose), E_pose(I_pose)) = I_pose, which stop the identity code carrying
  pose (it must serve two poses) and the pose code carrying identity; perceptual
  (posecli's ``--loss``: VGG, or the offline ``lap``);
- L_pv, pixel verification: a softmax affinity between the decoder's last features
  of the generation and of I_id (a by-product of I_id's self-reconstruction) aligns
  I_id to the generation, I'_id = W I_id, and L1(I'_id, I_g) asks every generated
  pixel to trace back to the identity image;
- L_GAN: a 2-scale real/fake discriminator D_real and a pair discriminator D_pair
  (same object or not), least squares as pix2pixHD;
- L_aux: clip classification (AC-GAN) on D_real, on real frames when training D and
  on I_g (as I_id's clip) when training G.

One step, two phases (paper: "we alternate between fixing G and training D, and
fixing D and training G"): the discriminators first, on a generation made without
gradients, then the generator against the updated discriminators. The saved model
is a moving average of the generator.

Stand-ins where the paper is vague (no reference code exists; each checked against the
code of the component it cites), each an option:
- triplet features: rotation prediction learned on the training frames, in place of
  the paper's RotNet AlexNet on ImageNet (``pose_features``; mining.py); M = 16 pose
  clusters (``clusters``, not given in the paper); the nearest neighbour
  (``neighbours`` = 1);
- the generator and D_real from pix2pixHD (models/xiao.py), LSGAN;
- D_pair as StackGAN-v2's matching-aware discriminator on 6-channel image pairs:
  real = (I_id, I_target), wrong = (I_id, I_pose), fake = (I_id, I_g),
  loss real + (wrong + fake) / 2;
- the affinity as CoCosNet's correspondence (features centred over positions,
  L2-normalised per pixel, cosine / 0.01, softmax over the identity image's pixels)
  and detached, as MatchTrans (no gradient through W; only I_g gets L_pv's), computed
  at most at 64 x 64 (``pvm_size``; features and images average-pooled) in row chunks,
  so that it takes at most ~64 MB at a time;
- Adam lr 1e-4 (the paper) with pix2pixHD's betas (0.5, 0.999), constant rate;
- model averaging as StackGAN-v2: decay 0.999 after every generator step, with the
  loop's warm-up (decay min(0.999, (1 + n) / (10 + n)) at update n), so that a short
  run does not save a model near its initialisation;
- augmentation: colour jitter (brightness, contrast, saturation) shared by I_id and
  I_target, so that colour stays identity, and random shifts shared by I_target and
  I_pose, so that the target keeps the pose image's geometry (the paper names both
  but not how they are shared).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..models.xiao import PairDiscriminator, RealFakeDiscriminator, XiaoConfig, XiaoModel
from . import distributed as D
from .method import Batch, Method as MethodBase, Phase, Stage, clip_groups, module_params
from .options import at_least, non_negative, opt, positive

ADAM_BETAS = (0.5, 0.999)
PVM_CHUNK_ELEMENTS = 16 * 2**20  # affinity entries per chunk: 64 MB in fp32


@dataclass(frozen=True)
class Options:
    """Xiao et al.'s hyper-parameters (the paper's; stand-ins in the module docstring)."""

    lr: float = opt(1e-4, "learning rate of the generator and the discriminators (Adam, constant)")
    dis_weight: float = opt(1.0, "weight of L_dis, the transfer and both self-reconstructions (lambda_1)")
    pv_weight: float = opt(1.0, "weight of L_pv, the pixel verification (lambda_2; 0: off)")
    aux_weight: float = opt(1.0, "weight of L_aux, the clip classification (lambda_3; 0: off)")
    gan_weight: float = opt(1.0, "weight of both adversarial losses (lambda_4; 0: no GAN)")
    ema: float = opt(0.999, "decay of the generator's moving average, the saved model (0: the generator itself)")
    width: float = opt(1.0, "generator channel multiplier (1 = pix2pixHD's 64 channels)")
    d_width: float = opt(1.0, "discriminator channel multiplier (1 = 64 channels)")
    n_res: int = opt(9, "residual blocks of the decoder")
    pose_features: str = opt("rotnet", "features that find the pose images: rotnet (learned here by rotation "
                                       "prediction), edges, or the path of a posecli model (its pose encoder)")
    rotnet_epochs: int = opt(3, "epochs of the rotation pre-training (pose_features=rotnet)")
    clusters: int = opt(16, "pose clusters M over which the triplets' poses are balanced")
    neighbours: int = opt(1, "I_pose is one of the target's this many nearest other-clip frames")
    temperature: float = opt(0.01, "softmax temperature of the pixel-verification affinity")
    pvm_size: int = opt(64, "side at which the pixel verification runs (larger images are pooled to it)")
    color_jitter: float = opt(0.1, "colour jitter strength (brightness, contrast, saturation +- this; 0: off)")
    crop_shift: float = opt(0.0625, "random shift, as a fraction of the side (0: off)")

    def __post_init__(self) -> None:
        positive(self, "lr", "width", "d_width", "temperature")
        non_negative(self, "dis_weight", "pv_weight", "aux_weight", "gan_weight", "ema", "color_jitter", "crop_shift")
        at_least(self, 1, "n_res", "rotnet_epochs", "clusters", "neighbours")
        at_least(self, 8, "pvm_size")
        if self.ema >= 1:
            raise UsageError(f"--opt ema={self.ema}: expected a decay in [0, 1)")
        if self.color_jitter >= 1 or self.crop_shift >= 0.5:
            raise UsageError("--opt color_jitter must be below 1 and crop_shift below 0.5")
        if self.pose_features not in ("rotnet", "edges"):
            from pathlib import Path

            if not Path(self.pose_features).is_file():
                raise UsageError(f"--opt pose_features={self.pose_features}: expected rotnet, edges or a "
                                 "posecli model file")
            from ..modelfile import read_metadata

            read_metadata(self.pose_features)  # a damaged model file fails here, before any decoding


# -- losses ---------------------------------------------------------------------

def lsgan(outputs: list[torch.Tensor], target: float) -> torch.Tensor:
    """Least-squares GAN loss, summed over discriminator scales."""
    return sum(((o.float() - target) ** 2).mean() for o in outputs)


@torch.no_grad()
def verify(f_g: torch.Tensor, f_id: torch.Tensor, x_id: torch.Tensor, temperature: float) -> torch.Tensor:
    """The pixel verification module's aligned identity image I'_id = W I_id, (B, 3, H, W).

    W (P x P per image) is the softmax over I_id's pixels of the cosine similarity of the
    features (centred over positions, L2-normalised per pixel) divided by the temperature;
    computed without gradients, in chunks of rows."""
    b, _, h, w = f_g.shape
    a, r = f_g.float().flatten(2), f_id.float().flatten(2)  # (B, C, P)
    a = F.normalize(a - a.mean(2, keepdim=True), dim=1)
    r = F.normalize(r - r.mean(2, keepdim=True), dim=1)
    ref = x_id.float().flatten(2).transpose(1, 2)  # (B, P, 3)
    p = h * w
    rows = max(1, PVM_CHUNK_ELEMENTS // (b * p))
    out = torch.empty(b, p, 3, device=f_g.device)
    a = a / temperature
    for i in range(0, p, rows):
        # softmax(logits) @ ref, normalised after the product: two passes over the P x P entries
        e = a[:, :, i:i + rows].transpose(1, 2) @ r  # (B, rows, P) logits
        # clamped: exp below e^-87 gives denormals, 17x slower on x86 CPUs; e^-80 is already nothing
        e = e.sub_(e.amax(2, keepdim=True)).clamp_(min=-80.0).exp_()
        out[:, i:i + rows] = (e @ ref) / e.sum(2, keepdim=True)
    return out.transpose(1, 2).reshape(b, 3, h, w)


def pixel_verification_loss(g: torch.Tensor, f_g: torch.Tensor, f_id: torch.Tensor, x_id: torch.Tensor,
                            temperature: float, size: int) -> torch.Tensor:
    """L_pv = |I'_id - I_g|_1 at most at ``size`` x ``size``; the gradient reaches I_g only."""
    if g.shape[-1] > size:
        g, x_id = F.adaptive_avg_pool2d(g, size), F.adaptive_avg_pool2d(x_id, size)
        f_g, f_id = F.adaptive_avg_pool2d(f_g.detach(), size), F.adaptive_avg_pool2d(f_id.detach(), size)
    return (verify(f_g, f_id, x_id, temperature) - g.float()).abs().mean()


def _colour(x: torch.Tensor, u: torch.Tensor, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation factors 1 +- strength from u (B, 3) in [0, 1)."""
    f = 1 + strength * (2 * u - 1)
    x = x * f[:, 0, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * f[:, 1, None, None, None]
    grey = x.mean(1, keepdim=True)
    return (grey + (x - grey) * f[:, 2, None, None, None]).clamp(0, 1)


def _shift(x: torch.Tensor, u: torch.Tensor, fraction: float) -> torch.Tensor:
    """Whole-pixel shifts of up to fraction x side in x and y from u (B, 2), reflecting at the edges."""
    s = x.shape[-1]
    m = int(round(fraction * s))
    if m == 0:
        return x
    d = (u * (2 * m + 1)).floor().clamp_max(2 * m) - m  # integers in [-m, m]
    theta = torch.zeros(len(x), 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = 2 * d / s
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def triplet(batch: Batch, o: Options) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(I_id, I_target, I_pose), augmented once per step (the first phase draws, the next reuses)."""
    if "triplet" not in batch.stash:
        x_id, x_t, x_p = batch.x, batch.partner, batch.other
        u = batch.rand(10)  # drawn even when off, so that the stream does not depend on the options
        if o.color_jitter > 0:
            x_id = _colour(x_id, u[:, 0:3], o.color_jitter)  # one draw for the identity pair
            x_t = _colour(x_t, u[:, 0:3], o.color_jitter)
            x_p = _colour(x_p, u[:, 3:6], o.color_jitter)
        if o.crop_shift > 0:
            x_id = _shift(x_id, u[:, 6:8], o.crop_shift)
            x_t = _shift(x_t, u[:, 8:10], o.crop_shift)  # one draw for the pose pair
            x_p = _shift(x_p, u[:, 8:10], o.crop_shift)
        batch.stash["triplet"] = (x_id, x_t, x_p)
    return batch.stash["triplet"]


class Discriminators(nn.Module):
    """D_real (2 scales + clip classifier) and D_pair, against a generation made without gradients."""

    def __init__(self, model: XiaoModel, d_real: RealFakeDiscriminator, d_pair: PairDiscriminator,
                 clip: torch.Tensor, o: Options):
        super().__init__()
        self.model, self.d_real, self.d_pair, self.o = model, d_real, d_pair, o
        self.clip = clip

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        o, m = self.o, self.model
        x_id, x_t, x_p = triplet(batch, o)
        with torch.no_grad():
            fake = m.decoder(m.identity_encoder(x_id), m.pose_encoder(x_p))[0]
        n = len(x_t)
        outs, logits = self.d_real(torch.cat([x_t, fake]))  # one pass: instance norm keeps samples apart
        real = 0.5 * (lsgan([d[:n] for d in outs], 1.0) + lsgan([d[n:] for d in outs], 0.0))
        pair_out = self.d_pair(torch.cat([x_id, x_id, x_id]), torch.cat([x_t, x_p, fake]))
        pair = lsgan([pair_out[:n]], 1.0) + 0.5 * (lsgan([pair_out[n:2 * n]], 0.0) + lsgan([pair_out[2 * n:]], 0.0))
        clip = self.clip[batch.idx]
        aux = F.cross_entropy(logits[:n].float(), clip)
        loss = o.gan_weight * (real + pair) + o.aux_weight * aux
        return {"loss": loss, "real": real, "pair": pair, "aux": aux,
                "aux_acc": (logits[:n].argmax(1) == clip).float().mean()}


class Generator(nn.Module):
    """E_id, E_pose and the decoder: L_dis + L_pv + L_GAN + L_aux."""

    def __init__(self, model: XiaoModel, d_real: RealFakeDiscriminator, d_pair: PairDiscriminator,
                 recon: nn.Module, clip: torch.Tensor, o: Options):
        super().__init__()
        self.model, self.d_real, self.d_pair, self.recon, self.o = model, d_real, d_pair, recon, o
        self.clip = clip

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        o, m = self.o, self.model
        x_id, x_t, x_p = triplet(batch, o)
        id_id, id_p = m.identity_encoder(torch.cat([x_id, x_p])).chunk(2)
        pose_p, pose_id = m.pose_encoder(torch.cat([x_p, x_id])).chunk(2)
        # the transfer and both self-reconstructions in one decoder pass
        images, feats = m.decoder(torch.cat([id_id, id_id, id_p]), torch.cat([pose_p, pose_id, pose_p]))
        g, rec_id, rec_p = images.chunk(3)
        f_g, f_id, _ = feats.chunk(3)
        transfer = self.recon(g, x_t)
        self_rec = 2 * self.recon(torch.cat([rec_id, rec_p]), torch.cat([x_id, x_p]))  # the sum of both
        loss = o.dis_weight * (transfer + self_rec)
        terms = {"recon": self_rec / 2, "transfer": transfer}
        if o.pv_weight > 0:
            pv = pixel_verification_loss(g, f_g, f_id, x_id, o.temperature, o.pvm_size)
            loss = loss + o.pv_weight * pv
            terms["pv"] = pv
        if o.gan_weight > 0 or o.aux_weight > 0:
            outs, logits = self.d_real(g)
            gan = lsgan(outs, 1.0) + lsgan([self.d_pair(x_id, g)], 1.0)
            aux = F.cross_entropy(logits.float(), self.clip[batch.idx])
            loss = loss + o.gan_weight * gan + o.aux_weight * aux
            terms.update(gan=gan, aux=aux)
        return {"loss": loss, **terms}


class Method(MethodBase):
    name = "xiao"

    def __init__(self, opts, data, recon: nn.Module):
        super().__init__(opts, data, recon)
        o = self.o
        self.clip = clip_groups(data)  # the auxiliary classifier's classes
        n_clips = int(self.clip.max()) + 1
        sizes = torch.bincount(self.clip)
        if n_clips < 2 or int(sizes.max()) < 2:
            raise UsageError("--method xiao needs at least 2 clips (videos, --clip-seconds, or identity folders) "
                             "and clips of at least 2 frames: identity and target come from one clip, the pose "
                             "image from another")
        self.model = XiaoModel(XiaoConfig(image_size=opts.image_size, width=o.width, n_res=o.n_res))
        ndf = max(4, int(round(64 * o.d_width)))
        self.d_real = RealFakeDiscriminator(ndf, n_clips)
        self.d_pair = PairDiscriminator(ndf)
        self.modules = {"model": self.model, "d_real": self.d_real, "d_pair": self.d_pair}
        self.mining_info: dict = {}

    def _adam(self, *mods: nn.Module):
        return torch.optim.Adam(module_params(*mods), lr=self.o.lr, betas=ADAM_BETAS)

    def _begin(self) -> None:
        from . import mining

        o = self.o
        cache = self.workdir / "cache" if self.workdir is not None else None
        with D.main_first(self.dist):  # rank 0 learns the features (if it must) and caches; the others read
            self.data.mining = mining.mine(self.data, o.pose_features, o.clusters, o.neighbours, self.opts.seed,
                                           o.rotnet_epochs, cache, quiet=not self.dist.main)
        if self.dist.main and self.workdir is not None:
            self.mining_info = mining.report(self.data.mining, self.data, self.workdir, o.pose_features,
                                             self.opts.seed)
            sizes = self.mining_info["cluster_sizes"]
            import logging

            logging.getLogger("posecli").info(f"triplets: {len(sizes)} pose clusters of {min(sizes)}-{max(sizes)} "
                                              f"frames; neighbours in {self.workdir / 'mining.png'}")

    def stages(self) -> list[Stage]:
        o = self.o
        d = Phase("d", Discriminators(self.model, self.d_real, self.d_pair, self.clip, o),
                  lambda: self._adam(self.d_real, self.d_pair), schedule="constant", prefix="d_")
        g = Phase("g", Generator(self.model, self.d_real, self.d_pair, self.recon, self.clip, o),
                  lambda: self._adam(self.model), schedule="constant", prefix="")
        return [Stage("xiao", self.opts.epochs, [d, g], batch="triplets", begin=self._begin,
                      ema={"model": o.ema} if o.ema > 0 else {})]

    def final_model(self) -> XiaoModel:
        return self.ema.get("model", self.model)

    def summary(self) -> dict:
        return {"xiao": {"mining": {k: v for k, v in self.mining_info.items() if k != "cluster_sizes"}}} \
            if self.mining_info else {}
