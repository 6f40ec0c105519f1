"""Composite: objects of a new identity placed into a scene, in the poses of the objects they replace.

For each target box: the box's square window (grown by ``margin``; for an
added object, another image) gives the pose; the model generates the identity
in that pose; a matte cuts the object out of the generated square; it is put
back into the box (Xiao et al. 2019, Fig. 12: alpha-blend the generations):

- fit "object" (default): as "frame", then each new object is stretched
  sideways to span the object it replaces, as found in the scene
  (``stretch_to_span``): in one pose, objects of one kind stand as long as
  each other, and a generator that draws a side view too short or a front
  view too wide is corrected by the scene itself. Added objects
  (``Target.pose``) replace nothing: "frame";
- fit "frame": a box is the model's framing window, as in its
  training images (``posecli synth scene`` writes such boxes): the generated
  square covers the window, so the object lands where and as large as the
  model draws it;
- fit "box": a box drawn tightly around an object: the object's extent is
  scaled uniformly to fit it, centred and standing on its bottom edge.

Either way nothing outside the boxes changes. With ``remove_original`` (the
default) each replaced object is first found in its crop and inpainted from
the scene's own rows, so no remnant shows around a smaller new object
(measured: benchmarks/composite_fidelity.py, benchmarks/RESULTS.md).

Only crops go through the model and every image operation works on a window
around its box, so the scene's size barely matters (4K included).

Paint order is back to front: by the box's bottom edge y + h ascending (in a
ground-plane scene the lower an object stands in the picture, the nearer it
is), ties in the order given; nearer objects are painted over farther ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import UsageError
from ..regions import Box, crop
from .blending import (BLENDS, alpha_blend, contact_shadow, feather_alpha, harmonize, inpaint, match_colours,
                       poisson_blend)
from .boxfile import boxes_for, load_boxes  # noqa: F401 (part of this module's API)
from .matting import Matter

log = logging.getLogger("posecli")
FITS = ("object", "frame", "box")
UPSCALES = ("linear", "cubic", "lanczos", "sharp")  # how a generated square is scaled up to its box
INPAINTS = ("rows", "telea")  # how --remove-original fills the old object's pixels
MAX_FIT_STEPS = 10000  # --fit-identity: beyond this it is a mistake, not a setting
SPAN_EDGE = 0.03  # --fit object: a found side this close to the box's edge (x its width) is not trusted,
SPAN_TOL = 0.06  # nor one this close to the drawn object's side
SPAN_RATIO = 2.0  # nor a span this many times longer or shorter than the drawn object
HOLE_GROW = 0.02  # the old object's matte is dilated by this fraction of the box (its anti-aliased edge)


@dataclass(frozen=True)
class Target:
    """A box to fill; ``pose`` None replaces the object in the box, else adds one posed like that image."""

    box: Box
    pose: np.ndarray | None = field(default=None, compare=False)
    pose_name: str = "scene"


@dataclass
class CompositeResult:
    pixels: np.ndarray  # same shape and dtype as the scene
    report: list[dict]  # per target, in the order given
    debug: dict[str, np.ndarray]  # name -> uint8 image (mattes, crops) when asked for


def paint_order(boxes: list[Box]) -> list[int]:
    """Indices back to front: bottom edge ascending, ties in input order."""
    return sorted(range(len(boxes)), key=lambda i: (boxes[i].y + boxes[i].h, i))


def rgb_of(pixels: np.ndarray) -> np.ndarray:
    """uint8 HW / HW1 / HW3 / HW4 -> a new HW3 array (grey repeated, alpha dropped)."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    a = pixels[:, :, None] if pixels.ndim == 2 else pixels
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got shape {pixels.shape}")
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[:, :, :3].copy()


