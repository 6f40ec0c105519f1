"""Regions of images: boxes, crops for the model, face detection, feathered paste.

Shared by training data preparation (--crop), swap, animate and composite.
Pixels are uint8 HWC RGB throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import InputError, UsageError

CROP_MODES = ("center", "face", "none")


# The largest coordinate or size a box may have, in pixels: far past any image posecli
# reads (150 MP); anything beyond is refused when the box is parsed, before any work.
MAX_BOX = 1_000_000

BOX_RULE = ("a box may reach past the image's edges: it is clipped to the image, with a notice; "
            "a box with no pixel inside the image is refused")


def box_values(values) -> tuple[int, int, int, int]:
    """Four numbers from the user (strings or numbers) -> (x, y, w, h) rounded to pixels.

    The one check every box entry point shares (``--box``, ``--at``, ``--boxes``
    JSON and CSV, ``animate --box``): four finite numbers, |x|, |y|, w and h at most
    MAX_BOX, w and h positive. Raises ValueError with the reason (callers add where).
    """
    values = list(values)
    if len(values) != 4:
        raise ValueError(f"expected x,y,w,h (four numbers), got {len(values)}")
    out = []
    for v in values:
        if isinstance(v, bool):
            raise ValueError("x, y, w, h must be numbers")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError("x, y, w, h must be numbers") from None
        if f != f or f in (float("inf"), float("-inf")):
            raise ValueError(f"{v} is not a finite number")
        if abs(f) > MAX_BOX:
            raise ValueError(f"{v} is beyond the {MAX_BOX}-pixel limit of a box")
        out.append(int(round(f)))
    x, y, w, h = out
    if w <= 0 or h <= 0:
        raise ValueError("width and height must be positive")
    return x, y, w, h


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @classmethod
    def parse(cls, text: str, what: str = "box") -> "Box":
        """'x,y,w,h' in pixels (see box_values for what is refused)."""
        try:
            return cls(*box_values(str(text).replace(" ", "").split(",")))
        except ValueError as e:
            raise UsageError(f"{what} {text!r}: {e}") from None

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def clip_to(self, width: int, height: int, what: str = "box") -> "Box":
        """The rule for every box a user gives: the part inside the ``width`` x ``height``
        image, with a notice when that is less than the box; a box with no pixel inside
        is a UsageError."""
        x0, y0 = max(self.x, 0), max(self.y, 0)
        x1, y1 = min(self.x + self.w, width), min(self.y + self.h, height)
        if x1 <= x0 or y1 <= y0:
            raise UsageError(f"{what} {self.as_list()} lies outside the {width}x{height} image")
        clipped = Box(x0, y0, x1 - x0, y1 - y0)
        if clipped != self:
            import logging

            logging.getLogger("posecli").warning(
                f"{what} {self.as_list()} reaches past the {width}x{height} image; clipped to {clipped.as_list()}")
        return clipped

    def square(self, margin: float = 0.0) -> "Box":
        """The square of side max(w, h) * (1 + margin) centred on the box."""
        side = int(round(max(self.w, self.h) * (1 + margin)))
        cx, cy = self.x + self.w / 2, self.y + self.h / 2
        return Box(int(round(cx - side / 2)), int(round(cy - side / 2)), side, side)


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    """The box's pixels; parts outside the image repeat the edge pixels."""
    h, w = pixels.shape[:2]
    x0, y0, x1, y1 = box.x, box.y, box.x + box.w, box.y + box.h
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return pixels[y0:y1, x0:x1]
    ys = np.clip(np.arange(y0, y1), 0, h - 1)
    xs = np.clip(np.arange(x0, x1), 0, w - 1)
    return pixels[ys][:, xs]


def crop_resize(pixels: np.ndarray, box: Box, size: int) -> np.ndarray:
    from .media.convert import resize_pixels

    return resize_pixels(crop(pixels, box), size)


@lru_cache(maxsize=1)
def _face_cascade():
    import cv2

    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise InputError("OpenCV's face detector could not be loaded (opencv-python>=4.8,<5 ships it)", path)
    return cascade


def detect_faces(pixels: np.ndarray, min_size: int = 24) -> list[Box]:
    """Haar-cascade faces, largest first."""
    import cv2

    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    found = _face_cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(min_size, min_size))
    boxes = [Box(int(x), int(y), int(w), int(h)) for x, y, w, h in found]
    return sorted(boxes, key=lambda b: -b.w * b.h)


def face_box(pixels: np.ndarray, margin: float = 0.6) -> Box | None:
    """A square around the largest face, grown by ``margin`` to include hair and chin."""
    faces = detect_faces(pixels)
    return faces[0].square(margin) if faces else None


def center_box(width: int, height: int) -> Box:
    s = min(width, height)
    return Box((width - s) // 2, (height - s) // 2, s, s)


def crop_for_model(pixels: np.ndarray, size: int, mode: str = "center", name: str = "",
                   misses: list[str] | None = None) -> np.ndarray:
    """Crop and resize an image for a model of ``size`` px.

    center: the largest centred square; face: a square around the largest face
    (falls back to center with a warning when none is found, or, when a
    ``misses`` list is given, appends ``name`` to it so a batch can report once);
    none: the whole image resized (aspect not kept).
    """
    from .media.convert import resize_pixels

    if mode not in CROP_MODES:
        raise UsageError(f"--crop {mode}: expected one of {', '.join(CROP_MODES)}")
    h, w = pixels.shape[:2]
    if mode == "none":
        return resize_pixels(pixels, size)
    box = None
    if mode == "face":
        box = face_box(pixels)
        if box is None and misses is not None:
            misses.append(name)
        elif box is None:
            import logging

            logging.getLogger("posecli").warning(f"{name or 'image'}: no face found, using a centre crop")
    return crop_resize(pixels, box or center_box(w, h), size)


def feather_mask(h: int, w: int, feather: float = 0.15) -> np.ndarray:
    """float32 (h, w) mask: 1 inside, falling smoothly to 0 over ``feather`` of the size at the edges."""
    def ramp(n: int) -> np.ndarray:
        f = max(1.0, feather * n)
        i = np.arange(n, dtype=np.float32)
        r = np.minimum(i + 0.5, n - i - 0.5) / f
        r = np.clip(r, 0, 1)
        return r * r * (3 - 2 * r)  # smoothstep

    return np.outer(ramp(h), ramp(w)).astype(np.float32)


def paste(frame: np.ndarray, patch: np.ndarray, box: Box, mask: np.ndarray | None = None) -> np.ndarray:
    """Blend ``patch`` (resized to the box) into a copy of ``frame`` with ``mask`` (float, box-sized).

    Parts of the box outside the frame are clipped.
    """
    from .media.convert import resize_pixels

    out = frame.copy()
    patch = resize_pixels(patch, (box.w, box.h))
    if mask is None:
        mask = np.ones((box.h, box.w), np.float32)
    fh, fw = frame.shape[:2]
    x0, y0 = max(box.x, 0), max(box.y, 0)
    x1, y1 = min(box.x + box.w, fw), min(box.y + box.h, fh)
    if x0 >= x1 or y0 >= y1:
        return out
    px, py = x0 - box.x, y0 - box.y
    p = patch[py : py + y1 - y0, px : px + x1 - x0].astype(np.float32)
    m = mask[py : py + y1 - y0, px : px + x1 - x0, None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region * (1 - m) + p * m + 0.5, 0, 255).astype(np.uint8)
    return out
