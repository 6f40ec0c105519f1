"""Image similarity metrics: MSE, PSNR, SSIM (torch) and LPIPS (lpips package).

Every function takes float tensors (N, C, H, W) in [0, 1] and returns one value
per image, shape (N,); callers average. PSNR of identical images is infinite:
it is capped at ``PSNR_CAP`` dB so that averages and JSON stay finite.

LPIPS needs ImageNet AlexNet weights that torchvision downloads on first use.
Where that is impossible (offline), ``lpips_distance`` returns None after one
warning naming the file to place; a random backbone is never used as a metric.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

import torch
import torch.nn.functional as F

log = logging.getLogger("posecli")

PSNR_CAP = 100.0  # dB; the PSNR of identical images (MSE 0)
SSIM_WINDOW = 11  # Wang et al. 2004: 11x11 Gaussian window, sigma 1.5
SSIM_SIGMA = 1.5
LPIPS_MIN_SIZE = 32  # AlexNet's pooling needs at least this; smaller images are upsampled


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image."""
    _check(x, y)
    return (x.float() - y.float()).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor, cap: float = PSNR_CAP) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB (peak 1.0), capped at ``cap``."""
    err = mse(x, y).double()
    val = 10.0 * torch.log10(1.0 / err.clamp_min(1e-300))
    return val.clamp(max=cap).float()


def _gaussian(size: int, sigma: float, device, dtype) -> torch.Tensor:
    r = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    return g / g.sum()


def _band(g: torch.Tensor, n: int) -> torch.Tensor:
    """(n - k + 1, n) matrix whose row r holds the kernel g at columns r .. r + k - 1."""
    k = len(g)
    m = torch.zeros(n - k + 1, n, dtype=g.dtype, device=g.device)
    rows = torch.arange(n - k + 1, device=g.device)
    for t in range(k):
        m[rows, rows + t] = g[t]
    return m


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
         data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (Gaussian window, valid region, channels averaged).

    Matches skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``. Images smaller than the window use the
    largest odd window that fits.
    """
    _check(x, y)
    # float64: variances are small differences of squares (MPS has no float64)
    dtype = torch.float32 if x.device.type == "mps" else torch.float64
    x, y = x.to(dtype), y.to(dtype)
    h, w = x.shape[-2:]
    size = min(window, h, w)
    size -= 1 - size % 2
    g = _gaussian(size, sigma, x.device, x.dtype)
    # separable "valid" Gaussian blur as two band-matrix products (much faster than
    # depthwise float64 convolutions on CPU)
    band_h, band_w = _band(g, h), _band(g, w)

    def blur(t):
        return band_h @ t @ band_w.T

    mu_x, mu_y = blur(x), blur(y)
    s_xx = blur(x * x) - mu_x * mu_x
    s_yy = blur(y * y) - mu_y * mu_y
    s_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * s_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (s_xx + s_yy + c2)
    return (num / den).flatten(1).mean(1).float()


# --- LPIPS -----------------------------------------------------------------

_LPIPS: dict = {"tried": False, "model": None, "reason": None}


def lpips_backbone_file() -> tuple[str, str]:
    """(url, local path) of LPIPS's AlexNet weights; torchvision caches them in $TORCH_HOME/hub/checkpoints."""
    from urllib.parse import urlparse

    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.IMAGENET1K_V1.url
    name = os.path.basename(urlparse(url).path)
    return url, os.path.join(torch.hub.get_dir(), "checkpoints", name)


def _load_lpips():
    """The LPIPS(alex) module, or (None, reason) when its weights cannot be had."""
    try:
        import lpips
    except ImportError as e:
        return None, f"the lpips package cannot be imported ({e})"
    from ..runtime import OFFLINE_ENV, offline

    from ..downloads import forget_failure, recent_failure, record_failure

    url, target = lpips_backbone_file()
    there = os.path.exists(target)
    if not there and offline():
        return None, f"{OFFLINE_ENV} is set and its AlexNet weights are not in place; to enable it, place {url} at {target}"
    why = None if there else recent_failure(url)
    if why:  # no new attempt within a day of a failed one
        return None, f"its ImageNet AlexNet weights are not in place: {why}; to enable it, place {url} at {target}"
    if not there:
        log.info(f"downloading LPIPS's AlexNet weights to {target} (once)")
    # torch.hub writes "Downloading: ..." to STDOUT (it would corrupt --json) and torchvision
    # warns about deprecated arguments; the outcome is logged instead
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", verbose=False)
    except (OSError, RuntimeError, EOFError, ValueError) as e:  # URLError is an OSError
        detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if os.path.exists(target):
            return None, f"cannot load {target} ({detail}); replace it with a good copy"
        record_failure(url, type(e).__name__)
        return None, (f"its ImageNet AlexNet weights cannot be downloaded ({type(e).__name__}); "
                      f"to enable it, place {url} at {target} ({detail})")
    if not there:
        forget_failure(url)
    return model.eval().requires_grad_(False), None


def get_lpips(device="cpu"):
    """The shared LPIPS module on ``device``, or None (warned about once)."""
    if not _LPIPS["tried"]:
        _LPIPS["tried"] = True
        _LPIPS["model"], _LPIPS["reason"] = _load_lpips()
        if _LPIPS["model"] is None:
            from ..downloads import fallback_notice

            reason = _LPIPS["reason"]
            fallback_notice(f"LPIPS unavailable, reported as null: {reason.split(';')[0]}",
                            f"LPIPS unavailable, reported as null: {reason}")
    model = _LPIPS["model"]
    return None if model is None else model.to(device)


def lpips_unavailable_reason() -> str | None:
    """Why LPIPS is unavailable (after ``get_lpips`` was called), else None."""
    return _LPIPS["reason"]


def reset_lpips() -> None:
    """Forget the loaded (or failed) LPIPS module; the next call tries again."""
    _LPIPS.update(tried=False, model=None, reason=None)


def lpips_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """LPIPS(alex) distance per image (lower is more similar), or None when unavailable."""
    _check(x, y)
    model = get_lpips(x.device)
    if model is None:
        return None
    x, y = x.float(), y.float()
    if min(x.shape[-2:]) < LPIPS_MIN_SIZE:
        scale = LPIPS_MIN_SIZE / min(x.shape[-2:])
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        y = F.interpolate(y, scale_factor=scale, mode="bilinear", align_corners=False)
    with torch.inference_mode():
        return model(x, y, normalize=True).flatten()  # normalize: inputs in [0, 1]