def natural_layout(pixels: np.ndarray) -> np.ndarray:
    """RGBA as read -> HxW grey when R = G = B and opaque, HxWx3 when opaque, else kept RGBA."""
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        if (pixels[:, :, 3] == 255).all():
            pixels = pixels[:, :, :3]
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        r, g, b = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]
        if np.array_equal(r, g) and np.array_equal(g, b):
            return np.ascontiguousarray(r)
    return pixels


def square_of(pixels: np.ndarray, box: Box, size: int, margin: float) -> np.ndarray:
    """The model's input for a box: its square grown by ``margin``, edge pixels repeated past the border."""
    from ..media.convert import resize_pixels

    return np.ascontiguousarray(resize_pixels(np.ascontiguousarray(crop(pixels, box.square(margin))), size))


def whole_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """A whole image (identity, added pose) as a square, padded by its edge pixels rather than cut."""
    h, w = pixels.shape[:2]
    return square_of(rgb_of(pixels), Box(0, 0, w, h), size, 0.0)


def identity_code(model, id_square: np.ndarray, fit_steps: int = 0, progress=None):
    """The identity code of ``id_square`` (the model's size), on the model's device: the encoder's, or
    with ``fit_steps`` > 0 refined by test-time latent optimisation (``progress`` wraps its steps)."""
    from ..media.convert import to_tensor
    from ..training.invert import fit_identity
    from .encode import model_device

    return fit_identity(model, to_tensor(id_square, model_device(model)), fit_steps, progress=progress)


