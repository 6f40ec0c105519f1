"""Esser, Haux & Ommer 2019 (ICCV): pairs and a mutual-information constraint.

A batch is pairs of one identity (two frames of one clip for video data): the
pose encoder sees x_target, the identity encoder x_other, the decoder rebuilds
x_target from a sample of the pose code and the identity code. Reconstruction
alone lets the pose code carry everything, so I(pose, identity) <= epsilon is
enforced (paper eq. 11-23):

- critic T tells joint (pose_i, identity_i) from shuffled pairs; its logit mean
  I_T estimates the mutual information and enters the pose encoder's loss through
  an augmented Lagrangian: L_MI = [mu c + lambda >= 0] (lambda c + mu c^2 / 2) with
  c = I_T - epsilon, then lambda <- max(0, lambda + mu c);
- critic T', trained the same way but never sending gradients to the encoders,
  detects encoder overpowering (the encoder fooling T); the weight gamma of the KL
  term then rises: gamma <- max(0, gamma + l_gamma (EMA(I_T') - EMA(I_T) - b_gamma)).

D and E_id get the reconstruction only, E_pose the full loss (eq. 19): the KL and
L_MI depend on the pose code alone, because T sees the identity code detached.

One step (phases): encoders and decoders (backward, step), then both critics on the
codes of that step, detached, then lambda and gamma from values averaged over all
processes. This order avoids the reference port's crash on current PyTorch (it
stepped the critics in place before the main backward), and the optimisers hold
explicit per-module parameter lists (its other bug let the main optimiser move T).

Stand-ins and choices where the paper is vague (what the reference code, CompVis/robust-disentangling, does):
- networks of the reference PyTorch port (posecli/models/esser.py), with an
  auxiliary decoder rebuilding x_target from the identity code alone, as the port
  does: E_id is learned here (the paper's DeepFashion run used a frozen re-ID net);
- reconstruction with posecli's loss (``--loss``: VGG, or the offline ``lap``)
  weighted by 3 S^2, so that it is a per-image sum like the port's, against which
  the KL, epsilon, mu and gamma's scales were set;
- shuffled pairs by a derangement within the batch (roll by one), same-identity
  pairs masked out of the marginal term (the port reversed the batch, which pairs
  the middle element with itself and counts same-identity pairs as independent);
- EMAs with bias correction (decay 0.99), as the port; warm-up of ``warmup`` steps
  before L_MI, lambda and gamma act, as the port;
- Adam betas (0.5, 0.9) for every network, linear decay of the learning rate to 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..models.esser import Critic, Decoder, EsserConfig, EsserModel
from . import distributed as D
from .method import Batch, Method as MethodBase, Phase, Stage, module_params
from .options import at_least, non_negative, opt, positive

ADAM_BETAS = (0.5, 0.9)


@dataclass(frozen=True)
class Options:
    """Esser et al.'s hyper-parameters (defaults: the reference code's, at 64x64)."""

    lr: float = opt(2e-4, "learning rate of every network, critics included (linear decay to 0)")
    epsilon: float = opt(0.125, "the bound on I(pose, identity), in the critic's logit units")
    mu: float = opt(0.1, "penalty weight of the augmented Lagrangian, also lambda's step size "
                         "(raise it for runs of a few thousand steps: README, Which method when)")
    lambda0: float = opt(0.0, "initial Lagrange multiplier")
    gamma0: float = opt(1.0, "initial KL weight")
    l_gamma: float = opt(0.01, "step size of gamma's update")
    b_gamma: float = opt(0.01, "how far I_T' may exceed I_T before gamma rises")
    ema_decay: float = opt(0.99, "decay of the moving averages of I_T and I_T' that drive gamma")
    warmup: int = opt(1000, "steps of reconstruction and KL alone before L_MI, lambda and gamma act")
    recon_weight: float = opt(0.0, "weight of the reconstruction loss (0: 3 x size^2, a per-image sum)")
    aux_weight: float = opt(1.0, "weight of the auxiliary identity-only reconstruction (0: no auxiliary decoder)")
    identity_channels: int = opt(16, "identity code channels (codes are 4x4 maps: 16 numbers each)")
    pose_channels: int = opt(16, "pose code channels")
    width: float = opt(1.0, "channel multiplier of the networks (1 = the reference port's)")
    critic_width: float = opt(1.0, "channel multiplier of the two critics (1 = 512 channels)")

    def __post_init__(self) -> None:
        positive(self, "lr", "mu", "width", "critic_width", "ema_decay")
        non_negative(self, "lambda0", "gamma0", "l_gamma", "b_gamma", "recon_weight", "aux_weight")
        if not math.isfinite(self.epsilon):
            raise UsageError(f"--opt epsilon={self.epsilon}: expected a finite number")
        if self.ema_decay >= 1:
            raise UsageError(f"--opt ema_decay={self.ema_decay}: expected a decay in (0, 1)")
        at_least(self, 0, "warmup")
        at_least(self, 1, "identity_channels", "pose_channels")


class Constraint:
    """lambda, gamma and the moving averages: plain tensors outside every module, so
    that DDP neither all-reduces nor broadcasts them; every rank updates them from the
    same all-reduced values."""

    NAMES = ("lam", "gamma", "mi_avg", "mi_prime_avg", "n_avg")

    def __init__(self, o: Options):
        self.o = o
        self.lam = torch.tensor(o.lambda0)
        self.gamma = torch.tensor(o.gamma0)
        self.mi_avg = torch.tensor(0.0)  # raw EMAs; corrected by 1 - decay^n when read
        self.mi_prime_avg = torch.tensor(0.0)
        self.n_avg = torch.tensor(0.0)

    def to(self, device) -> "Constraint":
        for k in self.NAMES:
            setattr(self, k, getattr(self, k).to(device))
        return self

    def mi_loss(self, mi: torch.Tensor, warm: bool) -> torch.Tensor:
        """The augmented Lagrangian term of the pose encoder's loss (eq. 22-23)."""
        if not warm:
            return torch.zeros((), device=mi.device)
        c = mi - self.o.epsilon
        active = (self.o.mu * c + self.lam >= 0).detach().float()
        return active * (self.lam * c + 0.5 * self.o.mu * c * c)

    def averages(self) -> tuple[torch.Tensor, torch.Tensor]:
        corr = 1 - self.o.ema_decay ** self.n_avg.clamp_min(1)
        return self.mi_avg / corr, self.mi_prime_avg / corr

    @torch.no_grad()
    def update(self, mi: torch.Tensor, mi_prime: torch.Tensor, warm: bool) -> None:
        """After a step, from I_T and I_T' averaged over processes: the moving averages,
        then lambda <- max(0, lambda + mu c) and gamma (eq. 18), once warm."""
        d = self.o.ema_decay
        self.n_avg += 1
        self.mi_avg.mul_(d).add_((1 - d) * mi)
        self.mi_prime_avg.mul_(d).add_((1 - d) * mi_prime)
        if not warm:
            return
        self.lam.copy_((self.lam + self.o.mu * (mi - self.o.epsilon)).clamp_min(0))
        avg, avg_prime = self.averages()
        self.gamma.copy_((self.gamma + self.o.l_gamma * (avg_prime - avg - self.o.b_gamma)).clamp_min(0))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k).detach().cpu().clone() for k in self.NAMES}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.NAMES:
            getattr(self, k).copy_(state[k])


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over the code, averaged over the batch."""
    return (0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)).flatten(1).sum(1).mean()


def critic_terms(critic: Critic, pose: torch.Tensor, identity: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(BCE with joint pairs as class 1, I estimate = mean joint logit, accuracy).

    Shuffled pairs: a derangement of the batch (roll by one), with the pairs of one
    identity masked out, the only ones that are not samples of the product of the
    marginals. The critic is separable, so both kinds of logit come from one
    evaluation of each half."""
    f_pose, f_id = critic.net_pose(pose).float().flatten(1), critic.net_identity(identity).float().flatten(1)
    joint = (f_pose * f_id).sum(1)  # (B,) = critic(pose, identity)
    marginal = (f_pose * f_id.roll(1, dims=0)).sum(1)  # critic(pose_i, identity_{i-1})
    mask = (labels != labels.roll(1, dims=0)).float()
    n = mask.sum().clamp_min(1)
    bce = 0.5 * (F.softplus(-joint).mean() + (F.softplus(marginal) * mask).sum() / n)
    acc = 0.5 * ((joint > 0).float().mean() + ((marginal < 0).float() * mask).sum() / n)
    return bce, joint.mean(), acc


