"""Composite: objects of a new identity placed into a scene, in the poses of the objects they replace.

For each target box: the box's square window (grown by ``margin``; for an
added object, another image) gives the pose; the model generates the identity
in that pose; a matte cuts the object out of the generated square; it is put
back into the box (Xiao et al. 2019, Fig. 12: alpha-blend the generations):

- fit "frame" (default): a box is the model's framing window, as in its
  training images (``posecli synth scene`` writes such boxes): the generated
  square covers the window, so the object lands where and as large as the
  model draws it;
- fit "box": a box drawn tightly around an object: the object's extent is
  scaled uniformly to fit it, centred and standing on its bottom edge.

Either way nothing outside the boxes changes, except where ``remove_original``
inpaints (each replaced object's matte, dilated, before anything is pasted,
so no remnant shows around a smaller new object).

Only crops go through the model and every image operation works on a window
around its box, so the scene's size barely matters (4K included).

Paint order is back to front: by the box's bottom edge y + h ascending (in a
ground-plane scene the lower an object stands in the picture, the nearer it
is), ties in the order given; nearer objects are painted over farther ones.
With ``remove_original`` every replaced object's own matte (dilated) is
inpainted first, so no remnant shows where the new object is smaller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import UsageError
from ..regions import Box, crop
from .blending import BLENDS, alpha_blend, feather_alpha, harmonize, inpaint, poisson_blend
from .boxfile import boxes_for, load_boxes  # noqa: F401 (part of this module's API)
from .matting import Matter

log = logging.getLogger("posecli")
FITS = ("frame", "box")


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


def generate(model, id_square: np.ndarray, pose_squares: list[np.ndarray],
             batch_size: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 (N, S, S, 3) renders of the identity in each pose, and their alpha (N, S, S) when the model has one."""
    import torch

    from ..media.convert import to_pixels, to_tensor
    from .encode import model_device

    dev = model_device(model)
    outs = []
    with torch.inference_mode():
        identity = model.encode_identity(to_tensor(id_square, dev))
        for start in range(0, len(pose_squares), batch_size):
            pose = model.encode_pose(to_tensor(np.stack(pose_squares[start : start + batch_size]), dev))
            outs.append(to_pixels(model.generate(identity.expand(len(pose), *identity.shape[1:]), pose)))
    out = np.concatenate(outs)
    alpha = out[..., 3].astype(np.float32) / 255.0 if out.shape[-1] == 4 else None
    return np.ascontiguousarray(out[..., :3]), alpha


