"""Identity x pose sample grids, laid out as in the LORD papers' figures.

    +-------+-------+-------+
    | blank | pose0 | pose1 |      top row: the pose images
    +-------+-------+-------+
    |  id0  | 0 / 0 | 0 / 1 |      left column: the identity images
    +-------+-------+-------+      cells[i][j]: identity i in pose j
    |  id1  | 1 / 0 | 1 / 1 |
    +-------+-------+-------+

Numpy only (cv2 for resizing), so training code can draw per-epoch grids with it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 HW, HW1, HW3 or HW4 -> uint8 HW3 (grey repeated, alpha dropped)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {pixels.shape}")
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels[:, :, :3]


def _fit(pixels: np.ndarray, w: int, h: int) -> np.ndarray:
    from .media.convert import resize_pixels

    return resize_pixels(as_rgb(pixels), (w, h))


def grid_shape(n_id: int, n_pose: int, cell_w: int, cell_h: int, pad: int = 2) -> tuple[int, int]:
    """(height, width) of a grid with n_id rows and n_pose columns of results."""
    return ((n_id + 1) * cell_h + (n_id + 2) * pad, (n_pose + 1) * cell_w + (n_pose + 2) * pad)


def make_grid(id_images: Sequence[np.ndarray], pose_images: Sequence[np.ndarray], cells,
              pad: int = 2, background: int = 255) -> np.ndarray:
    """An (I+1) x (P+1) matrix of images with ``pad`` px of ``background`` around every cell.

    ``cells`` is indexable as cells[i][j] (a nested list or an (I, P, H, W, C)
    array). The cell size is that of cells[0][0] (or of the first input when
    there are no cells); images of another size are resized to it.
    Returns uint8 (H, W, 3) with the size given by ``grid_shape``.
    """
    n_id, n_pose = len(id_images), len(pose_images)
    if len(cells) != n_id or any(len(row) != n_pose for row in cells):
        raise ValueError(f"cells must be {n_id} rows of {n_pose} images")
    if pad < 0:
        raise ValueError("pad must be >= 0")
    if n_id and n_pose:
        ref = cells[0][0]
    elif n_id or n_pose:
        ref = (list(id_images) + list(pose_images))[0]
    else:
        raise ValueError("nothing to draw: no identity and no pose images")
    ch, cw = np.asarray(ref).shape[:2]
    height, width = grid_shape(n_id, n_pose, cw, ch, pad)
    out = np.full((height, width, 3), background, np.uint8)

    def put(row: int, col: int, img: np.ndarray) -> None:
        y, x = pad + row * (ch + pad), pad + col * (cw + pad)
        out[y : y + ch, x : x + cw] = _fit(img, cw, ch)

    for j, img in enumerate(pose_images):
        put(0, j + 1, img)
    for i, img in enumerate(id_images):
        put(i + 1, 0, img)
        for j in range(n_pose):
            put(i + 1, j + 1, cells[i][j])
    return out
