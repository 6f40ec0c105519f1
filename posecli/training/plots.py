"""Loss curves as PNG images (OpenCV drawing; no plotting library needed)."""

from __future__ import annotations

import math

import numpy as np

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


SKIP = ("step", "stage", "epoch", "images_per_s")


def loss_curve(history: list[dict], width: int = 640, height: int = 360) -> np.ndarray:
    """history: [{"step": int, "stage": str, term: float, ...}] -> RGB uint8 image.

    Terms that stay positive (losses) share a log-scale panel; terms that reach zero
    or below (Lagrange multipliers, logit means, accuracies) get a linear panel
    below it."""
    terms = sorted({k for h in history for k in h if k not in SKIP})
    linear = [t for t in terms if any(h[t] <= 0 for h in history if t in h)]
    logged = [t for t in terms if t not in linear]
    top = _panel(history, logged, width, height, log=True)
    if not linear:
        return top
    return np.concatenate([top, _panel(history, linear, width, height, log=False)], axis=0)


def _panel(history: list[dict], terms: list[str], width: int, height: int, log: bool) -> np.ndarray:
    import cv2

    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 150, 20, 40
    pw, ph = width - left - right, height - top - bottom
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    f = (lambda v: math.log10(v)) if log else (lambda v: v)
    vals = [f(h[t]) for h in history for t in terms if t in h and (h[t] > 0 or not log) and math.isfinite(h[t])]
    if not history or not vals:
        cv2.putText(img, "no data yet", (left + 10, top + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        return img
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    s0, s1 = history[0]["step"], max(history[-1]["step"], history[0]["step"] + 1)

    def xy(step, v):
        return (int(left + pw * (step - s0) / (s1 - s0)), int(top + ph * (1 - (v - lo) / (hi - lo))))

    if log:
        ticks = [(k, f"1e{k}") for k in range(int(math.floor(lo)), int(math.ceil(hi)) + 1) if lo <= k <= hi]
    else:
        ticks = [(lo + (hi - lo) * i / 4, f"{lo + (hi - lo) * i / 4:.3g}") for i in range(5)]
    for v, label in ticks:  # grid lines
        y = xy(s0, v)[1]
        cv2.line(img, (left, y), (left + pw, y), (220, 220, 220), 1)
        cv2.putText(img, label, (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    prev_stage = history[0].get("stage")
    label = lambda x, name: cv2.putText(img, str(name), (x + 4, top + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,  # noqa: E731
                                        (120, 120, 120), 1, cv2.LINE_AA)
    label(left, prev_stage)
    for h in history:  # stage boundaries: a stage's losses are not comparable with the last one's
        if h.get("stage") != prev_stage:
            x = xy(h["step"], lo)[0]
            cv2.line(img, (x, top), (x, top + ph), (160, 160, 160), 1)
            prev_stage = h.get("stage")
            label(x, prev_stage)
    stages = list(dict.fromkeys(h.get("stage") for h in history))
    for i, t in enumerate(terms):
        colour = COLOURS[i % len(COLOURS)]
        for stage in stages:  # one line per stage: no slope drawn across a boundary
            pts = [xy(h["step"], f(h[t])) for h in history
                   if h.get("stage") == stage and t in h and (h[t] > 0 or not log) and math.isfinite(h[t])]
            if len(pts) > 1:
                cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 1, cv2.LINE_AA)
        cv2.putText(img, t, (left + pw + 8, top + 15 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    scale = "log scale" if log else "linear scale"
    cv2.putText(img, f"step {s0}..{s1}, {scale}", (left, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    return img
