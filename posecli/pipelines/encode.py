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


def encode_prepared(model, crops, batch_size: int = 64, device=None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Codes of images already at the model's size: uint8 (N, S, S, 3) or a list of (S, S, 3).

    ``progress``: an optional ``posecli.progress.progress``-like wrapper for the batches.
    """
    from ..media.convert import to_tensor

    device = device or model_device(model)
    n = len(crops)
    ids = np.zeros((n, model.identity_dim), np.float32)
    poses = np.zeros((n, model.pose_dim), np.float32)
    starts = range(0, n, batch_size)
    if progress is not None:
        starts = progress(starts, total=len(starts), desc="encoding")
    with torch.inference_mode():
        for start in starts:
            x = to_tensor(np.stack(crops[start : start + batch_size]), device)
            ids[start : start + len(x)] = model.encode_identity(x).float().cpu().numpy()
            poses[start : start + len(x)] = model.encode_pose(x).float().cpu().numpy()
    return ids, poses


def encode_images(model, pixels_list: Sequence[np.ndarray], batch_size: int = 64, device=None,
                  crop: str = "center") -> tuple[np.ndarray, np.ndarray]:
    """(identity float32 (N, D_id), pose float32 (N, D_pose)) of images of any size."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    crops = [prepare_pixels(model, p, crop) for p in pixels_list]
    return encode_prepared(model, crops, batch_size, device)
