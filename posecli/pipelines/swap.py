"""Identity swap: the identity of one image in the pose of another.

Each input is encoded once (identity codes of the identity images, pose codes
of the pose images); the I x P results are then generated in batches.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .encode import encode_codes, model_device, prepare_pixels


def encode_identities(model, crops: Sequence[np.ndarray], batch_size: int = 64, device=None) -> torch.Tensor:
    """Identity codes (on the device) of images already at the model's size."""
    return encode_codes(model, crops, "identity", batch_size, device)


def encode_poses(model, crops: Sequence[np.ndarray], batch_size: int = 64, device=None) -> torch.Tensor:
    """Pose codes (on the device) of images already at the model's size."""
    return encode_codes(model, crops, "pose", batch_size, device)


def generate_pairs(model, identity: torch.Tensor, pose: torch.Tensor, pairs: Iterable[tuple[int, int]],
                   batch_size: int = 64, out_size: int | None = None) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """Yield ((i, j), uint8 (S, S, 3)) for G(identity[i], pose[j]), generated ``batch_size`` at a time.

    ``out_size`` resizes each result (cubic when enlarging).
    """
    from ..media.convert import resize_pixels, to_pixels

    pairs = list(pairs)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        ii = torch.tensor([p[0] for p in chunk], device=identity.device)
        jj = torch.tensor([p[1] for p in chunk], device=pose.device)
        with torch.inference_mode():
            images = to_pixels(model.generate(identity[ii], pose[jj]))
        for pair, img in zip(chunk, images):
            yield pair, (resize_pixels(img, out_size) if out_size else img)


def check_out_size(out_size: int | None) -> None:
    from ..errors import UsageError

    if out_size is not None and out_size < 1:
        raise UsageError(f"--size {out_size}: expected a positive number of pixels")


def swap_matrix(model, id_list: Sequence[np.ndarray], pose_list: Sequence[np.ndarray], crop: str = "center",
                out_size: int | None = None, batch_size: int = 64, device=None) -> np.ndarray:
    """uint8 (I, P, S, S, 3): result [i, j] is identity i in pose j (S = out_size or the model's size)."""
    check_out_size(out_size)
    device = device or model_device(model)
    id_crops = [prepare_pixels(model, p, crop) for p in id_list]
    pose_crops = [prepare_pixels(model, p, crop) for p in pose_list]
    size = out_size or model.image_size
    out = np.zeros((len(id_crops), len(pose_crops), size, size, 3), np.uint8)
    if not id_crops or not pose_crops:
        return out
    identity = encode_identities(model, id_crops, batch_size, device)
    pose = encode_poses(model, pose_crops, batch_size, device)
    pairs = [(i, j) for i in range(len(id_crops)) for j in range(len(pose_crops))]
    for (i, j), img in generate_pairs(model, identity, pose, pairs, batch_size, out_size):
        out[i, j] = img
    return out


def swap(model, id_pixels: np.ndarray, pose_pixels: np.ndarray, crop: str = "center",
         out_size: int | None = None, device=None) -> np.ndarray:
    """uint8 (S, S, 3): the identity of ``id_pixels`` in the pose of ``pose_pixels``."""
    return swap_matrix(model, [id_pixels], [pose_pixels], crop, out_size, device=device)[0, 0]