class Generative(nn.Module):
    """Encoders and decoders: reconstruction + gamma KL + auxiliary + L_MI through T."""

    def __init__(self, model: EsserModel, aux: Decoder | None, critic: Critic, recon: nn.Module,
                 constraint: Constraint, o: Options, recon_weight: float):
        super().__init__()
        self.model, self.aux, self.critic, self.recon = model, aux, critic, recon
        self.constraint, self.o, self.recon_weight = constraint, o, recon_weight

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        m, cfg = self.model, self.model.config
        mean, logvar = m.pose_distribution(batch.x)  # (B, Cp, 4, 4) of x_target
        pose = mean + (0.5 * logvar).exp() * batch.randn(cfg.pose_channels, 4, 4)  # reparametrised
        identity = m.identity_encoder(batch.partner).float()  # (B, Ci, 4, 4) of x_other
        rec = self.recon_weight * self.recon(m.generate(identity, pose), batch.x)
        kl = kl_to_standard_normal(mean, logvar)
        # T sees the identity code detached: the constraint's gradient reaches E_pose only
        mi = self.critic(pose, identity.detach()).float().mean()
        warm = batch.step >= self.o.warmup
        mi_loss = self.constraint.mi_loss(mi, warm)
        loss = rec + self.constraint.gamma * kl + mi_loss
        terms = {"recon": rec / self.recon_weight, "kl": kl, "mi": mi, "mi_loss": mi_loss}
        if self.aux is not None:
            aux = self.recon_weight * self.recon(self.aux(identity), batch.x)
            loss = loss + self.o.aux_weight * aux
            terms["aux"] = aux / self.recon_weight
        batch.stash.update(pose=pose.detach(), identity=identity.detach())
        return {"loss": loss, **terms}


