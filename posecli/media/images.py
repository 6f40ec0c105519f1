"""Image files <-> numpy pixels (uint8 or uint16, RGB / RGBA).

Pillow opens every file lazily first: it names the format, gives the size
before anything is decoded (so huge images are refused cheaply) and the EXIF
orientation. 8-bit images are decoded by Pillow (which raises on truncated
data, where libjpeg through cv2 silently fills in grey); 16-bit PNG/TIFF by
cv2, because Pillow reduces 16-bit colour to 8 bits. The orientation is applied
by hand since cv2's IMREAD_UNCHANGED ignores it.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from ..fileio import atomic_path
from ..inputs import IMAGE_EXTS as READ_EXTS  # one list of image types for the whole CLI

# Pillow itself refuses above ~179 MP; stay under it so our message is the one seen.
DEFAULT_MAX_PIXELS = 150_000_000
# A second guard for cv2 (its own default is 2**30); read when cv2 first decodes.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))

_FORMATS = {"PNG", "JPEG", "MPO", "WEBP", "BMP", "DIB", "TIFF", "GIF"}  # Pillow's names; MPO = multi-picture JPEG
_TYPES = "png, jpg, webp, bmp, tif or gif"
_noticed: set[str] = set()  # animated files already announced (one notice per file per run)
_WRITE_EXT = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg", ".webp": ".webp", ".bmp": ".bmp", ".tif": ".tiff", ".tiff": ".tiff"}
WRITE_EXTS = tuple(_WRITE_EXT)
STDIN_NAME = "<stdin>"


def read_image(
    path: str | Path,
    *,
    alpha: bool = False,
    keep_depth: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read an image as RGB pixels, upright (EXIF orientation applied).

    Default: uint8 HxWx3, grey expanded, 16-bit scaled down, alpha composited
    over white. ``alpha=True``: HxWx4 RGBA (opaque alpha added when there is
    none). ``keep_depth=True``: 16-bit images stay uint16. ``"-"`` reads stdin.
    """
    if str(path) == "-":
        return decode_image_bytes(sys.stdin.buffer.read(), STDIN_NAME, alpha=alpha, keep_depth=keep_depth, max_pixels=max_pixels)
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", p)
    if p.is_dir():
        raise InputError("is a folder, not an image", p)
    if p.suffix.lower() not in READ_EXTS:
        raise InputError(f"unsupported image type '{p.suffix or '(no extension)'}' (use {_TYPES})", p)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", p) from None
    return decode_image_bytes(data, str(p), alpha=alpha, keep_depth=keep_depth, max_pixels=max_pixels)


