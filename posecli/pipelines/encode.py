"""Identity and pose codes of images, with any model implementing PoseModel."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..grid import as_rgb
from ..regions import crop_for_model


def model_device(model) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def prepare_pixels(model, pixels: np.ndarray, crop: str = "center", name: str = "") -> np.ndarray:
    """A user image of any size -> uint8 (S, S, 3) at the model's size (crop: center | face | none)."""
    return crop_for_model(as_rgb(pixels), model.image_size, crop, name)


def prepare(model, pixels: np.ndarray, crop: str = "center", name: str = "", device=None) -> torch.Tensor:
    """A user image of any size -> the model input, float (1, 3, S, S) in [0, 1]."""
    from ..media.convert import to_tensor

    return to_tensor(prepare_pixels(model, pixels, crop, name), device or model_device(model))


def encode_codes(model, crops, which: str, batch_size: int = 64, device=None, progress=None) -> torch.Tensor:
    """Identity (``which="identity"``) or pose codes, on the device, of images already at
    the model's size: uint8 (N, S, S, 3) or a list of (S, S, 3), ``batch_size`` at a time.

    ``progress``: an optional ``posecli.progress.progress``-like wrapper for the batches.
    """
    from ..media.convert import to_tensor

    device = device or model_device(model)
    fn = model.encode_identity if which == "identity" else model.encode_pose
    starts = range(0, len(crops), batch_size)
    if progress is not None:
        starts = progress(starts, total=len(starts), desc=f"encoding {which}")
    out = []
    with torch.inference_mode():
        for start in starts:
            out.append(fn(to_tensor(np.stack(crops[start : start + batch_size]), device)).float())
    return torch.cat(out) if out else torch.zeros(0, device=device)


def encode_prepared(model, crops, batch_size: int = 64, device=None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(identity float32 (N, D_id), pose float32 (N, D_pose)) of images already at the model's size."""
    ids = encode_codes(model, crops, "identity", batch_size, device, progress)
    poses = encode_codes(model, crops, "pose", batch_size, device, progress)
    n = len(crops)
    return (ids.reshape(n, model.identity_dim).cpu().numpy().astype(np.float32),
            poses.reshape(n, model.pose_dim).cpu().numpy().astype(np.float32))


def encode_images(model, pixels_list: Sequence[np.ndarray], batch_size: int = 64, device=None,
                  crop: str = "center") -> tuple[np.ndarray, np.ndarray]:
    """(identity float32 (N, D_id), pose float32 (N, D_pose)) of images of any size."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    crops = [prepare_pixels(model, p, crop) for p in pixels_list]
    return encode_prepared(model, crops, batch_size, device)