class Critics(nn.Module):
    """T and T', each trained as a joint-versus-shuffled classifier on the detached codes."""

    def __init__(self, critic: Critic, critic_prime: Critic):
        super().__init__()
        self.critic, self.critic_prime = critic, critic_prime

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        pose, identity = batch.stash["pose"], batch.stash["identity"]
        bce, _, acc = critic_terms(self.critic, pose, identity, batch.labels)
        bce_prime, mi_prime, acc_prime = critic_terms(self.critic_prime, pose, identity, batch.labels)
        return {"loss": bce + bce_prime, "bce": bce, "acc": acc, "bce_prime": bce_prime,
                "mi_prime": mi_prime, "acc_prime": acc_prime}


class Method(MethodBase):
    name = "esser"

    def __init__(self, opts, data, recon: nn.Module):
        super().__init__(opts, data, recon)
        o = self.o
        cfg = EsserConfig(image_size=opts.image_size, identity_channels=o.identity_channels,
                          pose_channels=o.pose_channels, width=o.width)
        self.model = EsserModel(cfg)
        self.aux = Decoder(cfg, cfg.identity_channels) if o.aux_weight > 0 else None
        critic_cfg = replace(cfg, width=o.critic_width)  # the critics have their own width
        self.critic, self.critic_prime = Critic(critic_cfg), Critic(critic_cfg)
        self.modules = {"model": self.model, "critic": self.critic, "critic_prime": self.critic_prime}
        if self.aux is not None:
            self.modules["aux_decoder"] = self.aux
        self.constraint = Constraint(o)
        self.recon_weight = o.recon_weight or 3.0 * opts.image_size ** 2

    def _adam(self, *mods: nn.Module):
        return torch.optim.Adam(module_params(*mods), lr=self.o.lr, betas=ADAM_BETAS)

    def _begin(self) -> None:
        self.constraint.to(next(self.model.parameters()).device)

    def _end_step(self, terms: dict, batch: Batch) -> dict:
        # every rank: the same all-reduced values, the same update
        mi, mi_prime = D.mean(torch.stack([terms["mi"].detach(), terms["critics_mi_prime"].detach()]),
                              self.dist).unbind()
        self.constraint.update(mi, mi_prime, batch.step >= self.o.warmup)
        return {"lambda": self.constraint.lam.clone(), "gamma": self.constraint.gamma.clone()}

    def stages(self) -> list[Stage]:
        gen = [self.model] + ([self.aux] if self.aux is not None else [])
        main = Phase("main", Generative(self.model, self.aux, self.critic, self.recon, self.constraint, self.o,
                                        self.recon_weight),
                     lambda: self._adam(*gen), schedule="linear")
        critics = Phase("critics", Critics(self.critic, self.critic_prime),
                        lambda: self._adam(self.critic, self.critic_prime), schedule="linear")
        return [Stage("esser", self.opts.epochs, [main, critics], batch="pairs", begin=self._begin,
                      end_step=self._end_step)]

    def final_model(self) -> EsserModel:
        return self.model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.constraint.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.constraint.load_state_dict(state)

    def summary(self) -> dict:
        avg, avg_prime = self.constraint.averages()
        return {"esser": {"lambda": round(float(self.constraint.lam), 6), "gamma": round(float(self.constraint.gamma), 6),
                          "mi_ema": round(float(avg), 6), "mi_prime_ema": round(float(avg_prime), 6)}}
