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


def feather_alpha(alpha: np.ndarray, radius: float, choke: bool = True) -> np.ndarray:
    """Soften the matte's edge over ``radius`` px; ``choke``: first pull it in by ``radius``/2 (hides fringes)."""
    import cv2

    a = alpha.astype(np.float32)
    if radius < 0.5:
        return a
    if choke:
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
    width = ring or max(4, int(0.25 * max(box.w, box.h)))
    (x0, y0, x1, y1), ring_m = ring_mask(dst.shape, box.x, box.y, box.w, box.h, width)
    if ring_m.sum() < 16:
        return src
    target = _lab(dst[y0:y1, x0:x1])[ring_m]
    return move_colours(src, alpha > 0.5, target.mean(0), target.std(0), strength)


def match_colours(src: np.ndarray, alpha: np.ndarray, ref: np.ndarray, ref_alpha: np.ndarray,
                  strength: float = 0.5) -> np.ndarray:
    """The object of ``src`` (where ``alpha`` > 0.5) with its Lab mean/std per channel moved towards those
    of the object of ``ref`` (where ``ref_alpha`` > 0.5) by ``strength``: a generated object takes the
    colours of the identity image it was drawn from. Returns new pixels."""
    obj = ref_alpha > 0.5
    if obj.sum() < 16:
        return src
    lab = _lab(ref[:, :, :3])[obj]
    return move_colours(src, alpha > 0.5, lab.mean(0), lab.std(0), strength)


def move_colours(src: np.ndarray, obj: np.ndarray, mu_t: np.ndarray, sd_t: np.ndarray,
                 strength: float) -> np.ndarray:
    """Every pixel of ``src`` moved in Lab so that the pixels in ``obj`` would have the mean ``mu_t`` and
    standard deviation ``sd_t`` per channel at ``strength`` 1 (a fraction of the way below 1)."""
    import cv2

    if obj.sum() < 16:
        return src
    lab = _lab(src[:, :, :3])
    mu_o, sd_o = lab[obj].mean(0), lab[obj].std(0)
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


def _row_offsets(dst: np.ndarray, rows: np.ndarray, left: np.ndarray, right: np.ndarray, dx: int, k: int,
                 bad: np.ndarray) -> np.ndarray:
    """Per row (left, right): the colour difference between the known pixels just outside a hole and their
    source dx away (sources in ``bad`` skipped); a side with none takes the other side's, else 0."""
    off = np.zeros((len(rows), 2, 3), np.float32)
    W = dst.shape[1]
    for j, (r, a, b) in enumerate(zip(rows, left, right)):
        got = [None, None]
        for side, cols in ((0, np.arange(a - k, a)), (1, np.arange(b + 1, b + 1 + k))):
            cols = cols[(cols >= 0) & (cols < W) & (cols + dx >= 0) & (cols + dx < W)]
            cols = cols[~bad[r, cols] & ~bad[r, cols + dx]]
            if len(cols):
                got[side] = (dst[r, cols].astype(np.float32) - dst[r, cols + dx].astype(np.float32)).mean(0)
        for side in (0, 1):
            v = got[side] if got[side] is not None else got[1 - side]
            if v is not None:
                off[j, side] = v
    return off


