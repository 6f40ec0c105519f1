"""C-S disentanglement networks (Ren, Yang, Wang & Zeng 2021): LORD's generator with C-S fusion.

"Multiple C-S fusion", the variant the paper reports: the content (pose) code is
normalised, so every image's content shares one distribution (instance
normalisation over the code's dimensions for a Gaussian prior, L2 normalisation
for a uniform one), then the style (identity) code predicts its scale and shift;
and before every generator layer the feature maps are normalised again with
style-predicted scale and shift (AdaIN). Style codes are per image here, not per
identity as in LORD: C-S has no labels.

  identity s (B, D_id) --fusion FC--> (scale, shift) of the content vector
  pose c (B, D_pose) --Norm--> * scale + shift --> LORD generator, AdaIN(s) per layer

The encoders (for images not seen in training) are LORD's stage-2 encoders with
standardised outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .lord import LordConfig, LordModel

PRIORS = ("gaussian", "uniform")


@dataclass(frozen=True)
class CsConfig(LordConfig):
    prior: str = "gaussian"  # gaussian: instance-normalise the content code; uniform: L2-normalise it

    def __post_init__(self):
        if self.prior not in PRIORS:
            raise ValueError(f"prior {self.prior!r}: expected one of {', '.join(PRIORS)}")


def normalise_content(c: torch.Tensor, prior: str, eps: float = 1e-5) -> torch.Tensor:
    """(B, D) -> zero mean and unit variance over D (gaussian), or unit L2 norm times sqrt(D)
    (uniform: on the sphere, at the gaussian's scale)."""
    c = c.float()
    if prior == "gaussian":
        var, mean = torch.var_mean(c, dim=1, keepdim=True, correction=0)
        return (c - mean) * torch.rsqrt(var + eps)
    return F.normalize(c, dim=1, eps=eps) * c.shape[1] ** 0.5


class CsModel(LordModel):
    method = "cs"
    Config = CsConfig

    def __init__(self, config: CsConfig):
        super().__init__(config)
        self.fusion = nn.Linear(config.identity_dim, 2 * config.pose_dim)  # style -> (scale, shift) of content
        nn.init.zeros_(self.fusion.weight)
        with torch.no_grad():  # start as the identity map of the normalised content
            self.fusion.bias.copy_(torch.cat([torch.ones(config.pose_dim), torch.zeros(config.pose_dim)]))

    def fuse(self, identity: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """C-S fusion of the generator's input: (B, D_pose)."""
        scale, shift = self.fusion(identity).chunk(2, dim=1)
        return normalise_content(pose, self.config.prior) * scale + shift

    def generate(self, identity: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        return self.generator(self.fuse(identity, pose), self.modulation(identity))
