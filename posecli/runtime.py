"""Device, precision and seeding: passed in, never hard-coded."""

from __future__ import annotations

import os
import platform
import random
from functools import lru_cache

from .errors import UsageError


OFFLINE_ENV = "POSECLI_OFFLINE"


def offline() -> bool:
    """POSECLI_OFFLINE set (to anything but "" or "0"): never download pretrained weights
    (VGG16, LPIPS's AlexNet, rembg's U^2-Net); use them only when already in place."""
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


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


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AMX-BF16 or AVX512-BF16 (Linux /proc/cpuinfo): bf16 convolutions run about 2x fp32 there."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def inference_dtype(device: "torch.device", precision: str = "auto") -> "torch.dtype | None":
    """The autocast dtype for generating frames (None: fp32).

    auto: bf16 on CUDA and on CPUs with native bf16, else fp32. Unlike training,
    inference ends in uint8 pixels, where bf16's ~1e-2 relative error is a level or two.
    """
    import torch

    if precision not in ("auto", "fp32", "bf16"):
        raise UsageError(f"--precision {precision}: expected auto, fp32 or bf16")
    if precision == "auto":
        native = device.type == "cpu" and cpu_has_native_bf16()
        return torch.bfloat16 if native else autocast_dtype(device)
    return torch.bfloat16 if precision == "bf16" else None


def inference_autocast(device: "torch.device", dtype: "torch.dtype | None"):
    """A fresh autocast context (these objects keep state: one per use)."""
    import torch

    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def hardware_name(device) -> str:
    """What ran the work, for model files and benchmark results: ``[GPU; ]CPU model, N cores, torch T threads``."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    name = f"{cpu}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"
    if getattr(device, "type", str(device)) == "cuda":
        name = f"{torch.cuda.get_device_name(device)}; {name}"
    return name
