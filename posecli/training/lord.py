"""LORD (Gabbay & Hoshen, ICLR 2020): two stages on the shared loop.

Stage 1, latent optimisation: a shared embedding per identity, one per image for
pose (with fixed Gaussian noise and an activation penalty: asymmetric noise
regularisation), generator and modulation, all optimised jointly.
Stage 2, amortisation: encoders regress the stage-1 codes (each error relative
to its table's variance), plus reconstruction through the generator. The generator
is fine-tuned, as in the papers, or kept as stage 1 left it
(``stage2_generator=frozen``). With the encoders fixed (He initialisation,
standardised codes) fine-tuning measured better on held-out toy cars: transfer
MSE 0.27 of the better copy baseline against 0.31 frozen, leakage 0.028 against
0.038.

The pose table is per image (``latents``): under torchrun only the rows a step
touched travel between processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..models.lord import LordConfig, LordModel
from .method import Batch, Method as MethodBase, Phase, Stage, module_params
from .options import at_least, non_negative, one_of, opt, positive
from .samples import pair_cells

ADAM_BETAS = (0.5, 0.999)


@dataclass(frozen=True)
class Options:
    """LORD's hyper-parameters (reference values from lord-pytorch unless noted)."""

    stage2_epochs: Optional[int] = opt(None, "epochs of stage 2 (default: --epochs)")
    lr_generator: float = opt(3e-4, "stage-1 generator and modulation learning rate")
    lr_latent: float = opt(3e-3, "stage-1 identity and pose embedding learning rate")
    lr_encoder: float = opt(1e-4, "stage-2 learning rate (encoders, and the generator when fine-tuned)")
    noise_std: float = opt(1.0, "stage-1 Gaussian noise on the pose codes (less lets them carry more, identity too)")
    pose_decay: float = opt(1e-3, "stage-1 penalty on the pose codes' squared norm")
    code_weight: float = opt(10.0, "stage-2 weight of the code regression against reconstruction")
    stage2_generator: Literal["finetune", "frozen"] = opt(
        "finetune", "finetune: stage 2 trains the generator with the encoders (the papers); frozen: it does not")
    width: float = opt(1.0, "channel multiplier of the networks (1 = the papers' networks)")
    identity_dim: int = opt(256, "identity code size")
    pose_dim: int = opt(128, "pose code size")
    ema: float = opt(0.0, "stage-2 decay of an exponential moving average of the model, saved instead of "
                          "the last weights (0: off; e.g. 0.999)")

    def __post_init__(self) -> None:
        at_least(self, 1, "stage2_epochs", "identity_dim", "pose_dim")
        positive(self, "lr_generator", "lr_latent", "lr_encoder", "width")
        non_negative(self, "noise_std", "pose_decay", "code_weight")
        one_of(self, "stage2_generator", ("finetune", "frozen"))
        if not 0 <= self.ema < 1:
            raise UsageError(f"--opt ema={self.ema}: expected 0 (off) or a decay in (0, 1)")


class Stage1(nn.Module):
    """Reconstruction from the identity and (noisy) pose embeddings, plus the pose penalty."""

    def __init__(self, model: LordModel, identity_table: nn.Embedding, pose_table: nn.Embedding,
                 recon: nn.Module, o: Options):
        super().__init__()
        self.model, self.identity_table, self.pose_table, self.recon = model, identity_table, pose_table, recon
        self.noise_std, self.pose_decay = o.noise_std, o.pose_decay

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        pose = self.pose_table(batch.idx)  # (B, D_pose)
        noisy = pose + self.noise_std * batch.randn(pose.shape[1])
        rec = self.model.generate(self.identity_table(batch.labels), noisy)
        recon = self.recon(rec, batch.x)
        decay = pose.float().pow(2).sum(1).mean()
        return {"loss": recon + self.pose_decay * decay, "recon": recon, "pose_decay": decay}


