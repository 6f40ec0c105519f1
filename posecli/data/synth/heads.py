"""Toy heads: identity = the face, pose = yaw x pitch x mouth opening; talking-head clips.

Head frame: y up, face towards +z, head centre at the origin. ``yaw`` is the
camera azimuth around the head: yaw > 0 shows more of the head's left (+x)
side, so the face turns towards the image's left. ``pitch`` > 0 tilts the face
up (the camera looks from below). ``mouth`` in [0, 1]: 0 closed lips, 1 wide open.

Eyes, brows, mouth and eye sockets are painted on the skin (a texture of the
head-frame x, y on the front of the face), so the mouth opening changes
pixels without changing the framing.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import output as ds
from . import raycast as rc

LIGHT = rc.unit([0.2, 0.5, 1.0])  # frontal key light: faces lit as in photos
SKINS = ["#ffdbac", "#f1c27d", "#e0ac69", "#c68642", "#a0663c", "#8d5524", "#6b3e26", "#f5d0b0"]
HAIRS = ["#1c1410", "#3b2a1e", "#6a4a2e", "#b08850", "#d9c07a", "#8e3b1b", "#8a8a8a", "#e0e0dc"]
IRISES = ["#4a2c17", "#2a1a10", "#3a6fb0", "#4f7f3f", "#7a6a3a", "#6f7f88"]
CAPS = ["#c0182a", "#1f4fb4", "#1e7a3c", "#f2c511", "#1a1a1c", "#e8731a"]
FRAMES = ["#141414", "#8a1a1a", "#b8962e", "#1f3f8f", "#5a3a22"]
STYLES = ["short", "long", "bald", "cap", "bun", "afro"]
FACTOR_KEYS = ("hair_style", "skin_color", "hair_color", "eye_color", "glasses", "glasses_color",
               "head_width", "head_height", "jaw", "nose", "ears")


def head_params(seed_or_rng, index: int = 0) -> dict:
    """The parameters of head number ``index`` for ``seed`` (or drawn from a Generator)."""
    rng = ds.rng_for(seed_or_rng, int(index), 0x4EAD)
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    skin = rc.rgb(str(rng.choice(SKINS))) * 255 + rng.integers(-10, 11, 3)
    p = {
        "hair_style": str(rng.choice(STYLES)),
        "skin_color": rc.hexcolor(np.clip(skin, 0, 255).astype(int)),
        "hair_color": str(rng.choice(HAIRS)), "cap_color": str(rng.choice(CAPS)),
        "eye_color": str(rng.choice(IRISES)), "lip_color": rc.hexcolor(np.clip(skin * [0.75, 0.45, 0.45], 0, 255).astype(int)),
        "glasses": bool(rng.random() < 0.3), "glasses_color": str(rng.choice(FRAMES)),
        "head_width": u(0.7, 0.82), "head_height": u(0.95, 1.08), "head_depth": u(0.85, 0.95),
        "jaw": u(0.42, 0.6), "nose": u(0.8, 1.3), "ears": u(0.85, 1.2),
        "eye_x": u(0.22, 0.27), "eye_y": u(0.0, 0.08), "eye_r": u(0.105, 0.125),
        "brow_y": u(0.2, 0.26), "brow_w": u(0.12, 0.17), "brow_t": u(0.025, 0.045), "brow_arch": u(-0.01, 0.05),
        "mouth_y": u(-0.64, -0.57), "mouth_w": u(0.18, 0.26), "voice": u(95.0, 220.0),
    }
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()}


def _surface_z(p, x, y):
    ax, ay, az = p["head_width"], p["head_height"], p["head_depth"]
    return az * math.sqrt(max(0.0, 1 - (x / ax) ** 2 - (y / ay) ** 2))


def _skin_texture(p: dict, mouth: float):
    """Paint sockets, brows, lips and the mouth opening on the front of the face."""
    skin, lips = rc.rgb(p["skin_color"]), rc.rgb(p["lip_color"])
    brow = rc.rgb(p["hair_color"] if p["hair_style"] != "bald" else "#2a1e16") * 0.8
    ex, ey, my, mw = p["eye_x"], p["eye_y"], p["mouth_y"], p["mouth_w"]
    lip_h = 0.05 + 0.1 * mouth
    open_h = 0.012 + 0.1 * mouth

    def texture(P, N):
        x, y, front = P[:, 0], P[:, 1], P[:, 2] > 0.25
        col = np.tile(skin, (len(P), 1))
        sock = ((np.abs(x) - ex) / 0.21) ** 2 + ((y - ey + 0.01) / 0.14) ** 2
        col[front & (sock < 1)] *= 0.62 + 0.2 * np.minimum(sock, 1)[front & (sock < 1), None]  # the eye band reads dark
        bx = (np.abs(x) - ex) / p["brow_w"]
        by = y - p["brow_y"] - p["brow_arch"] * (1 - bx ** 2)
        col[front & (np.abs(bx) < 1) & (np.abs(by) < p["brow_t"] * (1 - 0.4 * np.abs(bx)))] = brow
        my_ = y - my
        col[front & ((x / mw) ** 2 + (my_ / lip_h) ** 2 < 1)] = lips
        hole = front & ((x / (0.85 * mw)) ** 2 + (my_ / open_h) ** 2 < 1)
        col[hole] = (0.2, 0.05, 0.06)
        if mouth > 0.25:  # upper teeth
            col[hole & (my_ > open_h * 0.45) & (np.abs(x) < 0.6 * mw)] = (0.92, 0.9, 0.86)
        return col

    return texture


def _eye_texture(p: dict, center):
    # A large, dark iris and a dark upper lid: at low resolution eyes must read as dark
    # blobs (what face detectors, trained on photos, look for), not as white balls.
    iris, c, r = rc.rgb(p["eye_color"]) * 0.6, np.asarray(center), p["eye_r"]

    def texture(P, N):
        look = (P[:, 2] - c[2]) / r  # cosine from the gaze (+z)
        col = np.tile(rc.rgb("#e8e4de"), (len(P), 1))
        col[look > 0.5] = iris
        col[look > 0.85] = (0.03, 0.03, 0.03)
        col[(P[:, 1] - c[1]) / r > 0.4] = (0.12, 0.08, 0.07)
        return col

    return texture


def _nose_texture(p: dict, center):
    skin, k = rc.rgb(p["skin_color"]), p["nose"]

    def texture(P, N):
        col = np.tile(skin, (len(P), 1))
        dx, dy = np.abs(P[:, 0] - center[0]) / k, (P[:, 1] - center[1]) / k
        col[(dy < -0.1) & (dx > 0.015) & (dx < 0.075) & (N[:, 1] < -0.2)] *= 0.35  # nostrils
        return col

    return texture


def head_prims(p: dict, mouth: float = 0.0) -> list[rc.Prim]:
    ax, ay, az = p["head_width"], p["head_height"], p["head_depth"]
    skin = p["skin_color"]
    tex = _skin_texture(p, float(np.clip(mouth, 0.0, 1.0)))
    matte = dict(spec=0.08, shine=12.0)
    prims = [rc.ellipsoid((0, 0, 0), (ax, ay, az), skin, texture=tex, **matte),
             rc.ellipsoid((0, -0.52, 0.18), (p["jaw"], 0.48, 0.6), skin, texture=tex, **matte),
             rc.cylinder((0, -1.05, -0.12), 0.36, 0.32, skin, axis=(0, 1, 0), **matte)]
    ny = -0.22
    nose = p["nose"]
    nc = (0, ny, _surface_z(p, 0, ny) - 0.02)
    prims.append(rc.ellipsoid(nc, (0.085 * nose, 0.19 * nose, 0.13 * nose), skin, texture=_nose_texture(p, nc), **matte))
    for sx in (-1, 1):
        prims.append(rc.ellipsoid((sx * (ax - 0.03), 0.0, -0.05), (0.08, 0.19 * p["ears"], 0.12 * p["ears"]), skin, **matte))
        ex, ey, er = sx * p["eye_x"], p["eye_y"], p["eye_r"]
        c = (ex, ey, _surface_z(p, ex, ey) - 0.55 * er)
        prims.append(rc.sphere(c, er, "#f5f3ee", texture=_eye_texture(p, c), spec=0.5, shine=40.0))
    prims += _hair(p)
    if p["glasses"]:
        prims += _glasses(p)
    return prims


def _hair(p: dict) -> list[rc.Prim]:
    ax, ay, az, style, hair = p["head_width"], p["head_height"], p["head_depth"], p["hair_style"], p["hair_color"]
    soft = dict(spec=0.05, shine=8.0)
    hairline = [[0, -1, 0.5, -0.1]]  # keep y - 0.5 z >= 0.1: high at the forehead, low at the nape
    cap = rc.ellipsoid((0, 0.03, -0.02), (ax + 0.05, ay + 0.06, az + 0.06), hair, clip=hairline, **soft)
    if style == "short":
        return [cap]
    if style == "long":
        return [cap, rc.ellipsoid((0, -0.35, -0.25), (ax + 0.1, 0.95, 0.65), hair, clip=[[0, 0, 1, 0.1]], **soft)]
    if style == "bun":
        return [cap, rc.sphere((0, 0.82, -0.55), 0.3, hair, **soft)]
    if style == "afro":
        return [rc.ellipsoid((0, 0.2, -0.12), (ax + 0.3, ay + 0.22, az + 0.18), hair, clip=[[0, -1, 0.6, -0.12]], **soft)]
    if style == "cap":
        c = p["cap_color"]
        return [rc.ellipsoid((0, 0.03, 0), (ax + 0.06, ay + 0.07, az + 0.07), c, clip=[[0, -1, 0, -0.45]]),
                rc.ellipsoid((0, 0.46, az * 0.7), (0.55, 0.04, 0.5), c, clip=[[0, 0, -1, -0.2]])]
    return []  # bald


def _glasses(p: dict) -> list[rc.Prim]:
    ex, ey, er, col = p["eye_x"], p["eye_y"], p["eye_r"], p["glasses_color"]
    z = _surface_z(p, ex, ey) + 0.5 * er + 0.03
    hwid, hh, t = 0.15, 0.11, 0.018
    out = []
    for sx in (-1, 1):
        x0, x1 = sorted((sx * (ex - hwid), sx * (ex + hwid)))
        out += [rc.box((x0, ey + hh - t, z - t), (x1, ey + hh + t, z + t), col),
                rc.box((x0, ey - hh - t, z - t), (x1, ey - hh + t, z + t), col),
                rc.box((x0 - t, ey - hh - t, z - t), (x0 + t, ey + hh + t, z + t), col),
                rc.box((x1 - t, ey - hh - t, z - t), (x1 + t, ey + hh + t, z + t), col)]
        side = p["head_width"] * math.sqrt(max(0.0, 1 - (ey / p["head_height"]) ** 2)) + 0.03
        xa, xb = sorted((sx * (ex + hwid), sx * side))
        out.append(rc.box((xa, ey + hh - t, z - 0.4 * abs(xb - xa) - t), (xb, ey + hh + t, z + t), col))
        out.append(rc.box((min(sx * side, sx * (side + 0.04)), ey + hh - t, -0.15), (max(sx * side, sx * (side + 0.04)), ey + hh + t, z - 0.3 * abs(xb - xa)), col))
    out.append(rc.box((-(ex - hwid), ey + 0.02, z - t), (ex - hwid, ey + 0.06, z + t), col))
    return out


def head_bound(p: dict):
    """The framing of an identity: the same for every pose and mouth opening."""
    return rc.bounding_sphere(head_prims(p, 0.0))


def render_head_rgba(params: dict, yaw: float, pitch: float, mouth: float, size: int, ss: int = 3):
    return rc.render(head_prims(params, mouth), yaw, -pitch, size, ss, bound=head_bound(params), light=LIGHT)


def render_head(params: dict, yaw: float, pitch: float, mouth: float, size: int, ss: int = 3) -> np.ndarray:
    """One head on the dataset background (``raycast.BACKGROUND``): uint8 HxWx3 RGB."""
    return rc.compose(*render_head_rgba(params, yaw, pitch, mouth, size, ss))


def identity_name(index: int) -> str:
    return f"head_{index:04d}"


def pose_grid(yaws: int, pitches: int, mouths: int, yaw_range=(-60.0, 60.0), pitch_range=(-30.0, 30.0)):
    """(pose name, yaw, pitch, mouth): y00_p0_m0, ... in sorted-name order."""
    wy, wp, wm = (max(2, len(str(yaws - 1))), len(str(pitches - 1)), len(str(mouths - 1)))
    ms = [0.0] if mouths == 1 else ds.grid(0.0, 1.0, mouths)
    return [(f"y{i:0{wy}d}_p{j:0{wp}d}_m{k:0{wm}d}", y, pt, m)
            for i, y in enumerate(ds.grid(*yaw_range, yaws)) for j, pt in enumerate(ds.grid(*pitch_range, pitches))
            for k, m in enumerate(ms)]


def factors(p: dict) -> dict:
    return {k: p[k] for k in FACTOR_KEYS}


def _render_identity(task) -> dict:
    out, index, seed, size, poses, overwrite, video = task
    from .talking import write_clips

    p = head_params(seed, index)
    bound = head_bound(p)
    name = identity_name(index)
    rows = []
    for pose, yaw, pitch, mouth in poses:
        img = rc.compose(*rc.render(head_prims(p, mouth), yaw, -pitch, size, bound=bound, light=LIGHT))
        rel = f"{name}/{pose}.png"
        ds.write_png(Path(out) / rel, img, overwrite=overwrite)
        rows.append({"path": rel, "identity": name, "pose": pose, "yaw": yaw, "pitch": pitch, "mouth": mouth, **factors(p)})
    frames = write_clips(Path(out), name, p, seed, index, overwrite=overwrite, **video) if video else []
    return {"rows": rows, "frames": frames}


def render_heads(out, identities: int = 100, size: int = 64, yaws: int = 7, pitches: int = 5, mouths: int = 3,
                 yaw_range=(-60.0, 60.0), pitch_range=(-30.0, 30.0), seed: int = 0, video: bool = False,
                 clips_per_identity: int = 1, clip_seconds: float = 4.0, fps: float = 25.0,
                 workers: int | None = None, overwrite: bool = False,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Write ``OUT/head_NNNN/yYY_pP_mM.png`` for every head x pose, ``labels.csv``, ``synth.json``;
    with ``video``, also ``OUT/videos/head_NNNN_K.mp4`` talking-head clips and ``videos.csv``."""
    ds.check_range("--identities", identities, 1)
    ds.check_range("--size", size, 16, 1024)
    for name, v in (("yaws", yaws), ("pitches", pitches), ("mouths", mouths)):
        ds.check_range(f"--{name}", v, 1, 181)
    workers = ds.default_workers() if workers is None else workers
    ds.check_range("--workers", workers, 1, 64)
    if video:
        ds.check_range("--clips", clips_per_identity, 1, 100)
        ds.check_range("--clip-seconds", clip_seconds, 0.2, 600)
        ds.check_range("--fps", fps, 1, 120)
    out = ds.prepare_out(out, overwrite)
    poses = pose_grid(yaws, pitches, mouths, yaw_range, pitch_range)
    config = {"kind": "heads", "identities": identities, "size": size, "yaws": yaws, "pitches": pitches, "mouths": mouths,
              "yaw_range": list(yaw_range), "pitch_range": list(pitch_range), "seed": seed, "video": video,
              "background": list(rc.BACKGROUND)}
    if video:
        config.update(clips_per_identity=clips_per_identity, clip_seconds=clip_seconds, fps=fps)
    ds.write_json(out / ds.MARKER, {**config, "complete": False}, overwrite=True)
    vid = dict(clips=clips_per_identity, seconds=clip_seconds, fps=fps, size=size,
               yaw_range=yaw_range, pitch_range=pitch_range) if video else None
    t0 = time.perf_counter()
    tasks = [(str(out), i, seed, size, poses, overwrite, vid) for i in range(identities)]
    results = ds.run_tasks(_render_identity, tasks, workers, progress, count=lambda r: len(r["rows"]) + len(r["frames"]))
    rows = [r for res in results for r in res["rows"]]
    ds.write_csv(out / "labels.csv", rows, overwrite=True)
    frames = [f for res in results for f in res["frames"]]
    if frames:
        ds.write_csv(out / "videos.csv", frames, overwrite=True)
    seconds = time.perf_counter() - t0
    summary = {**config, "out": str(out), "poses": len(poses), "images": len(rows), "seconds": round(seconds, 3),
               "images_per_s": round(len(rows) / max(seconds, 1e-9), 1), "labels": str(out / "labels.csv"),
               "workers": workers, "complete": True}
    if video:
        summary.update(videos=identities * clips_per_identity, video_frames=len(frames), videos_csv=str(out / "videos.csv"))
    ds.write_json(out / ds.MARKER, summary, overwrite=True)
    return summary