def decode_image_bytes(
    data: bytes,
    name: str,
    *,
    alpha: bool = False,
    keep_depth: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an encoded image (file contents or stdin); ``name`` is for messages."""
    from PIL import Image

    if not data:
        raise InputError("empty file (0 bytes)", name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise InputError(f"image too large (over Pillow's limit of {2 * Image.MAX_IMAGE_PIXELS} pixels)", name) from None
    except Exception:  # UnidentifiedImageError and friends: not an image at all
        raise InputError("not an image (cannot decode)", name) from None
    if im.format not in _FORMATS:
        raise InputError(f"unsupported image format {im.format} (use {_TYPES})", name)
    first_frame_notice(im, name)
    w, h = im.size
    if w * h > max_pixels:
        raise InputError(f"image too large ({w}x{h} = {w * h} pixels, limit {max_pixels})", name)
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block should not make the picture unreadable
        orientation = 1
    try:
        if _is_16bit(im, data):
            pixels = _decode_cv2(im, data)
        else:
            pixels = _decode_pillow(im)
    except InputError:
        raise
    except Exception as exc:  # truncated / corrupt data: Pillow raises OSError, SyntaxError, ...
        raise InputError(f"corrupt or truncated image ({_one_line(exc)})", name) from None
    if pixels is None:
        raise InputError("corrupt or truncated image", name)
    return _finish(_orient(pixels, orientation), alpha=alpha, keep_depth=keep_depth)


def first_frame_notice(im, name: str) -> None:
    """The rule for every image input: an animated file (GIF, APNG, animated WebP, multi-page
    TIFF) is read as its first frame, with one notice per file."""
    n = getattr(im, "n_frames", 1) if im.format != "MPO" else 1  # MPO: a photo plus its preview/depth pictures
    if n > 1 and name not in _noticed:
        import logging

        _noticed.add(name)
        logging.getLogger("posecli").warning(f"{name}: an animated image ({n} frames) where one image is "
                                             f"expected; using its first frame")


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_16bit(im, data: bytes) -> bool:
    if im.format == "PNG":
        return len(data) > 24 and data[24] == 16  # IHDR bit depth
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 16 in bits
    return False


def _decode_cv2(im, data: bytes) -> np.ndarray | None:
    """16-bit PNG/TIFF -> HxW, HxWx3 or HxWx4 in RGB(A) order, uint16."""
    import cv2
    from PIL import Image

    if im.format == "PNG":  # chunk CRCs and truncation, checked before libpng prints to stderr
        Image.open(io.BytesIO(data)).verify()  # verify() needs a freshly opened image
    log = cv2.utils.logging
    old = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        log.setLogLevel(old)
    if arr is None:
        return None
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def _decode_pillow(im) -> np.ndarray:
    """8-bit (and 16-bit grey) images via Pillow -> HxW, HxWx3 or HxWx4, RGB(A)."""
    im.load()
    mode = im.mode
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16)  # I;16B is big-endian: astype makes it native
    if mode == "I":
        return np.clip(np.asarray(im, dtype=np.int64), 0, 65535).astype(np.uint16)
    if mode == "F":
        return (np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0) * 65535.0).round().astype(np.uint16)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if mode in ("L", "1") and not has_alpha:
        return np.asarray(im.convert("L"), dtype=np.uint8)
    return np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)


# EXIF orientation tag -> the numpy ops that make the picture upright
# (the same transforms as PIL.ImageOps.exif_transpose).
def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x[::-1, ::-1].swapaxes(0, 1),
        8: lambda x: np.rot90(x, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(a)) if op else a


def _finish(a: np.ndarray, *, alpha: bool, keep_depth: bool) -> np.ndarray:
    """Any decoded layout -> RGB or RGBA with the requested depth."""
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 2:  # grey + alpha
        a = np.concatenate([a[:, :, :1]] * 3 + [a[:, :, 1:]], axis=2)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype == np.uint16 and not keep_depth:
        a = ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    top = np.iinfo(a.dtype).max
    if alpha:
        if a.shape[2] == 3:
            a = np.concatenate([a, np.full(a.shape[:2] + (1,), top, a.dtype)], axis=2)
        return a
    if a.shape[2] == 4:
        w = a[:, :, 3:].astype(np.float32) / top
        rgb = a[:, :, :3].astype(np.float32) * w + top * (1.0 - w)  # over white
        a = np.clip(rgb.round(), 0, top).astype(a.dtype)
    return a


def write_image(path: str | Path, pixels: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write uint8/uint16 pixels (HxW, HxWx1, HxWx3 RGB, HxWx4 RGBA).

    Format from the extension: png, jpg/jpeg (quality 95), webp (quality 95),
    bmp, tif/tiff. 16 bits are kept by png and tiff and reduced to 8 for the
    others; jpg has no alpha, so RGBA is composited over white. ``"-"`` writes
    PNG to stdout. Written atomically; returns the path.
    """
    to_stdout = str(path) == "-"
    ext = ".png" if to_stdout else Path(path).suffix.lower()
    if ext not in _WRITE_EXT:
        raise UsageError(f"cannot write images as '{ext or '(no extension)'}' (use png, jpg, webp, bmp or tif)", path)
    data = encode_image(pixels, ext)
    if to_stdout:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return Path("-")
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def encode_image(pixels: np.ndarray, ext: str) -> bytes:
    """Encode pixels to the bytes of an image file of type ``ext`` ('.png', ...)."""
    import cv2

    a = np.asarray(pixels)
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected uint8 or uint16 pixels, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise ValueError(f"expected HxW, HxWx1, HxWx3 or HxWx4 pixels, got shape {a.shape}")
    ext = _WRITE_EXT[ext.lower()]
    if a.dtype == np.uint16 and ext not in (".png", ".tiff"):
        a = ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if ext == ".jpg" and a.ndim == 3 and a.shape[2] == 4:
        a = _finish(a, alpha=False, keep_depth=True)
    if a.ndim == 3:
        a = a[:, :, [2, 1, 0, 3]] if a.shape[2] == 4 else a[:, :, ::-1]  # cv2 wants BGR(A)
    params = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95]}.get(ext, [])
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(a), params)
    if not ok:
        raise ValueError(f"cv2 could not encode {a.dtype} {a.shape} as {ext}")
    return buf.tobytes()