def place_object(rgb: np.ndarray, matte: np.ndarray, box: Box, fit: str = "frame", margin: float = 0.0,
                 feather: float | None = None):
    """The matted object as box-sized (rgb, alpha), and where it landed ([x, y, w, h] in the scene).

    fit "frame": the generated square covers the window the pose came from
    (``box.square(margin)``), so the model's own framing sets the object's size
    and position, as in its training images. fit "box": the object's extent
    is scaled uniformly to fit the box, centred and standing on its bottom edge.
    Nothing outside the box is touched. None when the matte is empty.
    """
    import cv2

    from ..media.convert import resize_pixels
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
    obj = resize_pixels(np.ascontiguousarray(rgb[sy0:sy1, sx0:sx1]), (tw, th))
    a = cv2.resize(np.ascontiguousarray(matte[sy0:sy1, sx0:sx1]), (tw, th), interpolation=cv2.INTER_LINEAR)
    # the rest of the box shows the render's own background: no false edge for Poisson's gradients
    out_rgb = np.empty((box.h, box.w, 3), np.uint8)
    out_rgb[:] = np.round(border_colour(rgb)).astype(np.uint8)
    out_a = np.zeros((box.h, box.w), np.float32)
    bx0, by0, bx1, by1 = max(left, 0), max(top, 0), min(left + tw, box.w), min(top + th, box.h)
    if bx0 < bx1 and by0 < by1:
        out_rgb[by0:by1, bx0:bx1] = obj[by0 - top : by1 - top, bx0 - left : bx1 - left]
        out_a[by0:by1, bx0:bx1] = a[by0 - top : by1 - top, bx0 - left : bx1 - left]
    radius = feather if feather is not None else max(1.0, 0.006 * max(box.w, box.h))
    out_a = feather_alpha(np.clip(out_a, 0, 1), radius)
    ys, xs = np.nonzero(out_a > 0.5)
    if len(xs) == 0:
        return None
    placement = [int(box.x + xs.min()), int(box.y + ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
    return out_rgb, out_a, placement


def remove_object(work: np.ndarray, original: np.ndarray, box: Box, matter: Matter,
                  prior: np.ndarray | None = None):
    """Inpaint the original object's matte (dilated) in ``work``.

    ``prior``: the new object's box-sized alpha (same pose, so nearly the old
    object's silhouette); it seeds the matte. Returns (inpainted [x, y, w, h]
    or None, the matte of the box's context crop, the matte method used).
    """
    import cv2

    from .blending import clip_window

    grow = max(4, round(0.15 * max(box.w, box.h)))
    x0, y0, x1, y1 = clip_window(original.shape, box.x - grow, box.y - grow, box.w + 2 * grow, box.h + 2 * grow)
    ctx = np.ascontiguousarray(original[y0:y1, x0:x1])
    rect = (box.x - x0, box.y - y0, box.w, box.h)
    inside = np.zeros(ctx.shape[:2], bool)
    inside[max(rect[1], 0) : rect[1] + box.h, max(rect[0], 0) : rect[0] + box.w] = True
    p = None
    if prior is not None:  # the box-sized prior, placed in the context crop
        p = np.zeros(ctx.shape[:2], np.float32)
        win = clip_window(p.shape, rect[0], rect[1], box.w, box.h)
        if win is not None:
            wx0, wy0, wx1, wy1 = win
            p[wy0:wy1, wx0:wx1] = prior[wy0 - rect[1] : wy1 - rect[1], wx0 - rect[0] : wx1 - rect[0]]
    m = matter(ctx, rect=rect, prior=p)
    used = matter.last
    core = (m > 0.3) & inside
    if not core.any():
        return None, m, used
    d = max(3, round(0.04 * max(box.w, box.h)))  # covers the soft edge and shadow fringe
    hole = cv2.dilate(core.astype(np.uint8), np.ones((2 * d + 1, 2 * d + 1), np.uint8)) > 0
    inpaint(work, hole, x0, y0, radius=d)
    ys, xs = np.nonzero(hole)
    where = [int(x0 + xs.min()), int(y0 + ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
    return where, m, used


def as_targets(boxes, width: int, height: int) -> list[Target]:
    out = []
    for b in boxes:
        t = b if isinstance(b, Target) else Target(b if isinstance(b, Box) else Box.parse(b))
        # regions' one rule: clipped to the scene with a notice; no pixel inside is an error
        box = t.box.clip_to(width, height, "box" if t.pose is None else f"--at box for {t.pose_name}")
        out.append(t if box == t.box else replace(t, box=box))
    return out


def composite(model, scene: np.ndarray, id_pixels: np.ndarray, boxes, *, matte: str | Matter = "auto",
              blend: str = "alpha", fit: str = "frame", margin: float = 0.0, harmonize_strength: float = 0.0,
              remove_original: bool = False, feather: float | None = None, debug: bool = False) -> CompositeResult:
    """The scene with each box's object replaced by the identity of ``id_pixels`` in that object's pose.

    scene: uint8 HxW, HxWx1, HxWx3 or HxWx4 (kept as given; colour goes to
    grey by luminance, new objects are opaque in the alpha channel).
    boxes: Box, 'x,y,w,h' or Target (Target(box, pose=pixels) adds an object
    posed like another image). matte: a kind of ``matting.MATTES`` or a
    Matter (reuse one across scenes: it holds the rembg session). blend:
    alpha | poisson. fit: frame | box (see the module docstring); margin
    grows each box's square window before it goes to the model.
    harmonize_strength > 0 moves the object's Lab statistics towards its
    surroundings. The report has one dict per box, in the order given.
    """
    import cv2

    if blend not in BLENDS:
        raise UsageError(f"--blend {blend}: expected one of {', '.join(BLENDS)}")
    if fit not in FITS:
        raise UsageError(f"--fit {fit}: expected one of {', '.join(FITS)}")
    if not 0.0 <= harmonize_strength <= 1.0:
        raise UsageError(f"harmonize strength {harmonize_strength}: expected 0..1")
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
    renders, gen_alpha = generate(model, id_square, poses)
    if debug:
        dbg["identity"] = id_square

    # Mattes and placements first: a new object's silhouette also seeds the matte of the one it replaces.
    fitted = []
    for i, t in enumerate(targets):
        m = matter(renders[i], alpha=None if gen_alpha is None else gen_alpha[i])
        fitted.append(place_object(renders[i], m, t.box, fit, margin, feather))
        report[i]["matte"] = matter.last
        if debug:
            dbg[f"box{i}_pose"], dbg[f"box{i}_generated"] = poses[i], renders[i]
            dbg[f"box{i}_matte"] = (m * 255 + 0.5).astype(np.uint8)
        if fitted[i] is None:
            log.warning(f"box {t.box.as_list()}: the generated object's matte is empty (or falls outside the box); "
                        f"nothing placed")

    if remove_original:
        for i, t in enumerate(targets):
            if t.pose is None:
                prior = fitted[i][1] if fitted[i] is not None else None
                where, m, used = remove_object(work, original, t.box, matter, prior)
                report[i].update(removed_original=where is not None, inpainted=where, original_matte=used)
                if where is None:
                    log.warning(f"box {t.box.as_list()}: the original object's matte is empty; nothing inpainted")
                if debug:
                    dbg[f"box{i}_original_matte"] = (m * 255 + 0.5).astype(np.uint8)

    for k, i in enumerate(paint_order([t.box for t in targets])):
        t = targets[i]
        report[i]["order"] = k
        if fitted[i] is None:
            report[i].update(placement=None, coverage=0.0)
            continue
        obj, a, placement = fitted[i]
        if harmonize_strength > 0:
            obj = harmonize(obj, a, work, t.box, harmonize_strength)
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
