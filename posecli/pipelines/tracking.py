"""Face tracking over a video: detect on every frame, fill gaps, smooth over time.

OpenCV's Haar detector runs on a small copy of each frame (long side
``DETECT_SIZE``) in a background thread that reads the video on its own,
ahead of the frames being animated. A frame without a detection takes the box
of the nearest frame that has one; the track is then median-filtered (drops
one-frame false detections) and Gaussian-smoothed over time (zero-phase: no
lag). ``box(t)`` blocks until the detector has read far enough ahead to know
frame t's final box, so frames are never buffered: only three floats per
frame are kept.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from typing import Callable, ContextManager, Iterator

import numpy as np

from ..errors import InputError, PoseCliError
from ..regions import Box, detect_faces

DETECT_SIZE = 320  # px, long side of the copy the detector sees
MIN_FACE = 32  # px at DETECT_SIZE: faces under 10% of the long side are not looked for (faster)
MEDIAN_RADIUS = 2  # frames
DEFAULT_SIGMA = 0.1  # seconds of Gaussian smoothing
DEFAULT_MARGIN = 0.6  # grow the detected square to take in hair and chin (as regions.face_box)

FrameOpener = Callable[[tuple[int, int]], ContextManager[Iterator[np.ndarray]]]


def detect_size(width: int, height: int) -> tuple[int, int]:
    """The size frames are scaled to for detection (never enlarged)."""
    s = min(1.0, DETECT_SIZE / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def raw_face(small: np.ndarray, scale: float) -> tuple[float, float, float] | None:
    """(cx, cy, side) of the largest face in ``small``, in source pixels (x ``scale``)."""
    faces = detect_faces(small, min_size=min(MIN_FACE, max(8, min(small.shape[:2]) // 3)))
    if not faces:
        return None
    b = faces[0]
    return ((b.x + b.w / 2) * scale, (b.y + b.h / 2) * scale, max(b.w, b.h) * scale)


def fill_nearest(raw: np.ndarray) -> np.ndarray:
    """(n, 3) with NaN rows for missing detections -> every row from the nearest detection."""
    have = np.flatnonzero(~np.isnan(raw[:, 0]))
    if len(have) == 0:
        raise ValueError("no detections to fill from")
    idx = np.arange(len(raw))
    pos = np.clip(np.searchsorted(have, idx), 1, max(len(have) - 1, 1))
    if len(have) == 1:
        return np.repeat(raw[have], len(raw), axis=0)
    prev, nxt = have[pos - 1], have[pos]
    nearest = np.where(np.abs(idx - prev) <= np.abs(nxt - idx), prev, nxt)
    return raw[nearest]


def smooth_track(filled: np.ndarray, sigma_frames: float, median_radius: int = MEDIAN_RADIUS) -> np.ndarray:
    """Median then Gaussian filter along time of (n, 3) rows; windows are cut at the ends."""
    n = len(filled)
    if median_radius > 0:
        med = np.empty_like(filled)
        for i in range(n):
            med[i] = np.median(filled[max(0, i - median_radius): i + median_radius + 1], axis=0)
        filled = med
    if sigma_frames <= 0:
        return filled.copy()
    r = max(1, math.ceil(3 * sigma_frames))
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_frames) ** 2)
    out = np.empty_like(filled)
    for i in range(n):
        lo, hi = max(0, i - r), min(n, i + r + 1)
        ww = w[lo - i + r: hi - i + r]
        out[i] = (filled[lo:hi] * ww[:, None]).sum(0) / ww.sum()
    return out


def to_box(cx: float, cy: float, side: float, margin: float) -> Box:
    s = max(1, int(round(side * (1 + margin))))
    return Box(int(round(cx - s / 2)), int(round(cy - s / 2)), s, s)


class FaceTracker:
    """Square face boxes for every frame, detected ahead in a thread; ``box(t)`` in frame order."""

    def __init__(self, open_frames: FrameOpener, size: tuple[int, int], fps: float, name: str = "video",
                 margin: float = DEFAULT_MARGIN, sigma: float = DEFAULT_SIGMA):
        self.size, self.name, self.margin = size, name, margin
        self.sigma_frames = sigma * fps
        self.radius = max(1, math.ceil(3 * self.sigma_frames)) + MEDIAN_RADIUS
        self._open = open_frames
        self._raw = [array("d"), array("d"), array("d")]  # cx, cy, side; NaN = no face
        self._dets: list[int] = []  # frames with a detection
        self._done = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self.busy_s = 0.0  # time spent decoding + detecting (a stage timing)
        self._thread = threading.Thread(target=self._run, name="face-detect", daemon=True)

    def start(self) -> "FaceTracker":
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop detecting; a box() waiting for the detector raises."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    @property
    def frames_seen(self) -> int:
        return len(self._raw[0])

    def _run(self) -> None:
        import time

        dsize = detect_size(*self.size)
        scale = self.size[0] / dsize[0]
        try:
            with self._open(dsize) as frames:
                t0 = time.perf_counter()
                for small in frames:
                    face = raw_face(small, scale)
                    with self._cond:
                        for arr, v in zip(self._raw, face or (math.nan,) * 3):
                            arr.append(v)
                        if face is not None:
                            self._dets.append(len(self._raw[0]) - 1)
                        self._cond.notify_all()
                    self.busy_s += time.perf_counter() - t0
                    if self._stop.is_set():
                        return
                    t0 = time.perf_counter()
        except BaseException as e:  # handed to the consumer in box()
            self._error = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _nearest(self, j: int) -> int | None:
        """Index of the detection nearest frame j, or None while not yet decidable."""
        k = bisect.bisect_left(self._dets, j)
        nxt = self._dets[k] if k < len(self._dets) else None
        prev = self._dets[k - 1] if k > 0 else None
        if nxt == j:
            return j
        if nxt is not None:
            return prev if prev is not None and j - prev <= nxt - j else nxt
        if prev is not None and (self._done or self.frames_seen - j > j - prev):
            return prev  # any later detection would be farther away
        return None

    def _window(self, t: int) -> tuple[int, np.ndarray] | None:
        """(first frame, filled rows) around t once all of them are final, else None."""
        n = self.frames_seen
        if t >= n:
            return None
        hi = min(n, t + self.radius + 1)
        if hi < t + self.radius + 1 and not self._done:
            return None
        lo = max(0, t - self.radius)
        idx = [self._nearest(j) for j in range(lo, hi)]
        if any(i is None for i in idx):
            return None
        return lo, np.array([[a[i] for a in self._raw] for i in idx])

    def box(self, t: int) -> Box:
        """Frame t's smoothed face box (blocks until the detector is far enough ahead)."""
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._stop.is_set():
                    raise PoseCliError("face tracking was stopped", self.name)
                if self._done and not self._dets:
                    raise InputError(f"no face found in any of its {self.frames_seen} frames (OpenCV's Haar "
                                     "detector); give the region with --box x,y,w,h or use --region full", self.name)
                win = self._window(t)
                if win is not None:
                    break
                if self._done:
                    raise InputError(f"frame {t} is past the {self.frames_seen} frames the face detector read", self.name)
                self._cond.wait(timeout=0.5)
        lo, rows = win
        cx, cy, side = smooth_track(rows, self.sigma_frames)[t - lo]
        return to_box(cx, cy, side, self.margin)
