"""Putting a cut-out object into a scene: feathered alpha, Poisson, colour harmonisation, inpainting.

Every function works on a window around the object, never the whole scene,
so a 4K scene costs no more than a small one; the destination is uint8 HxWx3
RGB and is modified in place. A patch is placed with its top-left corner at
(x, y) in scene pixels and may hang over the scene's border (it is clipped).
"""

from __future__ import annotations

import numpy as np

BLENDS = ("alpha", "poisson")


def clip_window(shape, x: int, y: int, w: int, h: int):
    """The part of the rectangle inside an image of ``shape``: (x0, y0, x1, y1), or None."""
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, shape[1]), min(y + h, shape[0])
    return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)


def feather_alpha(alpha: np.ndarray, radius: float) -> np.ndarray:
    """Pull the matte's edge in by ``radius``/2 and soften it over ``radius`` px (hides background fringes)."""
    import cv2

    a = alpha.astype(np.float32)
    if radius < 0.5:
        return a
    k = max(1, int(round(radius / 2)))
    a = cv2.erode(a, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    return np.clip(cv2.GaussianBlur(a, (0, 0), radius / 2), 0, 1)


def alpha_blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, x: int, y: int) -> np.ndarray:
    """dst = src * alpha + dst * (1 - alpha) where the patch lies; returns dst."""
    h, w = alpha.shape
    win = clip_window(dst.shape, x, y, w, h)
    if win is None:
        return dst
    x0, y0, x1, y1 = win
    sy, sx = slice(y0 - y, y1 - y), slice(x0 - x, x1 - x)
    a = alpha[sy, sx, None]
    region = dst[y0:y1, x0:x1].astype(np.float32)
    mixed = region * (1 - a) + src[sy, sx].astype(np.float32) * a
    dst[y0:y1, x0:x1] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return dst


