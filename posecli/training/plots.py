"""Loss curves as PNG images (OpenCV drawing; no plotting library needed)."""

from __future__ import annotations

import math

import numpy as np

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def loss_curve(history: list[dict], width: int = 640, height: int = 360) -> np.ndarray:
    """history: [{"step": int, "stage": str, term: float, ...}] -> RGB uint8 image, log-scale y."""
    import cv2

    img = np.full((height, width, 3), 255, np.uint8)
    terms = sorted({k for h in history for k in h if k not in ("step", "stage", "epoch", "images_per_s")})
    left, right, top, bottom = 60, 150, 20, 40
    pw, ph = width - left - right, height - top - bottom
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    vals = [h[t] for h in history for t in terms if t in h and h[t] > 0]
    if not history or not vals:
        cv2.putText(img, "no data yet", (left + 10, top + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        return img
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    s0, s1 = history[0]["step"], max(history[-1]["step"], history[0]["step"] + 1)

    def xy(step, v):
        return (int(left + pw * (step - s0) / (s1 - s0)), int(top + ph * (1 - (math.log10(v) - lo) / (hi - lo))))

    for k in range(int(math.floor(lo)), int(math.ceil(hi)) + 1):  # decade grid lines
        if lo <= k <= hi:
            y = xy(s0, 10.0**k)[1]
            cv2.line(img, (left, y), (left + pw, y), (220, 220, 220), 1)
            cv2.putText(img, f"1e{k}", (5, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    prev_stage = history[0].get("stage")
    for h in history:  # stage boundaries
        if h.get("stage") != prev_stage:
            x = xy(h["step"], 10.0**lo)[0]
            cv2.line(img, (x, top), (x, top + ph), (160, 160, 160), 1)
            prev_stage = h.get("stage")
    for i, t in enumerate(terms):
        pts = [xy(h["step"], h[t]) for h in history if t in h and h[t] > 0]
        colour = COLOURS[i % len(COLOURS)]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 1, cv2.LINE_AA)
        cv2.putText(img, t, (left + pw + 8, top + 15 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    cv2.putText(img, f"step {s0}..{s1}", (left, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img