class Stage2(nn.Module):
    """Encoders regress the stage-1 codes; reconstruction through the generator."""

    def __init__(self, model: LordModel, identity_table: nn.Embedding, pose_table: nn.Embedding,
                 recon: nn.Module, code_weight: float):
        super().__init__()
        self.model, self.identity_table, self.pose_table, self.recon = model, identity_table, pose_table, recon
        self.code_weight = code_weight

    def targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The stage-1 codes of the batch: the identity's, and the image's pose."""
        return self.identity_table(batch.labels), self.pose_table(batch.idx)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        m = self.model
        e_id, e_pose = m.encode_identity(batch.x), m.encode_pose(batch.x)
        recon = self.recon(m.generate(e_id, e_pose), batch.x)
        with torch.no_grad():
            t_id, t_pose = self.targets(batch)
        # each regression error is relative to its table's spread, which the model's
        # code statistics hold (1 = no better than the table's mean): the identity
        # table stays tiny (its scale lives in the modulation network), and an
        # unscaled MSE all but ignored it
        code_id = F.mse_loss(e_id.float(), t_id) / m.identity_scale.pow(2).mean()
        code_pose = F.mse_loss(e_pose.float(), t_pose) / m.pose_scale.pow(2).mean()
        return {"loss": recon + self.code_weight * (code_id + code_pose), "recon": recon,
                "code_identity": code_id, "code_pose": code_pose}


class Method(MethodBase):
    name = "lord"

    def __init__(self, opts, data, recon: nn.Module):
        super().__init__(opts, data, recon)
        o = self.o
        self.model = LordModel(LordConfig(image_size=opts.image_size, identity_dim=o.identity_dim,
                                          pose_dim=o.pose_dim, width=o.width))
        self.identity_table = nn.Embedding(data.n_identities, o.identity_dim)
        self.pose_table = nn.Embedding(len(data), o.pose_dim)
        for table in (self.identity_table, self.pose_table):
            nn.init.uniform_(table.weight, -0.05, 0.05)
        self.modules = {"model": self.model, "identity_table": self.identity_table, "pose_table": self.pose_table}
        self.latents = {"pose_table": self.pose_table}

    def warm_start(self, source: LordModel, chunk: int = 256) -> None:
        """The source's networks, and tables that start at its encoders' codes of this data.

        Each identity's row is the mean of its images' identity codes, each image's pose
        row its pose code: stage 1 then refines codes that the generator already draws
        well, instead of learning them from noise (new identities included).
        """
        super().warm_start(source)
        from ..media.convert import uint8_to_float

        m, data = self.model, self.data
        was_training = m.training
        m.eval()
        ids = torch.zeros_like(self.identity_table.weight)
        counts = torch.zeros(len(ids), 1, device=ids.device)
        with torch.no_grad():
            for i in range(0, len(data), chunk):
                x = uint8_to_float(data.images[i : i + chunk])
                labels = data.labels[i : i + chunk].long()
                self.pose_table.weight[i : i + chunk] = m.encode_pose(x)
                ids.index_add_(0, labels, m.encode_identity(x))
                counts.index_add_(0, labels, torch.ones(len(labels), 1, device=ids.device))
            self.identity_table.weight.copy_(ids / counts.clamp_min(1))
        m.train(was_training)

    # -- stage 1 ---------------------------------------------------------------
    def _stage1_optimizer(self):
        m, o = self.model, self.o
        return torch.optim.Adam([
            {"params": module_params(m.generator, m.modulation), "lr": o.lr_generator},
            {"params": module_params(self.identity_table, self.pose_table), "lr": o.lr_latent},
        ], betas=ADAM_BETAS)

    def _stage1_sample(self, id_idx: torch.Tensor, pose_idx: torch.Tensor) -> torch.Tensor:
        ids = self.identity_table(self.data.labels[id_idx])
        return pair_cells(self.model.generate, ids, self.pose_table(pose_idx))

    # -- stage 2 ---------------------------------------------------------------
    def _stage2_begin(self) -> None:
        # the tables are frozen in stage 2: their statistics hold for the whole stage
        self.model.set_code_statistics(self.identity_table.weight, self.pose_table.weight)

    def _stage2_params(self) -> list[nn.Parameter]:
        m = self.model
        if self.o.stage2_generator == "finetune":
            return list(m.parameters())
        # frozen: the encoders learn against the stage-1 generator, which stays as it is
        return module_params(m.identity_encoder, m.pose_encoder)

    def _stage2_optimizer(self):
        return torch.optim.Adam(self._stage2_params(), lr=self.o.lr_encoder, betas=ADAM_BETAS)

    def stages(self) -> list[Stage]:
        o, tables = self.o, (self.identity_table, self.pose_table)
        e2 = o.stage2_epochs if o.stage2_epochs is not None else self.opts.epochs
        s1 = Phase("main", Stage1(self.model, *tables, self.recon, o), self._stage1_optimizer)
        s2 = Phase("main", Stage2(self.model, *tables, self.recon, o.code_weight), self._stage2_optimizer)
        return [
            Stage("stage1", self.opts.epochs, [s1], sample=self._stage1_sample),
            Stage("stage2", e2, [s2], begin=self._stage2_begin, ema={"model": o.ema} if o.ema else {}),
        ]

    def final_model(self) -> LordModel:
        return self.ema.get("model", self.model)