def poisson_blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, x: int, y: int,
                  threshold: float = 0.5) -> np.ndarray:
    """Gradient-domain paste (cv2.seamlessClone) of the object where alpha > threshold; returns dst.

    The clone's mask is the object plus a band around it, reaching past the box:
    OpenCV ignores the source's gradients within ~3 px of the mask's border, and
    a flat-coloured object has gradients only at its edge. In the source the
    object stands on the band's mean scene colour (not its render's plain
    background, whose arbitrary brightness Poisson would carry over as a global
    shift), so the object keeps its colours while the seam and slow changes of
    the surroundings are blended in. The result is then alpha-blended with the
    (feathered) matte, so nothing outside the box changes. seamlessClone
    asserts when its placement crosses the destination's border, so it runs on
    a window around the box whose parts outside the scene repeat edge pixels.
    """
    import cv2

    from ..regions import Box, crop

    core = alpha > threshold
    if not core.any():
        return dst
    h, w = core.shape
    k = max(5, round(0.04 * max(h, w)))  # the band
    pad = k + 4  # room for the band and seamlessClone's boundary rows
    local = np.ascontiguousarray(crop(dst, Box(x - pad, y - pad, w + 2 * pad, h + 2 * pad)))
    m = np.zeros(local.shape[:2], np.uint8)
    m[pad : pad + h, pad : pad + w] = core
    m = cv2.dilate(m, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    a = np.zeros(local.shape[:2] + (1,), np.float32)
    a[pad : pad + h, pad : pad + w, 0] = alpha
    band = (m > 0) & (a[:, :, 0] < 0.05)
    fill = local[band].mean(0) if band.any() else local.reshape(-1, 3).mean(0)
    s = np.pad(src[:, :, :3].astype(np.float32), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    s = np.clip(s * a + fill * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    m *= np.uint8(255)
    bx, by, bw, bh = cv2.boundingRect(m)
    # seamlessClone centres the mask's bounding rect on p (integer halves): this p keeps it in place.
    p = (bx + bw // 2, by + bh // 2)
    cloned = cv2.seamlessClone(s, local, m.copy(), p, cv2.NORMAL_CLONE)  # it writes into the mask it gets
    return alpha_blend(dst, cloned[pad : pad + h, pad : pad + w], alpha, x, y)


def _lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def ring_mask(shape, x: int, y: int, w: int, h: int, width: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The window of the box grown by ``width`` (clipped) and a mask of its pixels outside the box."""
    x0, y0 = max(x - width, 0), max(y - width, 0)
    x1, y1 = min(x + w + width, shape[1]), min(y + h + width, shape[0])
    ring = np.ones((max(y1 - y0, 0), max(x1 - x0, 0)), bool)
    ring[max(y - y0, 0) : max(y + h - y0, 0), max(x - x0, 0) : max(x + w - x0, 0)] = False
    return (x0, y0, x1, y1), ring


def harmonize(src: np.ndarray, alpha: np.ndarray, dst: np.ndarray, box, strength: float = 0.5,
              ring: int | None = None) -> np.ndarray:
    """The object's Lab mean/std per channel moved towards those of a ring around ``box`` in ``dst``.

    ``strength`` 1 matches them fully (a red car on a grey road turns grey);
    0.5, the default, keeps most of the object's own colour. Returns new pixels.
    """
    import cv2

    width = ring or max(4, int(0.25 * max(box.w, box.h)))
    (x0, y0, x1, y1), ring_m = ring_mask(dst.shape, box.x, box.y, box.w, box.h, width)
    obj = alpha > 0.5
    if ring_m.sum() < 16 or obj.sum() < 16:
        return src
    target = _lab(dst[y0:y1, x0:x1])[ring_m]
    lab = _lab(src[:, :, :3])
    mu_o, sd_o = lab[obj].mean(0), lab[obj].std(0)
    mu_t, sd_t = target.mean(0), target.std(0)
    matched = (lab - mu_o) / np.maximum(sd_o, 1e-3) * sd_t + mu_t
    out = lab + strength * (matched - lab)
    out[..., 0] = np.clip(out[..., 0], 0, 100)
    rgb = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def inpaint(dst: np.ndarray, mask: np.ndarray, x: int, y: int, radius: int = 5, max_side: int = 384) -> np.ndarray:
    """Fill the pixels where ``mask`` (placed at x, y) is true from their surroundings (Telea); returns dst.

    Telea's cost grows with the hole's area times radius squared (a minute for
    a car in a 4K frame), so a window larger than ``max_side`` is filled at
    that size and scaled back: a filled hole is smooth anyway. Only the hole's
    pixels change.
    """
    import cv2

    h, w = mask.shape
    grow = 2 * radius + 2
    win = clip_window(dst.shape, x - grow, y - grow, w + 2 * grow, h + 2 * grow)
    inner = clip_window(dst.shape, x, y, w, h)
    if win is None or inner is None or not mask.any():
        return dst
    x0, y0, x1, y1 = win
    ix0, iy0, ix1, iy1 = inner
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    m[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = mask[iy0 - y : iy1 - y, ix0 - x : ix1 - x]
    keep = m > 0
    if not keep.any():
        return dst
    local = np.ascontiguousarray(dst[y0:y1, x0:x1])
    s = min(1.0, max_side / max(local.shape[:2]))
    if s < 1.0:
        size = (max(1, round(local.shape[1] * s)), max(1, round(local.shape[0] * s)))
        small = cv2.resize(local, size, interpolation=cv2.INTER_AREA)
        ms = cv2.dilate(cv2.resize(m, size, interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
        filled = cv2.inpaint(small, ms, max(3, round(radius * s)), cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (local.shape[1], local.shape[0]), interpolation=cv2.INTER_LINEAR)
    else:
        filled = cv2.inpaint(local, m, radius, cv2.INPAINT_TELEA)
    dst[y0:y1, x0:x1][keep] = filled.reshape(local.shape)[keep]
    return dst
