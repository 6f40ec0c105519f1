"""Device, precision and seeding: passed in, never hard-coded."""

from __future__ import annotations

import random

from .errors import UsageError


def resolve_device(spec: str = "auto"):
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'."""
    import torch

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: no CUDA GPU is available here; use --device cpu or auto")
        try:
            dev = torch.device(spec)
        except RuntimeError as e:
            raise UsageError(f"--device {spec}: {e}") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
        return dev
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: Apple MPS is not available here")
        return torch.device("mps")
    raise UsageError(f"--device {spec}: expected auto, cpu, cuda, cuda:N or mps")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_dtype(device):
    """bf16 autocast on CUDA (no GradScaler needed), none on CPU (fp32 is exact and safe)."""
    import torch

    return torch.bfloat16 if device.type == "cuda" else None