def inpaint_rows(dst: np.ndarray, hole: np.ndarray, forbidden: np.ndarray | None = None, strip: int = 6,
                 ring: int = 4, reach: float = 3.0, avoid: np.ndarray | None = None) -> np.ndarray:
    """Fill ``hole`` (bool, dst's size) with the scene's own pixels from the same rows; returns dst.

    An exemplar fill for scenes whose ground runs across the picture (streets,
    fields, floors): the hole is cut into strips of ``strip`` rows, top to
    bottom; each strip is copied from the same rows shifted sideways by the dx
    whose pixels best match the ``ring`` known pixels around the strip (sum of
    squared differences; the strips above, already filled, count as known), so
    lane markings, kerbs and textures continue instead of being smeared. Source
    pixels never come from a hole or from ``forbidden`` (other objects), nor
    from ``avoid`` (e.g. every object's box) unless a strip has no other. A
    per-row colour offset, ramped across the hole from its left to its right
    edge, hides the seams (a gradient-domain fill in one dimension). Shifts are
    searched within ``reach`` hole widths; a strip with no clean source of that
    width is filled row by row, linearly between the nearest clean pixels on
    either side (Telea's fill where a row has none). Only hole pixels change.
    """
    import cv2

    if not hole.any():
        return dst
    H, W = hole.shape
    todo = hole.copy()
    bad = hole | forbidden if forbidden is not None else hole.copy()
    ys = np.flatnonzero(hole.any(1))
    xs = np.flatnonzero(hole.any(0))
    hw = int(xs[-1] - xs[0] + 1)
    lim = int(max(reach * hw, hw + 32))
    img = dst.astype(np.float32)
    kernel = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
    for s in range(int(ys[0]), int(ys[-1]) + 1, strip):
        r0, r1 = s, min(s + strip, int(ys[-1]) + 1)
        h = todo[r0:r1]
        if not h.any():
            continue
        b0, b1 = max(r0 - ring, 0), min(r1 + ring, H)
        band_hole = np.zeros((b1 - b0, W), bool)
        band_hole[r0 - b0 : r1 - b0] = h
        near = (cv2.dilate(band_hole.astype(np.uint8), kernel) > 0) & ~band_hole & ~todo[b0:b1]
        rr, rc = np.nonzero(near)
        hr, hc = np.nonzero(h)
        c0, c1 = int(hc.min()), int(hc.max()) + 1
        # a shift is usable when the strip's rows over [c0 + dx, c1 + dx) hold no hole and no other object
        all_dxs = np.arange(-min(lim, c0), min(lim, W - c1) + 1)
        for blocked in ([bad[r0:r1] | avoid[r0:r1]] if avoid is not None else []) + [bad[r0:r1]]:
            cum = np.concatenate([[0], np.cumsum(blocked.any(0).astype(np.int32))])
            dxs = all_dxs[(cum[c1 + all_dxs] - cum[c0 + all_dxs]) == 0]
            if len(dxs):
                break
        if len(dxs) == 0 or len(rr) == 0:  # no clean source of the strip's width: each row spans its hole
            for r in range(r0, r1):
                cs = np.flatnonzero(h[r - r0])
                if not len(cs):
                    continue
                clean = np.flatnonzero(~bad[r] & ~todo[r])
                lft, rgt = clean[clean < cs[0]][-ring:], clean[clean > cs[-1]][:ring]
                if not len(lft) and not len(rgt):
                    continue  # left for Telea below
                a = img[r, lft].mean(0) if len(lft) else img[r, rgt].mean(0)
                b = img[r, rgt].mean(0) if len(rgt) else a
                xa = lft.mean() if len(lft) else cs[0] - 1
                xb = rgt.mean() if len(rgt) else cs[-1] + 1
                t = ((cs - xa) / max(xb - xa, 1))[:, None]
                dst[r, cs] = np.clip((1 - t) * a + t * b + 0.5, 0, 255).astype(np.uint8)
                img[r, cs] = dst[r, cs]
                todo[r, cs] = False
            left = todo[r0:r1] & h
            if left.any():
                m = np.zeros((H, W), np.uint8)
                m[r0:r1] = left
                x0, y0, x1, y1 = clip_window(dst.shape, c0 - 8, r0 - 8, c1 - c0 + 16, r1 - r0 + 16)
                filled = cv2.inpaint(np.ascontiguousarray(dst[y0:y1, x0:x1]), m[y0:y1, x0:x1], 3, cv2.INPAINT_TELEA)
                sel = m[y0:y1, x0:x1] > 0
                dst[y0:y1, x0:x1][sel] = filled[sel]
        else:
            tgt = img[rr + b0, rc]  # (P, 3)
            cost = np.empty(len(dxs), np.float64)
            for i0 in range(0, len(dxs), 256):
                d = dxs[i0 : i0 + 256]
                cols = rc[None, :] + d[:, None]
                ok = (cols >= 0) & (cols < W)
                colc = np.clip(cols, 0, W - 1)
                src = img[(rr + b0)[None, :], colc]
                usable = ok & ~bad[(rr + b0)[None, :], colc]
                e = ((src - tgt[None]) ** 2).sum(2)
                n = np.maximum(usable.sum(1), 1)
                cost[i0 : i0 + 256] = np.where(usable.sum(1) >= max(4, len(rr) // 4),
                                               (e * usable).sum(1) / n, np.inf)
            cost += 4.0 * np.abs(dxs) / max(hw, 1)  # near sources first, all else equal
            if not np.isfinite(cost).any():
                dx = int(dxs[np.argmin(np.abs(dxs))])
            else:
                dx = int(dxs[np.argmin(cost)])
            rows = np.arange(r0, r1)
            has = h.any(1)
            rows = rows[has]
            left = np.array([np.flatnonzero(todo[r])[0] for r in rows])
            right = np.array([np.flatnonzero(todo[r])[-1] for r in rows])
            off = _row_offsets(dst, rows, left, right, dx, ring, bad | todo)
            for j, r in enumerate(rows):
                cs = np.flatnonzero(todo[r])
                t = ((cs - left[j]) / max(right[j] - left[j], 1))[:, None]
                val = img[r, cs + dx] + (1 - t) * off[j, 0] + t * off[j, 1]
                dst[r, cs] = np.clip(val + 0.5, 0, 255).astype(np.uint8)
                img[r, cs] = dst[r, cs]
        todo[r0:r1] = False
        bad[r0:r1] &= ~hole[r0:r1] | (forbidden[r0:r1] if forbidden is not None else False)
    return dst


def contact_shadow(dst: np.ndarray, placement, box, strength: float = 0.35) -> np.ndarray:
    """Darken an ellipse under a placed object (its ground contact): width 1.1x the object's, height 6 % of the box.

    ``placement`` is the object's [x, y, w, h] in the scene; the shadow is
    centred on its bottom edge and clipped to the box. Modifies dst in place.
    """
    x, y, w, h = placement
    cx, cy = x + w / 2, y + h
    rx, ry = 0.55 * w, max(2.0, 0.06 * max(box.w, box.h))
    win = clip_window(dst.shape, box.x, box.y, box.w, box.h)
    if win is None or strength <= 0:
        return dst
    x0, y0, x1, y1 = win
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    f = 1 - strength * np.clip(1.2 - d, 0, 1)
    dst[y0:y1, x0:x1] = np.clip(dst[y0:y1, x0:x1] * f[..., None] + 0.5, 0, 255).astype(np.uint8)
    return dst
