"""Temporal filters for per-frame pose codes, and a jitter measure.

Pose codes of consecutive video frames flicker: the encoder sees compression
noise and a tracked box that moves by a pixel. A one-euro filter (Casiez et
al., CHI 2012) low-passes each code dimension with a cutoff that rises with
the (low-passed) speed: still poses are smoothed hard, fast motion follows
with little lag. An exponential moving average is the fixed-cutoff variant.

Strength ``S`` (``--smooth S``, seconds) sets the lowest cutoff to 1/S Hz, so
S = 0 passes codes through unchanged and larger S smooths more.
Codes are not normalised by the models, so speeds are measured relative to
the codes' typical magnitude (their running RMS): ``beta`` is scale-free.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError

FILTERS = ("euro", "ema")
DEFAULT_SMOOTH = 0.25  # seconds: lowest cutoff 4 Hz; the cutoff rises with speed, so mouth motion passes
DEFAULT_BETA = 1.0  # Hz of extra cutoff per (RMS/s) of speed
D_CUTOFF = 1.0  # Hz, the derivative's own low-pass (Casiez et al.'s default)


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """EMA weight of the new sample for a first-order low-pass at ``cutoff`` Hz."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class _RunningScale:
    """The codes' typical magnitude: root of the running mean (over frames and dims) of x^2.

    One number for all dims and independent of how much the codes move: a
    clip whose pose never changes still gets a scale from its codes, so the
    filter does not mistake encoder noise for motion there.
    """

    def __init__(self):
        self.n, self.mean_sq = 0, 0.0

    def update(self, x: np.ndarray) -> float:
        self.n += 1
        self.mean_sq += (float(np.mean(x * x)) - self.mean_sq) / self.n
        return math.sqrt(self.mean_sq) + 1e-8


class OneEuroFilter:
    """Causal one-euro filter over code vectors; call it with (B, D) batches in frame order."""

    def __init__(self, fps: float, min_cutoff: float, beta: float = DEFAULT_BETA, d_cutoff: float = D_CUTOFF):
        if fps <= 0 or min_cutoff <= 0 or beta < 0 or d_cutoff <= 0:
            raise ValueError("fps, min_cutoff and d_cutoff must be positive, beta >= 0")
        self.dt, self.min_cutoff, self.beta, self.d_cutoff = 1.0 / fps, min_cutoff, beta, d_cutoff
        self._x = self._dx = None
        self._scale = _RunningScale()
        self._a_d = _alpha(d_cutoff, self.dt)

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.float64)
        out = np.empty_like(codes)
        for i, x in enumerate(codes):
            scale = self._scale.update(x)
            if self._x is None:
                self._x, self._dx = x.copy(), np.zeros_like(x)
            else:
                dx = (x - self._x) / self.dt
                self._dx = self._dx + self._a_d * (dx - self._dx)
                cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / scale
                self._x = self._x + _alpha(cutoff, self.dt) * (x - self._x)
            out[i] = self._x
        return out


class EmaFilter:
    """Exponential moving average with a fixed cutoff (the one-euro filter with beta = 0)."""

    def __init__(self, fps: float, cutoff: float):
        if fps <= 0 or cutoff <= 0:
            raise ValueError("fps and cutoff must be positive")
        self.a = float(_alpha(cutoff, 1.0 / fps))
        self._x = None

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.float64)
        out = np.empty_like(codes)
        for i, x in enumerate(codes):
            self._x = x.copy() if self._x is None else self._x + self.a * (x - self._x)
            out[i] = self._x
        return out


def make_pose_filter(strength: float, fps: float, kind: str = "euro", beta: float = DEFAULT_BETA):
    """A stateful filter for ``strength`` seconds (None when strength is 0)."""
    if kind not in FILTERS:
        raise UsageError(f"--smooth-filter {kind}: expected one of {', '.join(FILTERS)}")
    if not math.isfinite(strength) or strength < 0:
        raise UsageError(f"--smooth {strength}: expected 0 (off) or a positive number of seconds")
    if strength == 0:
        return None
    cutoff = 1.0 / strength
    return OneEuroFilter(fps, cutoff, beta) if kind == "euro" else EmaFilter(fps, cutoff)


class JitterMeter:
    """How much the output moves between frames, relative to the driving video.

    ``value`` (jitter): mean frame-to-frame change of the output over that of
    the driving video, both at the same (model) resolution. 1.0: the output
    moves as much as the input. A model that follows the pose well scores
    near 1 however steady it is, so ``flicker`` separates the two: the same
    ratio for the temporal second difference |x[t] - 2 x[t-1] + x[t-2]|, which
    is small for smooth motion and large for frame-to-frame noise. Above 1:
    the output shakes more than the driving video.
    Streaming: only the last two frames of each are kept.
    """

    def __init__(self):
        self._out: list[np.ndarray] = []  # the last two frames, oldest first
        self._drv: list[np.ndarray] = []
        self.out_change = self.drv_change = 0.0
        self.out_accel = self.drv_accel = 0.0
        self.pairs = self.triples = 0

    def update(self, driving: np.ndarray, output: np.ndarray) -> None:
        """Batches (N, H, W, C) uint8 of driving crops and generated images, in frame order."""
        for d, o in zip(driving, output):
            d, o = d.astype(np.float32), o.astype(np.float32)
            if self._out:
                self.out_change += float(np.abs(o - self._out[-1]).mean())
                self.drv_change += float(np.abs(d - self._drv[-1]).mean())
                self.pairs += 1
            if len(self._out) == 2:
                self.out_accel += float(np.abs(o - 2 * self._out[1] + self._out[0]).mean())
                self.drv_accel += float(np.abs(d - 2 * self._drv[1] + self._drv[0]).mean())
                self.triples += 1
            self._out = [*self._out[-1:], o]
            self._drv = [*self._drv[-1:], d]

    @property
    def value(self) -> float | None:
        if self.pairs == 0 or self.drv_change == 0:
            return None
        return self.out_change / self.drv_change

    @property
    def flicker(self) -> float | None:
        if self.triples == 0 or self.drv_accel == 0:
            return None
        return self.out_accel / self.drv_accel
