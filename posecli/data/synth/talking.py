"""Talking-head clips: a smooth random head path, a syllable-like mouth and a voice to match.

Per clip: yaw and pitch drift as a sum of slow sinusoids (within half the
dataset's yaw/pitch ranges, so the face stays near-frontal); the mouth follows
syllables (rise and fall over 0.12-0.3 s, with pauses); the audio is a voiced
buzz (harmonics of a gliding pitch, shaped by formant resonances whose first
formant rises as the mouth opens) whose loudness is the mouth envelope, plus a
short noise burst at each syllable onset. 16 kHz mono float32.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import output as ds
from . import raycast as rc

SAMPLE_RATE = 16000


def pose_path(rng: np.random.Generator, times: np.ndarray, yaw_range, pitch_range):
    """Smooth yaw and pitch (degrees) at ``times``: slow drifts within half of each range."""

    def drift():
        w = rng.dirichlet(np.ones(3))  # weights sum to 1, so |drift| <= 1
        f = rng.uniform(0.05, 0.45, 3)
        ph = rng.uniform(0, 2 * math.pi, 3)
        return (w[:, None] * np.sin(2 * math.pi * f[:, None] * times[None] + ph[:, None])).sum(0)

    out = []
    for lo, hi in (yaw_range, pitch_range):
        mid, half = (lo + hi) / 2.0, (hi - lo) / 2.0
        out.append(mid + 0.5 * half * drift())
    return out[0], out[1]


def syllables(rng: np.random.Generator, seconds: float) -> list[tuple[float, float, float, float]]:
    """(start, duration, peak opening, second formant Hz) of each syllable."""
    out, t = [], float(rng.uniform(0.05, 0.3))
    while t < seconds:
        if rng.random() < 0.15:  # a pause between phrases
            t += float(rng.uniform(0.25, 0.6))
            continue
        dur = float(rng.uniform(0.12, 0.3))
        out.append((t, dur, float(rng.uniform(0.35, 1.0)), float(rng.uniform(900, 2200))))
        t += dur + float(rng.uniform(0.02, 0.08))
    return out


def envelope(sylls, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mouth opening in [0, 1] and the second formant (Hz) at ``times``."""
    m = np.zeros_like(times)
    f2 = np.full_like(times, 1500.0)
    for start, dur, peak, formant in sylls:
        tau = (times - start) / dur
        inside = (tau > 0) & (tau < 1)
        m[inside] = np.maximum(m[inside], peak * np.sin(math.pi * tau[inside]) ** 1.5)
        f2[inside] = formant
    return m, f2


def voice(rng: np.random.Generator, sylls, seconds: float, f0: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The audio track (float32 in [-1, 1]) whose loudness follows the mouth."""
    t = np.arange(int(round(seconds * rate))) / rate
    env, f2 = envelope(sylls, t)
    f2 = np.convolve(f2, np.ones(401) / 401, mode="same")  # glide between vowels
    pitch = f0 * (1 + 0.06 * np.sin(2 * math.pi * 0.5 * t + rng.uniform(0, 6.28)) - 0.05 * t / max(seconds, 1e-6))
    phase = 2 * math.pi * np.cumsum(pitch) / rate
    f1 = 300.0 + 450.0 * env
    sig = np.zeros_like(t)
    for k in range(1, int(4000 // f0) + 1):
        fk = k * pitch
        gain = sum(g / (1 + ((fk - F) / bw) ** 2) for F, g, bw in ((f1, 1.0, 90.0), (f2, 0.6, 120.0), (2600.0, 0.25, 160.0)))
        sig += gain / math.sqrt(k) * np.sin(k * phase)
    sig *= env
    noise = np.diff(rng.standard_normal(len(t) + 1))  # crude high-passed hiss for consonants
    for start, dur, _, _ in sylls:
        i0, i1 = int(start * rate), int(min(seconds, start + 0.03) * rate)
        sig[i0:i1] += 0.08 * noise[i0:i1] * np.hanning(max(i1 - i0, 1))[: i1 - i0]
    peak = np.abs(sig).max()
    return (0.6 * sig / peak if peak > 0 else sig).astype(np.float32)


def write_clips(out: Path, name: str, params: dict, seed: int, index: int, *, clips: int, seconds: float,
                fps: float, size: int, yaw_range, pitch_range, overwrite: bool = False) -> list[dict]:
    """Write ``out/videos/<name>_<k>.mp4`` for k < clips; return per-frame ground-truth rows."""
    from posecli.media.video import VideoWriter

    from .heads import LIGHT, head_bound, head_prims

    bound = head_bound(params)
    rows = []
    for k in range(clips):
        rng = ds.rng_for(seed, int(index), 0x7A1C, k)
        n = max(1, int(round(seconds * fps)))
        times = np.arange(n) / fps
        yaw, pitch = pose_path(rng, times, yaw_range, pitch_range)
        sylls = syllables(rng, seconds)
        mouth, _ = envelope(sylls, times)
        audio = voice(rng, sylls, seconds, float(params["voice"]))
        rel = f"videos/{name}_{k}.mp4"
        with VideoWriter(out / rel, fps=fps, audio=(audio, SAMPLE_RATE), overwrite=overwrite) as vw:
            for f in range(n):
                y, p, m = round(float(yaw[f]), 3), round(float(pitch[f]), 3), round(float(mouth[f]), 3)
                vw.write(rc.compose(*rc.render(head_prims(params, m), y, -p, size, bound=bound, light=LIGHT)))
                rows.append({"video": rel, "identity": name, "clip": k, "frame": f, "time": round(f / fps, 4),
                             "yaw": y, "pitch": p, "mouth": m})
    return rows
