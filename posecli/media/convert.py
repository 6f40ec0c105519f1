"""The one place where pixels become tensors and tensors become pixels.

Pixels: numpy uint8, (H, W, C) or a batch (N, H, W, C), RGB.
Tensors: torch float32 in [0, 1], (N, C, H, W) (or (C, H, W) for one image).
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(pixels: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 HWC or NHWC -> float NCHW in [0, 1]; one image gains a batch axis."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim == 3:
        pixels = pixels[None]
    pixels = np.ascontiguousarray(pixels)
    if not pixels.flags.writeable:  # e.g. read_image's arrays; torch wants writable memory
        pixels = pixels.copy()
    t = torch.from_numpy(pixels).to(device)
    return uint8_to_float(t.permute(0, 3, 1, 2))


def uint8_to_float(t: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW tensor (e.g. a dataset resident on the GPU) -> float in [0, 1]."""
    return t.float().div_(255.0)


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """float (N)CHW in [0, 1] -> uint8 (N)HWC, rounded and clamped."""
    t = images.detach().float().clamp(0, 1).mul(255.0).round_().to(torch.uint8)
    if t.ndim == 4:
        return t.permute(0, 2, 3, 1).cpu().numpy()
    if t.ndim == 3:
        return t.permute(1, 2, 0).cpu().numpy()
    raise ValueError(f"expected CHW or NCHW, got shape {tuple(t.shape)}")


def resize_pixels(pixels: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize uint8 HWC pixels to size x size (or (w, h)); area filter when shrinking."""
    import cv2

    w, h = (size, size) if isinstance(size, int) else size
    if pixels.shape[1] == w and pixels.shape[0] == h:
        return pixels
    shrink = w < pixels.shape[1] or h < pixels.shape[0]
    out = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out[:, :, None] if out.ndim == 2 and pixels.ndim == 3 else out


def center_square(pixels: np.ndarray) -> np.ndarray:
    """The largest centred square of an HWC image."""
    h, w = pixels.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return pixels[y : y + s, x : x + s]
