"""Test-time latent optimisation: fit an image's identity code to the image itself.

The identity encoder is amortised: one forward pass guesses the code of any image,
and on an identity unlike those it was trained on the guess is off (a car drawn in
the wrong colour, without its stripes). LORD learns its training codes by optimising
them directly (latent optimisation); ``fit_identity`` does the same for one new image.
It starts from the encoders' codes and takes ``steps`` Adam steps on the identity code,
and on the image's own pose code, so that the frozen generator redraws the image. The
fitted identity code then goes with any pose code. The loss is the offline
reconstruction loss ``lap``: pixel L1 plus Laplacian-pyramid L1.

Works with any PoseModel whose ``generate`` is differentiable (all of posecli's
methods); for one that is not, the encoder's code is returned. The model's weights
are not changed.
"""

from __future__ import annotations

import torch

FIT_LR = 0.02  # Adam on the codes (standardised scale: LORD's codes have unit spread)


def fit_identity(model, x: torch.Tensor, steps: int, lr: float = FIT_LR, progress=None) -> torch.Tensor:
    """The identity code of the image ``x`` (1, 3, S, S) in [0, 1], on the model's device: the
    encoder's code refined by ``steps`` steps of reconstruction (``steps`` 0: the encoder's code).
    ``progress``: an optional wrapper of the steps, called as ``progress(iterable, total)``."""
    from .losses import ReconstructionLoss

    with torch.inference_mode():
        identity = model.encode_identity(x).float()
    if steps <= 0:
        return identity
    with torch.inference_mode():
        pose = model.encode_pose(x).float()
    loss_fn = ReconstructionLoss("lap")
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    model.eval()
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            target = x.detach().clone().float()
            z = identity.detach().clone().requires_grad_(True)
            q = pose.detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([z, q], lr=lr)
            for _ in (range(steps) if progress is None else progress(range(steps), steps)):
                loss = loss_fn(model.generate(z, q)[:, :3].float(), target[:, :3])  # RGB (not an alpha channel)
                if not loss.requires_grad:  # a generator that is no function of its codes (a lookup)
                    return identity
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return z.detach()
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
        model.train(was_training)