def generate(model, identity, pose_squares: list[np.ndarray],
             batch_size: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 (N, S, S, 3) renders of the identity code ``identity`` (from ``identity_code``) in each pose,
    and their alpha (N, S, S) when the model has one."""
    import torch

    from ..media.convert import to_pixels, to_tensor
    from .encode import model_device

    dev = model_device(model)
    outs = []
    with torch.inference_mode():
        for start in range(0, len(pose_squares), batch_size):
            pose = model.encode_pose(to_tensor(np.stack(pose_squares[start : start + batch_size]), dev))
            outs.append(to_pixels(model.generate(identity.expand(len(pose), *identity.shape[1:]), pose)))
    out = np.concatenate(outs)
    alpha = out[..., 3].astype(np.float32) / 255.0 if out.shape[-1] == 4 else None
    return np.ascontiguousarray(out[..., :3]), alpha


def upscale_object(rgb: np.ndarray, alpha: np.ndarray, size: tuple[int, int], how: str = "linear",
                   fill=(0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """A matted object (uint8 HxWx3 colours, float HxW alpha) resized to (w, h): (colours, alpha).
    Colours: area filter when shrinking; when enlarging, ``how`` (see ``UPSCALES``). Alpha: always
    linear (no ringing in the matte).

    The colours are resized premultiplied by the matte and divided by the
    matte resized alike, so no pixel near the edge takes in the colour that
    lies outside the object (the render's background): a plain resize did, and
    the feathered edge showed it (measured: benchmarks/RESULTS.md). Where the
    resized matte is zero the colour is ``fill``.
    linear / cubic / lanczos: OpenCV's interpolations; sharp: lanczos followed
    by an unsharp mask whose radius grows with the scale (a 64-px render blown
    up to 160 px is soft: this restores some edge contrast).
    """
    import cv2

    if how not in UPSCALES:
        raise UsageError(f"--upscale {how}: expected one of {', '.join(UPSCALES)}")
    w, h = size
    if w <= rgb.shape[1] and h <= rgb.shape[0]:
        flag = cv2.INTER_AREA
    else:
        flag = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}.get(how, cv2.INTER_LANCZOS4)
    a = np.clip(alpha.astype(np.float32), 0, 1)
    pm = cv2.resize(rgb.astype(np.float32) * a[:, :, None], (w, h), interpolation=flag)
    am = cv2.resize(a, (w, h), interpolation=flag)[:, :, None]
    seen, fill = am > 1e-3, np.asarray(fill, np.float32)
    out = np.where(seen, pm / np.maximum(am, 1e-3), fill)
    if how == "sharp" and flag != cv2.INTER_AREA:
        soft = cv2.GaussianBlur(out, (0, 0), 0.5 * max(w / rgb.shape[1], 1.0))
        out = np.where(seen, out * 1.6 - soft * 0.6, fill)
    a_out = am[:, :, 0] if flag == cv2.INTER_LINEAR else cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), a_out


def place_object(rgb: np.ndarray, matte: np.ndarray, box: Box, fit: str = "frame", margin: float = 0.0,
                 feather: float | None = None, upscale: str = "linear", choke: bool = True):
    """The matted object as box-sized (rgb, alpha), and where it landed ([x, y, w, h] in the scene).

    fit "frame": the generated square covers the window the pose came from
    (``box.square(margin)``), so the model's own framing sets the object's size
    and position, as in its training images. fit "box": the object's extent
    is scaled uniformly to fit the box, centred and standing on its bottom edge.
    Nothing outside the box is touched. None when the matte is empty.
    ``feather``: the edge's softening radius in box pixels (default: 0.6 % of
    the box); ``choke`` also pulls the edge in by half of it (hides a fringe
    of the render's background, at the cost of the object's outline).
    """
    from .matting import border_colour, unmix

    ys, xs = np.nonzero(matte > 0.5)
    if len(xs) == 0:
        return None
    S = rgb.shape[0]
    rgb = unmix(rgb, matte)
    if fit == "frame":
        win = box.square(margin)
        s = win.w / S
        sx0, sy0, sx1, sy1 = 0, 0, S, S
        ox, oy = win.x - box.x, win.y - box.y  # where the square's origin lands, in box pixels
    else:
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        s = min(box.w / (x1 - x0), box.h / (y1 - y0))
        pad = 2  # keep the matte's soft edge just outside its core
        sx0, sy0, sx1, sy1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, S), min(y1 + pad, S)
        ox, oy = (box.w - (x1 - x0) * s) / 2 - x0 * s, box.h - y1 * s
    tw, th = max(1, round((sx1 - sx0) * s)), max(1, round((sy1 - sy0) * s))
    left, top = round(ox + sx0 * s), round(oy + sy0 * s)
    # the rest of the box shows the render's own background: no false edge for Poisson's gradients
    bg = np.round(border_colour(rgb)).astype(np.uint8)
    obj, a = upscale_object(rgb[sy0:sy1, sx0:sx1], matte[sy0:sy1, sx0:sx1], (tw, th), upscale, bg)
    out_rgb = np.empty((box.h, box.w, 3), np.uint8)
    out_rgb[:] = bg
    out_a = np.zeros((box.h, box.w), np.float32)
    bx0, by0, bx1, by1 = max(left, 0), max(top, 0), min(left + tw, box.w), min(top + th, box.h)
    if bx0 < bx1 and by0 < by1:
        out_rgb[by0:by1, bx0:bx1] = obj[by0 - top : by1 - top, bx0 - left : bx1 - left]
        out_a[by0:by1, bx0:bx1] = a[by0 - top : by1 - top, bx0 - left : bx1 - left]
    radius = feather if feather is not None else max(1.0, 0.006 * max(box.w, box.h))
    out_a = feather_alpha(np.clip(out_a, 0, 1), radius, choke)
    ys, xs = np.nonzero(out_a > 0.5)
    if len(xs) == 0:
        return None
    placement = [int(box.x + xs.min()), int(box.y + ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
    return out_rgb, out_a, placement


def reconstruct(model, squares: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
    """uint8 (N, S, S, 3): the model's reconstruction of each square (its own identity in its own pose)."""
    import torch

    from ..media.convert import to_pixels, to_tensor
    from .encode import model_device

    dev = model_device(model)
    outs = []
    with torch.inference_mode():
        for start in range(0, len(squares), batch_size):
            x = to_tensor(np.stack(squares[start : start + batch_size]), dev)
            outs.append(to_pixels(model.generate(model.encode_identity(x), model.encode_pose(x))))
    return np.ascontiguousarray(np.concatenate(outs)[..., :3])


def row_background(original: np.ndarray, box: Box, window, avoid: np.ndarray | None = None) -> np.ndarray | None:
    """Each row's background colour beside the box, for the rows of ``window`` (x0, y0, x1, y1): (rows, 3) or None.

    The row background is the per-row median of the scene beside the box (up
    to two box widths left and right, outside ``avoid``, the other boxes):
    on a street the ground runs across the picture, so an object is what
    differs from its row (``row_difference``).
    """
    x0, y0, x1, y1 = window
    W = original.shape[1]
    lo, hi = max(0, box.x - 2 * box.w), min(W, box.x + 3 * box.w)
    cols = np.r_[lo : max(lo, box.x), min(hi, box.x + box.w) : hi]
    if avoid is not None and len(cols):
        free = cols[~avoid[y0:y1][:, cols].any(0)]
        cols = free if len(free) >= 8 else cols
    if len(cols) < 8:
        return None
    return np.median(original[y0:y1][:, cols].astype(np.float32), axis=1)


def row_difference(original: np.ndarray, window, bg: np.ndarray) -> np.ndarray:
    """The largest channel difference of each pixel of ``window`` from its row's background ``bg``, float32."""
    x0, y0, x1, y1 = window
    return np.abs(original[y0:y1, x0:x1].astype(np.float32) - bg[:, None]).max(2)


def shadow_like(pixels: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Pixels that look like their row's background in shade: every channel 55-97 % of it, in one proportion."""
    ratio = (pixels.astype(np.float32) + 1) / (bg[:, None] + 1)
    return (ratio.max(2) < 0.97) & (ratio.min(2) > 0.55) & (ratio.max(2) - ratio.min(2) < 0.08)


def original_region(original: np.ndarray, box: Box, matter: Matter, prior: np.ndarray | None = None,
                    recon: np.ndarray | None = None, avoid: np.ndarray | None = None, margin: float = 0.0):
    """Where the box's original object is: (hole as (x0, y0, bool mask) or None, the object's own pixels
    in the same window (bool, before the hole's growth and shade) or None, the context's matte, method).

    Found from the scene crop itself: the pixels that differ from their row's
    background (``row_difference``) and the silhouette of the model's
    reconstruction of the crop (``recon``, the old object redrawn in its pose)
    seed GrabCut as probable object, their common core as sure object,
    everything outside the box as background. With rembg, its matte of the
    crop (kept near the seeds). ``prior``, the new object's box-sized alpha,
    seeds it only when neither cue exists. The hole is the object dilated
    by 2 % of the box (its anti-aliased edge), within the box; the ground's
    shade around it (its shadow: darker in every channel by one proportion)
    is kept, as the new object stands there in the same pose.
    """
    import cv2

    from .blending import clip_window
    from .matting import background_matte, drop_specks, fill_holes, grabcut_seeded

    grow = max(4, round(0.15 * max(box.w, box.h)))
    x0, y0, x1, y1 = clip_window(original.shape, box.x - grow, box.y - grow, box.w + 2 * grow, box.h + 2 * grow)
    ctx = np.ascontiguousarray(original[y0:y1, x0:x1])
    rect = (box.x - x0, box.y - y0, box.w, box.h)
    inside = np.zeros(ctx.shape[:2], bool)
    inside[max(rect[1], 0) : rect[1] + box.h, max(rect[0], 0) : rect[0] + box.w] = True
    seeds = []
    bg = row_background(original, box, (x0, y0, x1, y1), avoid)
    cue = diff = None
    if bg is not None:
        diff = row_difference(original, (x0, y0, x1, y1), bg)
        cue = drop_specks(fill_holes(diff > 30)) & inside
        cue = cue if cue.mean() > 0.002 else None
    if recon is not None:  # the window the pose square came from, placed in the context crop
        win = box.square(margin)
        sil = cv2.resize(background_matte(recon), (win.w, win.h), interpolation=cv2.INTER_LINEAR)
        r = np.zeros(ctx.shape[:2], np.float32)
        cw = clip_window(r.shape, win.x - x0, win.y - y0, win.w, win.h)
        if cw is not None and sil.max() > 0.5:
            cx0, cy0, cx1, cy1 = cw
            r[cy0:cy1, cx0:cx1] = sil[cy0 - (win.y - y0) : cy1 - (win.y - y0), cx0 - (win.x - x0) : cx1 - (win.x - x0)]
            seeds.append((r > 0.5) & inside)
    if cue is not None:
        seeds.append(cue)
    if not seeds and prior is not None:
        p = np.zeros(ctx.shape[:2], np.float32)
        pw = clip_window(p.shape, rect[0], rect[1], box.w, box.h)
        if pw is not None:
            wx0, wy0, wx1, wy1 = pw
            p[wy0:wy1, wx0:wx1] = prior[wy0 - rect[1] : wy1 - rect[1], wx0 - rect[0] : wx1 - rect[0]]
            seeds.append((p > 0.5) & inside)
    probable = np.logical_or.reduce(seeds) if seeds else inside
    if cue is not None:
        sure = cue & (seeds[0] if len(seeds) > 1 else cue)
    else:
        sure = probable
    k = max(1, round(0.03 * max(box.w, box.h)))
    sure = cv2.erode(sure.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0
    if matter.used == "rembg":
        m = matter(ctx, rect=rect, prior=probable.astype(np.float32))
    else:
        m = grabcut_seeded(ctx, sure, probable, ~inside)
        # GrabCut may take in whole bands of ground that look like the object: keep it near its seeds
        r = max(2, round(0.03 * max(box.w, box.h)))
        m = m * (cv2.dilate(probable.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0)
        matter.last = "grabcut (seeded by the crop's row difference and the model's reconstruction)"
    used = matter.last
    core = object_parts((m > 0.3) & inside, sure)
    if not core.any():
        return None, None, m, used
    d = max(2, round(HOLE_GROW * max(box.w, box.h)))
    hole = (cv2.dilate(core.astype(np.uint8), np.ones((2 * d + 1, 2 * d + 1), np.uint8)) > 0) & inside
    if bg is not None:  # the ground's own shade (the object's shadow) stays: the new one stands there
        shade = shadow_like(ctx, bg)
        hole &= ~(shade & ~cue) if cue is not None else ~shade
    return (x0, y0, hole), core, m, used


def stretch_to_span(fit, box: Box, span: tuple[int, int], edge: float = SPAN_EDGE, tol: float = SPAN_TOL,
                    ratio: float = SPAN_RATIO):
    """``place_object``'s (rgb, alpha, placement) stretched sideways so the object spans ``span``
    (left, right column in box pixels, inclusive: the replaced object's found extent).

    A side of ``span`` within ``edge`` x the box width of the box's edge is not
    trusted (the found region ran into a neighbour, a shadow or the box's
    border), nor one within ``tol`` x the box width of the drawn side (the
    found edge is only that exact): such a side keeps the drawn object's own.
    Unchanged when no side moves, or when the span is more than ``ratio``
    times longer or shorter than the drawn object (then the region found is a
    part of the old object, or took in a neighbour).
    """
    import cv2

    obj, a, _ = fit
    ys, xs = np.nonzero(a > 0.5)
    gl, gr = int(xs.min()), int(xs.max())
    e = max(1, round(edge * box.w))
    t = tol * box.w
    left = span[0] if span[0] >= e and abs(span[0] - gl) > t else gl
    right = span[1] if span[1] <= box.w - 1 - e and abs(span[1] - gr) > t else gr
    sx = (right - left + 1) / (gr - gl + 1)
    if (left, right) == (gl, gr) or not 1 / ratio <= sx <= ratio:  # beyond: a part found, or a neighbour
        return fit
    m = np.float32([[sx, 0, left - 0.5 - sx * (gl - 0.5)], [0, 1, 0]])  # outer pixel edges: gl -> left, gr -> right
    size = (a.shape[1], a.shape[0])
    obj = cv2.warpAffine(obj, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(a, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = np.nonzero(a > 0.5)
    if not len(xs):
        return fit
    return obj, a, [int(box.x + xs.min()), int(box.y + ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]


def stretch_to_found(fit, core: np.ndarray, dx: int, box: Box):
    """``stretch_to_span`` to the sides of ``core``, the old object found by ``original_region``
    (``dx``: its window's left edge in box pixels). Its columns count where the object stands
    (at least a tenth as tall as its tallest), not a sliver of shadow or neighbour. Unchanged
    when what was found is less than half the drawn object's area: a fragment."""
    if core.sum() < 0.5 * (fit[1] > 0.5).sum():
        return fit
    tall = core.sum(0)
    cols = np.nonzero(tall >= max(3, 0.1 * tall.max()))[0] + dx
    return stretch_to_span(fit, box, (int(cols.min()), int(cols.max())))


def object_parts(core: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """The connected parts of a matte that belong to the object: those touching ``sure`` (the
    cues' common core), else the largest. GrabCut also takes in what differs from the ground
    nearby, such as a building's windows at the top of the box or a piece of a neighbouring
    car; filling those in only added error."""
    import cv2

    n, lab = cv2.connectedComponents(core.astype(np.uint8), connectivity=8)
    if n <= 2:
        return core
    keep = np.unique(lab[core & sure])
    keep = keep[keep > 0]
    if not len(keep):
        keep = [1 + int(np.argmax(np.bincount(lab[core])[1:]))]
    return np.isin(lab, keep)


def fill_region(work: np.ndarray, hole, how: str = "rows", forbidden: np.ndarray | None = None,
                avoid: np.ndarray | None = None) -> list[int]:
    """Inpaint a hole from ``original_region`` in ``work`` (sources outside ``forbidden``, and outside ``avoid``
    where the rows allow: see ``blending.inpaint_rows``); returns its [x, y, w, h] in the scene."""
    from .blending import inpaint_rows

    x0, y0, m = hole
    ys, xs = np.nonzero(m)
    if how == "telea":
        d = max(3, round(0.02 * max(m.shape)))
        inpaint(work, m, x0, y0, radius=d)
    else:
        full = np.zeros(work.shape[:2], bool)
        full[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
        inpaint_rows(work, full, forbidden, avoid=avoid)
    return [int(x0 + xs.min()), int(y0 + ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def as_targets(boxes, width: int, height: int) -> list[Target]:
    out = []
    for b in boxes:
        t = b if isinstance(b, Target) else Target(b if isinstance(b, Box) else Box.parse(b))
        # regions' one rule: clipped to the scene with a notice; no pixel inside is an error
        box = t.box.clip_to(width, height, "box" if t.pose is None else f"--at box for {t.pose_name}")
        out.append(t if box == t.box else replace(t, box=box))
    return out


def composite(model, scene: np.ndarray, id_pixels: np.ndarray, boxes, *, matte: str | Matter = "auto",
              blend: str = "alpha", fit: str = "object", margin: float = 0.0, harmonize_strength: float = 0.0,
              remove_original: bool = True, feather: float | None = None, shadow: float = 0.0,
              upscale: str = "linear", inpaint_with: str = "rows", choke: bool = True,
              id_colour: float = 0.0, fit_identity: int = 100, id_code=None,
              debug: bool = False) -> CompositeResult:
    """The scene with each box's object replaced by the identity of ``id_pixels`` in that object's pose.

    scene: uint8 HxW, HxWx1, HxWx3 or HxWx4 (kept as given; colour goes to
    grey by luminance, new objects are opaque in the alpha channel).
    boxes: Box, 'x,y,w,h' or Target (Target(box, pose=pixels) adds an object
    posed like another image). matte: a kind of ``matting.MATTES`` or a
    Matter (reuse one across scenes: it holds the rembg session). blend:
    alpha | poisson. fit: object | frame | box (see the module docstring); margin
    grows each box's square window before it goes to the model.
    harmonize_strength > 0 moves the object's Lab statistics towards its
    surroundings. remove_original: inpaint each replaced object first
    (``original_region``, filled by ``inpaint_with``: rows | telea). shadow > 0:
    a soft contact shadow of that darkness under each placed object.
    upscale: how generated squares are enlarged (``UPSCALES``). feather,
    choke: see ``place_object``. id_colour > 0 moves each generated object's
    Lab mean and spread towards the ``id_pixels`` object's by that fraction:
    it corrects a generator's colour drift on identities it never saw.
    fit_identity > 0: refine the identity code by that many steps of test-time
    latent optimisation on ``id_pixels`` (``identity_code``). id_code: that
    code, computed once by the caller for many scenes of one identity (then
    fit_identity is not used). The report has one dict per box, in the order
    given.
    """
    import cv2

    if blend not in BLENDS:
        raise UsageError(f"--blend {blend}: expected one of {', '.join(BLENDS)}")
    if fit not in FITS:
        raise UsageError(f"--fit {fit}: expected one of {', '.join(FITS)}")
    if not 0.0 <= harmonize_strength <= 1.0:
        raise UsageError(f"harmonize strength {harmonize_strength}: expected 0..1")
    if not 0.0 <= shadow <= 1.0:
        raise UsageError(f"--shadow {shadow}: expected 0..1")
    if not 0.0 <= id_colour <= 1.0:
        raise UsageError(f"--id-colour {id_colour}: expected 0..1")
    if not 0 <= fit_identity <= MAX_FIT_STEPS:
        raise UsageError(f"--fit-identity {fit_identity}: expected 0..{MAX_FIT_STEPS} steps")
    if upscale not in UPSCALES:
        raise UsageError(f"--upscale {upscale}: expected one of {', '.join(UPSCALES)}")
    if inpaint_with not in INPAINTS:
        raise UsageError(f"--inpaint {inpaint_with}: expected one of {', '.join(INPAINTS)}")
    h, w = scene.shape[:2]
    targets = as_targets(boxes, w, h)
    matter = matte if isinstance(matte, Matter) else Matter(matte)
    original = rgb_of(scene)
    work = original.copy()
    alpha_ch = scene[:, :, 3].copy() if scene.ndim == 3 and scene.shape[2] == 4 else None
    dbg: dict[str, np.ndarray] = {}
    report = [{"index": i, "box": t.box.as_list(), "pose_source": t.pose_name, "matte": matter.used, "blend": blend,
               "harmonized": harmonize_strength > 0, "removed_original": False, "inpainted": None}
              for i, t in enumerate(targets)]
    if not targets:
        return CompositeResult(scene.copy(), report, dbg)

    size = model.image_size
    poses = [square_of(original, t.box, size, margin) if t.pose is None else whole_square(t.pose, size)
             for t in targets]
    id_square = whole_square(id_pixels, size)
    if id_code is None:
        id_code = identity_code(model, id_square, fit_identity)
    renders, gen_alpha = generate(model, id_code, poses)
    if debug:
        dbg["identity"] = id_square

    # Mattes and placements first: a new object's silhouette also seeds the matte of the one it replaces.
    fitted = []
    id_matte = matter(id_square) if id_colour > 0 else None
    for i, t in enumerate(targets):
        m = matter(renders[i], alpha=None if gen_alpha is None else gen_alpha[i])
        if id_matte is not None:
            renders[i] = match_colours(renders[i], m, id_square, id_matte, id_colour)
        fitted.append(place_object(renders[i], m, t.box, "frame" if fit == "object" else fit, margin, feather,
                                   upscale, choke))
        report[i]["matte"] = matter.last
        if debug:
            dbg[f"box{i}_pose"], dbg[f"box{i}_generated"] = poses[i], renders[i]
            dbg[f"box{i}_matte"] = (m * 255 + 0.5).astype(np.uint8)
        if fitted[i] is None:
            log.warning(f"box {t.box.as_list()}: the generated object's matte is empty (or falls outside the box); "
                        f"nothing placed")

    replaced = [i for i, t in enumerate(targets) if t.pose is None]
    holes = {}
    if replaced and (remove_original or fit == "object"):  # find each old object in its crop
        recons = reconstruct(model, [poses[i] for i in replaced])
        avoid = np.zeros((h, w), bool)
        for t in targets:
            avoid[max(t.box.y, 0) : t.box.y + t.box.h, max(t.box.x, 0) : t.box.x + t.box.w] = True
        for j, i in enumerate(replaced):
            t = targets[i]
            prior = fitted[i][1] if fitted[i] is not None else None
            hole, core, m, used = original_region(original, t.box, matter, prior, recons[j], avoid, margin)
            report[i]["original_matte"] = used
            if hole is None:
                log.warning(f"box {t.box.as_list()}: the original object's matte is empty; "
                            f"{'nothing inpainted' if remove_original else 'drawn as the model frames it'}")
            else:
                holes[i] = hole
                if fit == "object" and fitted[i] is not None:  # the new object spans the old one's sides
                    drawn = fitted[i]
                    fitted[i] = stretch_to_found(drawn, core, hole[0] - t.box.x, t.box)
                    if fitted[i] is not drawn:  # the placement's width, new over drawn
                        report[i]["stretched"] = round(fitted[i][2][2] / drawn[2][2], 3)
            if debug:
                dbg[f"box{i}_original_matte"] = (m * 255 + 0.5).astype(np.uint8)
                dbg[f"box{i}_reconstruction"] = recons[j]
    if remove_original:
        pending = np.zeros((h, w), bool)  # no fill copies pixels of an object still to be removed
        near = np.zeros((h, w), bool)  # nor, where the rows allow, the pixels around any of them (missed parts)
        for i, (x0, y0, m) in holes.items():
            pending[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] |= m
            r = max(2, round(0.08 * max(targets[i].box.w, targets[i].box.h)))
            near[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] |= cv2.dilate(
                m.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
        for i, hole in holes.items():
            x0, y0, m = hole
            pending[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] &= ~m
            where = fill_region(work, hole, inpaint_with, pending, near)
            report[i].update(removed_original=True, inpainted=where)

    for k, i in enumerate(paint_order([t.box for t in targets])):
        t = targets[i]
        report[i]["order"] = k
        if fitted[i] is None:
            report[i].update(placement=None, coverage=0.0)
            continue
        obj, a, placement = fitted[i]
        if harmonize_strength > 0:
            obj = harmonize(obj, a, work, t.box, harmonize_strength)
        if shadow > 0:
            contact_shadow(work, placement, t.box, shadow)
        (alpha_blend if blend == "alpha" else poisson_blend)(work, obj, a, t.box.x, t.box.y)
        if alpha_ch is not None:  # the new object is opaque: alpha "over" the scene's alpha (in place)
            alpha_blend(alpha_ch[:, :, None], np.full(obj.shape[:2] + (1,), 255, np.uint8), a, t.box.x, t.box.y)
        report[i].update(placement=placement, coverage=round(float((a > 0.5).mean()), 4))
        if debug:
            dbg[f"box{i}_placed"] = np.dstack([obj, (a * 255 + 0.5).astype(np.uint8)])

    if scene.ndim == 2 or scene.shape[2] == 1:
        out = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)  # exact for the untouched (R = G = B) pixels
        out = out if scene.ndim == 2 else out[:, :, None]
    elif alpha_ch is not None:
        out = np.dstack([work, alpha_ch])
    else:
        out = work
    return CompositeResult(out, report, dbg)
