"""Sample grids during training: one identity x pose grid for any method.

Rows are identity images, columns pose images, cells the generated identity-in-pose
(layout in posecli/grid.py). ``encoder_cells`` fills the cells of any ``PoseModel``
by encoding the images; a stage without encoders (LORD stage 1) passes cells
generated from its latent codes instead.
"""

from __future__ import annotations

import numpy as np
import torch

from ..media.convert import to_pixels, uint8_to_float


def encoder_cells(model, x_id: torch.Tensor, x_pose: torch.Tensor) -> torch.Tensor:
    """(len(x_id) * len(x_pose), 3, S, S): identity i in pose j at row i * len(x_pose) + j."""
    ids, poses = model.encode_identity(x_id), model.encode_pose(x_pose)
    return pair_cells(model.generate, ids, poses)


def pair_cells(generate, ids: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
    """Every (identity code, pose code) pair through ``generate``, identity major."""
    ni, npose = len(ids), len(poses)
    ii = torch.arange(ni, device=ids.device).repeat_interleave(npose)
    pp = torch.arange(npose, device=poses.device).repeat(ni)
    return generate(ids[ii], poses[pp])


def grid_image(cells: torch.Tensor, id_images: torch.Tensor, pose_images: torch.Tensor) -> np.ndarray:
    """cells (ni * npose, 3, S, S) float and the uint8 (N, 3, S, S) images -> an RGB grid."""
    from ..grid import make_grid

    ni, npose = len(id_images), len(pose_images)
    size = cells.shape[-1]
    px = to_pixels(cells.float()).reshape(ni, npose, size, size, 3)
    return make_grid(list(to_pixels(uint8_to_float(id_images))), list(to_pixels(uint8_to_float(pose_images))), px)
