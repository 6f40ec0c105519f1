"""Mattes: which pixels of a crop belong to the object (float32 HxW in [0, 1]).

Four kinds, for the generated squares:
- ``model``: the generator renders on a plain background: its colour is the
  median of the border, the object is what differs from it (holes filled),
  and on the edge the coverage is solved from C = a F + (1 - a) B. A
  generator that returns an alpha channel is used as is.
- ``grabcut``: OpenCV GrabCut seeded with the crop inset by 3 %.
- ``rembg``: U^2-Net through rembg (u2net.onnx; rembg downloads it on first
  use, unless POSECLI_OFFLINE is set).
- ``auto``: rembg when its model file is already on disk (and loads), else
  ``model`` refined by GrabCut; the choice is stated in a one-line notice.

For the original object in a scene crop (--remove-original) every kind but
rembg uses GrabCut seeded by the new object's silhouette (see Matter.__call__).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from ..errors import MissingWeightsError, UsageError
from ..runtime import OFFLINE_ENV, offline

log = logging.getLogger("posecli")

MATTES = ("auto", "rembg", "grabcut", "model")
REMBG_MODEL = "u2net"
REMBG_FILE = f"{REMBG_MODEL}.onnx"


# ---------------------------------------------------------------- model matte

def border_colour(rgb: np.ndarray, width: int | None = None) -> np.ndarray:
    """Median colour of the crop's outer ``width`` pixels: the plain background of a render."""
    h, w = rgb.shape[:2]
    k = width or max(1, min(h, w) // 32)
    ring = np.concatenate([rgb[:k].reshape(-1, 3), rgb[-k:].reshape(-1, 3),
                           rgb[:, :k].reshape(-1, 3), rgb[:, -k:].reshape(-1, 3)])
    return np.median(ring.astype(np.float32), axis=0)


def fill_holes(fg: np.ndarray) -> np.ndarray:
    """Background regions not connected to the border are holes (windows, grey paint): make them object."""
    import cv2

    bg = (~fg).astype(np.uint8)
    n, labels = cv2.connectedComponents(bg, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, edge[edge > 0]) & (bg > 0)
    return ~outside


def drop_specks(fg: np.ndarray, keep: float = 0.02) -> np.ndarray:
    """Remove object components smaller than ``keep`` of the largest (noise in the background)."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 2:
        return fg
    areas = stats[1:, cv2.CC_STAT_AREA]
    good = np.flatnonzero(areas >= keep * areas.max()) + 1
    return np.isin(labels, good)


def smooth(alpha: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    if sigma <= 0:
        return alpha.astype(np.float32)
    return np.clip(cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), sigma), 0, 1)


def background_matte(rgb: np.ndarray) -> np.ndarray:
    """Matte of an object on a plain background (a render): 1 inside, true coverage on its edge.

    The background colour B is the border's median; the object is what differs
    from it (holes such as windows filled, specks dropped). On the edge a
    render is a * F + (1 - a) * B, so with F taken from the nearest solid
    object pixel the coverage a is the projection of (C - B) on (F - B).
    """
    import cv2

    c = rgb[:, :, :3].astype(np.float32)
    bg = border_colour(rgb)
    diff = c - bg
    dist = np.linalg.norm(diff, axis=2)
    h, w = dist.shape
    k = max(1, min(h, w) // 32)
    border = np.concatenate([dist[:k].ravel(), dist[-k:].ravel(), dist[:, :k].ravel(), dist[:, -k:].ravel()])
    lo = max(12.0, 3.0 * float(np.median(border)) + 4.0)  # above the background's own noise
    rough = np.clip((dist - lo) / 24.0, 0, 1)
    fg = drop_specks(fill_holes(rough > 0.5))
    if not fg.any():
        return np.zeros((h, w), np.float32)
    kernel = np.ones((3, 3), np.uint8)
    band = max(1, min(h, w) // 48)
    outer = cv2.dilate(fg.astype(np.uint8), kernel, iterations=band + 1) > 0
    inner = cv2.erode(fg.astype(np.uint8), kernel, iterations=band) > 0
    alpha = inner.astype(np.float32)
    edge = outer & ~inner
    solid = inner & (rough >= 1)
    if solid.any():
        _, labels = cv2.distanceTransformWithLabels((~solid).astype(np.uint8), cv2.DIST_L2, 5,
                                                    labelType=cv2.DIST_LABEL_PIXEL)
        f = c[solid][labels[edge] - 1] - bg  # labels number the solid pixels in raster order
        ff = (f * f).sum(1)
        cover = np.clip((diff[edge] * f).sum(1) / np.maximum(ff, 1e-6), 0, 1)
        alpha[edge] = np.where(ff > (2 * lo) ** 2, cover, rough[edge])  # F too close to B: keep the ramp
    else:
        alpha[edge] = rough[edge]
    return smooth(alpha, 0.3)


def unmix(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Edge colours without the render's plain background: F = (C - (1 - a) B) / a.

    Without it the soft edge keeps the render's grey as a light halo. Only when
    the border is plain (B is then known); otherwise ``rgb`` is returned as is.
    """
    bg = border_colour(rgb)
    h, w = alpha.shape
    k = max(1, min(h, w) // 32)
    ring = np.concatenate([rgb[:k].reshape(-1, 3), rgb[-k:].reshape(-1, 3),
                           rgb[:, :k].reshape(-1, 3), rgb[:, -k:].reshape(-1, 3)]).astype(np.float32)
    if np.percentile(np.linalg.norm(ring - bg, axis=1), 90) > 20:
        return rgb
    a = alpha[:, :, None].astype(np.float32)
    f = (rgb[:, :, :3].astype(np.float32) - (1 - a) * bg) / np.maximum(a, 0.05)
    edge = (alpha > 0.05) & (alpha < 0.98)
    out = rgb[:, :, :3].copy()
    out[edge] = np.clip(f[edge] + 0.5, 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------- GrabCut

def _rect_mask(shape, rect, scale: float = 1.0) -> np.ndarray:
    x, y, w, h = (round(v * scale) for v in rect)
    m = np.zeros(shape, bool)
    m[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = True
    return m


def grabcut_matte(rgb: np.ndarray, rect: tuple[int, int, int, int] | None = None, init: np.ndarray | None = None,
                  prior: np.ndarray | None = None, iters: int = 4, max_side: int = 256) -> np.ndarray:
    """GrabCut seeded by one of: a rough matte of this very object (``init``: its core is sure object),
    a silhouette expected near the object (``prior``: probable object, far from it background; outside
    ``rect`` too), or a rectangle (``rect`` x, y, w, h; default: the crop inset by 3 %).

    Runs on a copy at most ``max_side`` px (GrabCut is slow on large crops);
    returns to the full size with a soft edge. Falls back to the seed when
    GrabCut cannot model one side (e.g. no background pixel at all).
    """
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    sw, sh = max(2, round(w * s)), max(2, round(h * s))
    small = np.ascontiguousarray(cv2.resize(rgb[:, :, :3], (sw, sh), interpolation=cv2.INTER_AREA))
    kernel = np.ones((3, 3), np.uint8)
    r = None
    if init is not None or prior is not None:
        a = cv2.resize((init if init is not None else prior).astype(np.float32), (sw, sh),
                       interpolation=cv2.INTER_AREA)
        mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
        mask[a > 0.5] = cv2.GC_PR_FGD
        if init is not None:
            sure = cv2.erode((a > 0.95).astype(np.uint8), kernel, iterations=max(1, sw // 32))
            mask[sure > 0] = cv2.GC_FGD
            reach = max(1, sw // 16)
        else:  # another object's silhouette in the same pose: the real one may be larger
            reach = max(2, round(0.25 * max(sw, sh)))
        near = cv2.dilate((a > 0.05).astype(np.uint8), kernel, iterations=reach) > 0
        if rect is not None:
            near &= _rect_mask((sh, sw), rect, s)
        mask[~near] = cv2.GC_BGD
        seed = a > 0.5
        mode = cv2.GC_INIT_WITH_MASK
    else:
        if rect is None:
            m = max(1, round(0.03 * min(w, h)))
            rect = (m, m, w - 2 * m, h - 2 * m)
        x, y, rw, rh = (round(v * s) for v in rect)
        x, y = min(max(x, 0), sw - 1), min(max(y, 0), sh - 1)
        rw, rh = max(1, min(rw, sw - x)), max(1, min(rh, sh - y))
        mask = np.zeros((sh, sw), np.uint8)
        seed = np.zeros((sh, sw), bool)
        seed[y : y + rh, x : x + rw] = True
        mode, r = cv2.GC_INIT_WITH_RECT, (x, y, rw, rh)
    cv2.setRNGSeed(0)  # GrabCut's GMMs start from k-means on OpenCV's global RNG: same input, same matte
    try:
        cv2.grabCut(small, mask, r, np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64), iters, mode)
        fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    except cv2.error:  # one side empty: GrabCut has nothing to learn from
        fg = seed
    if not fg.any():
        fg = seed
    alpha = cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return smooth(alpha, 0.5 + min(h, w) / 256)


def grabcut_seeded(rgb: np.ndarray, sure_fg: np.ndarray, probable_fg: np.ndarray, sure_bg: np.ndarray,
                   iters: int = 4, max_side: int = 256) -> np.ndarray:
    """GrabCut from explicit seeds (bool masks of ``rgb``'s size): sure object, probable object, sure background.

    The rest is probable background. Runs at most ``max_side`` px; returns a
    soft matte at full size. Falls back to the probable object when GrabCut
    cannot model one side.
    """
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    sw, sh = max(2, round(w * s)), max(2, round(h * s))
    small = np.ascontiguousarray(cv2.resize(rgb[:, :, :3], (sw, sh), interpolation=cv2.INTER_AREA))
    down = lambda m: cv2.resize(m.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0  # noqa: E731
    mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    mask[down(probable_fg)] = cv2.GC_PR_FGD
    mask[down(sure_bg)] = cv2.GC_BGD
    mask[down(sure_fg) & ~down(sure_bg)] = cv2.GC_FGD
    fg = probable_fg
    cv2.setRNGSeed(0)  # GrabCut's GMMs start from k-means on OpenCV's global RNG: same input, same matte
    try:
        cv2.grabCut(small, mask, None, np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64), iters,
                    cv2.GC_INIT_WITH_MASK)
        got = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if got.any():
            fg = cv2.resize(got.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    except cv2.error:  # one side empty: GrabCut has nothing to learn from
        pass
    alpha = fg.astype(np.float32)
    return smooth(alpha, 0.5 + min(h, w) / 256)


# ---------------------------------------------------------------- rembg

def rembg_paths() -> tuple[Path | None, Path, str]:
    """(existing u2net.onnx or None, where rembg downloads it, why rembg is unusable or "").

    The same rules as rembg 2.0's BaseSession (rembg_home, legacy_home,
    model_dir, resolve_existing), spelled out because importing rembg costs
    ~2 s (pymatting, numba) and ``auto`` only needs to know whether the file is
    there: U2NET_HOME (else REMBG_HOME, $XDG_DATA_HOME/rembg or ~/.rembg) /
    models/u2net/u2net.onnx, then the legacy flat U2NET_HOME (else
    $XDG_DATA_HOME/.u2net or ~/.u2net) /u2net.onnx.
    """
    env = os.environ.get
    legacy = Path(os.path.expanduser(env("U2NET_HOME") or os.path.join(env("XDG_DATA_HOME", "~"), ".u2net")))
    if env("U2NET_HOME"):
        home = legacy
    else:
        xdg = env("XDG_DATA_HOME")
        home = Path(os.path.expanduser(env("REMBG_HOME") or (os.path.join(xdg, "rembg") if xdg else "~/.rembg")))
    target = home / "models" / REMBG_MODEL / REMBG_FILE
    found = next((p for p in (target, legacy / REMBG_FILE) if p.is_file()), None)
    if importlib.util.find_spec("rembg") is None:
        return found, target, "rembg is not installed (pip install 'rembg[cpu]')"
    if importlib.util.find_spec("onnxruntime") is None:  # `import rembg` would sys.exit(1)
        return found, target, "onnxruntime is not installed (pip install 'rembg[cpu]')"
    return found, target, ""


def _place_hint(target: Path) -> str:
    return (f"place {REMBG_FILE} at {target} (the folder follows $U2NET_HOME/models/{REMBG_MODEL}; "
            f"a legacy ~/.u2net/{REMBG_FILE} is read too)")


def rembg_session():
    """A rembg U^2-Net session (downloads the model unless POSECLI_OFFLINE); MissingWeightsError when impossible."""
    found, target, why = rembg_paths()
    if why:
        raise MissingWeightsError(f"--matte rembg: {why}; or use --matte auto, grabcut or model")
    if found is None and offline():
        raise MissingWeightsError(f"--matte rembg: {REMBG_FILE} is not on disk and downloads are off "
                                  f"({OFFLINE_ENV} is set); {_place_hint(target)}")
    try:
        import rembg
    except (ImportError, SystemExit) as e:  # SystemExit: rembg's own exit when onnxruntime fails to load
        raise MissingWeightsError(f"--matte rembg: rembg cannot be imported ({type(e).__name__}: {e}); "
                                  f"or use --matte auto, grabcut or model") from None

    from ..downloads import forget_failure, recent_failure, record_failure

    key = f"rembg:{REMBG_FILE}"  # rembg (pooch) chooses the address; the file names the download
    why = None if found is not None else recent_failure(key)
    if why:  # no new attempt (and no wait for a timeout) within a day of a failed one
        raise MissingWeightsError(f"--matte rembg: {REMBG_FILE} is not on disk: {why}; {_place_hint(target)}")
    try:
        session = rembg.new_session(REMBG_MODEL)
    except Exception as e:  # requests' ConnectionError, pooch's checksum ValueError, onnxruntime's load errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if found is None:
            record_failure(key, type(e).__name__)
        raise MissingWeightsError(f"--matte rembg: rembg could not load or download {REMBG_FILE} ({first}); "
                                  f"{_place_hint(target)}") from None
    if found is None:
        forget_failure(key)
    return session


# ---------------------------------------------------------------- the matter

class Matter:
    """One matting method, resolved once (``auto`` decided, rembg session loaded and reused)."""

    def __init__(self, kind: str = "auto"):
        if kind not in MATTES:
            raise UsageError(f"--matte {kind}: expected one of {', '.join(MATTES)}")
        self.kind = kind
        self.session = None
        self.last = ""
        self.notice = ""  # said once, on first use (errors found before any work stay one line)
        self.notice_full = ""  # the notice with where to put the file (-v)
        if kind == "auto":
            found, target, why = rembg_paths()
            reason = why or f"{REMBG_FILE} not found; to use rembg, {_place_hint(target)}"
            if found is not None and not why:
                try:
                    self.session = rembg_session()
                except MissingWeightsError as e:  # a broken or foreign file: say so, carry on without it
                    reason = str(e).replace("--matte rembg: ", "")
            if self.session is None:  # a short line; where to put the file with -v
                self.notice = f"--matte auto: using the model matte (plain background) refined by GrabCut; " \
                              f"{reason.split(';')[0]}"
                self.notice_full = f"--matte auto: using the model matte (plain background) refined by GrabCut; " \
                                   f"{reason}"
            kind = "rembg" if self.session is not None else "model+grabcut"
        elif kind == "rembg":
            self.session = rembg_session()
        self.used = kind

    def __call__(self, rgb: np.ndarray, rect: tuple[int, int, int, int] | None = None,
                 alpha: np.ndarray | None = None, prior: np.ndarray | None = None) -> np.ndarray:
        """float32 HxW matte of uint8 ``rgb``; ``self.last`` names the method that made it.

        A scene crop (for --remove-original) comes with ``rect`` (x, y, w, h),
        the object's box, and ``prior``, the new object's silhouette placed in
        the same pose: a busy scene has no plain border, so every kind but
        rembg runs GrabCut seeded by the prior (or by the rectangle), and
        rembg's matte is kept to the prior's neighbourhood. ``alpha``: the
        generator's own alpha channel, used by the model and auto mattes.
        """
        if self.notice:
            from ..downloads import fallback_notice

            fallback_notice(self.notice, self.notice_full)
            self.notice = ""
        rgb = np.ascontiguousarray(rgb[:, :, :3])
        self.last = self.used
        near = None
        if rect is not None:
            near = _rect_mask(rgb.shape[:2], rect)
            if prior is not None:
                import cv2

                reach = max(2, round(0.25 * max(rect[2], rect[3])))
                near &= cv2.dilate((prior > 0.05).astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)) > 0
        if self.used == "rembg":
            import rembg

            m = np.asarray(rembg.remove(rgb, session=self.session, only_mask=True), np.float32) / 255.0
            m = m[:, :, 0] if m.ndim == 3 else m
            return m if near is None else m * near
        if rect is not None:
            self.last = "grabcut (seeded by the new object)" if prior is not None else "grabcut"
            return grabcut_matte(rgb, rect, prior=prior)
        if self.used == "grabcut":
            return grabcut_matte(rgb)
        if alpha is not None:
            self.last = "model (alpha channel)"
            return np.clip(alpha.astype(np.float32), 0, 1)
        rough = background_matte(rgb)
        if self.used == "model":
            return rough
        if rough.max() < 0.5:  # nothing stands out from the border colour: GrabCut on its own
            self.last = "grabcut (model matte empty)"
            return grabcut_matte(rgb)
        return grabcut_matte(rgb, init=rough)
