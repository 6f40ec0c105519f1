"""Toy cars (a Cars3D-like dataset): identity = the car, pose = azimuth x elevation.

Car frame: front +z, y up, wheels on y = 0. Headlights are pale yellow and the
tail lights red (with a white plate at the back), so front and back views differ.
Azimuth 0 looks at the front, 90 at the car's left (+x) side, 180 at the back.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import output as ds
from . import raycast as rc

# body type -> (length, width, clearance, belt, roof, wheel radius) ranges in metres, and the
# cabin stations as fractions of the length: windscreen base, roof front, roof back, rear base.
BODIES = {
    "sedan": ((4.3, 4.9), (1.72, 1.88), (0.14, 0.20), (0.95, 1.06), (1.38, 1.50), (0.30, 0.34), (0.17, 0.02, -0.24, -0.36)),
    "hatchback": ((3.6, 4.2), (1.65, 1.80), (0.14, 0.19), (0.95, 1.05), (1.42, 1.55), (0.29, 0.32), (0.20, 0.04, -0.40, -0.48)),
    "van": ((4.6, 5.2), (1.85, 2.00), (0.18, 0.24), (1.05, 1.20), (1.85, 2.05), (0.32, 0.36), (0.40, 0.30, -0.49, -0.49)),
    "pickup": ((4.8, 5.4), (1.80, 1.95), (0.25, 0.32), (1.05, 1.15), (1.70, 1.85), (0.36, 0.40), (0.24, 0.10, -0.08, -0.10)),
    "sports": ((4.1, 4.6), (1.85, 1.98), (0.09, 0.13), (0.72, 0.82), (1.10, 1.22), (0.31, 0.34), (0.06, -0.08, -0.22, -0.38)),
    "suv": ((4.4, 4.9), (1.85, 2.00), (0.22, 0.28), (1.10, 1.22), (1.68, 1.85), (0.36, 0.41), (0.26, 0.12, -0.44, -0.47)),
}
PAINTS = ["#c0182a", "#7a0f1c", "#1f4fb4", "#14244f", "#6fa8dc", "#1e7a3c", "#0f3b24", "#f2c511", "#e8731a",
          "#6b4226", "#d8c9a3", "#5b2a86", "#127a7a", "#e0457b", "#8fbf26", "#2a9df4"]
NEUTRALS = ["#f4f4f0", "#b8bcc2", "#6b6f75", "#1a1a1c"]  # a quarter of the cars, as on real roads
GLASS = ["#28323f", "#1a1e24", "#3c5064", "#3a5a5a"]
HUBS = ["#bfc0c6", "#3c3c3e", "#c8aa50", "#e6e6e6"]
FLAGS = ("taxi", "stripes", "spoiler", "roof_rack", "two_tone")
FACTOR_KEYS = ("body", "length", "width", "height", "wheel_radius", "body_color", "window_color", "hub_color") + FLAGS


def _jitter(rng, hexc, amount=14):
    c = np.clip(rc.rgb(hexc) * 255 + rng.integers(-amount, amount + 1, 3), 0, 255)
    return rc.hexcolor(c.astype(int))


def car_params(seed_or_rng, index: int = 0) -> dict:
    """The parameters of car number ``index`` for ``seed`` (or drawn from a Generator).

    Plain JSON types, rounded, so they survive labels.csv / boxes.json exactly.
    """
    rng = ds.rng_for(seed_or_rng, int(index), 0xCA5)
    body = str(rng.choice(list(BODIES)))
    L, W, clear, belt, roof, wheel, cab = BODIES[body]
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    cab = sorted((min(0.45, max(-0.49, c + float(rng.uniform(-0.03, 0.03)))) for c in cab), reverse=True)
    if body == "pickup":
        cab[3] = cab[2] - 0.01  # an upright cabin back before the bed
    paint = str(rng.choice(NEUTRALS if rng.random() < 0.25 else PAINTS))
    p = {
        "body": body, "length": u(L), "width": u(W), "clearance": u(clear), "belt": u(belt),
        "height": u(roof), "wheel_radius": u(wheel), "wheel_width": u((0.2, 0.28)),
        "cabin": cab, "cabin_inset": u((0.1, 0.2)), "hood_drop": u((0.16, 0.26) if body == "sports" else (0.06, 0.16)),
        "trunk_drop": 0.0 if body in ("pickup", "van") else u((0.03, 0.1)), "nose": u((0.06, 0.2)),
        "overhang": u((0.17, 0.22)), "body_color": _jitter(rng, paint), "window_color": str(rng.choice(GLASS)),
        "hub_color": str(rng.choice(HUBS)),
    }
    p["taxi"] = bool(rng.random() < 0.12)
    if p["taxi"]:
        p["body_color"] = _jitter(rng, str(rng.choice(["#f2c511", "#f4f4f0", "#1a1a1c"])), 6)
    p["stripes"] = bool(rng.random() < 0.2)
    p["spoiler"] = bool(body != "pickup" and rng.random() < (0.6 if body == "sports" else 0.15))
    p["roof_rack"] = bool(body in ("suv", "van", "hatchback") and rng.random() < 0.4)
    p["two_tone"] = bool(rng.random() < 0.18)
    p["tone_color"] = _jitter(rng, str(rng.choice(["#f4f4f0", "#1a1a1c", "#b8bcc2", "#7a0f1c"])))
    lum = rc.rgb(p["body_color"]) @ [0.3, 0.59, 0.11]
    p["stripe_color"] = "#1a1a1c" if lum > 0.55 else str(rng.choice(["#f4f4f0", "#f2c511"]))
    return {k: ([round(x, 4) for x in v] if isinstance(v, list) else round(v, 4) if isinstance(v, float) else v)
            for k, v in p.items()}


def _grow(planes, eps, keep=()):
    """Planes pushed outward by ``eps`` (a slightly larger copy: paint layers, glass)."""
    out = np.array(planes, float)
    for i in range(len(out)):
        if i not in keep:
            out[i, 3] += eps
    return out


def car_prims(p: dict) -> list[rc.Prim]:
    L, clear, belt, roof = p["length"], p["clearance"], p["belt"], p["height"]
    r, ww, hw = p["wheel_radius"], p["wheel_width"], p["width"] / 2
    zf0, zf1, zr1, zr0 = (c * L for c in p["cabin"])
    paint, tone = p["body_color"], (p["tone_color"] if p["two_tone"] else p["body_color"])
    glossy = dict(spec=0.35, shine=30.0)
    # lower body: a hexahedron with a tucked-in nose/tail, chamfered top edges and a sloping hood
    body = list(rc.frustum_planes(clear, belt, (hw, -L / 2 + p["nose"] * 0.7, L / 2 - p["nose"]), (hw, -L / 2, L / 2)))
    s2 = math.sqrt(0.5)
    body += [[s2, s2, 0, (hw + belt - 0.07) * s2], [-s2, s2, 0, (hw + belt - 0.07) * s2]]
    hood = np.array([0.0, L / 2 - zf0, p["hood_drop"]])
    hood /= np.linalg.norm(hood)
    body.append([*hood, hood[1] * belt + hood[2] * zf0])
    if p["trunk_drop"] > 0:
        tr = np.array([0.0, zr0 + L / 2, -p["trunk_drop"]])
        tr /= np.linalg.norm(tr)
        body.append([*tr, tr[1] * belt + tr[2] * zr0])
    body = np.array(body)
    blo, bhi = (-hw, clear, -L / 2), (hw, belt, L / 2)
    prims = [rc.convex(body, blo, bhi, paint, **glossy),
             rc.convex(np.vstack([_grow(body, 0.015), [[0, 1, 0, clear + 0.16]]]),
                       (-hw - 0.02, clear - 0.02, -L / 2 - 0.02), (hw + 0.02, clear + 0.16, L / 2 + 0.02), "#2d2d32", spec=0.05)]
    # cabin, its glass band (a slightly larger copy between belt and roof rim) and a B pillar
    inset = p["cabin_inset"]
    cabin = rc.frustum_planes(belt - 0.02, roof, (hw - 0.05, zr0, zf0), (hw - inset, zr1, zf1))
    clo, chi = (-hw, belt - 0.02, zr0 - 0.02), (hw, roof, zf0 + 0.02)
    glass = _grow(cabin, 0.012, keep=(4, 5))
    glass[4, 3], glass[5, 3] = roof - 0.07, -(belt + 0.05)
    prims += [rc.convex(cabin, clo, chi, tone, **glossy),
              rc.convex(glass, clo, (hw, roof, zf0 + 0.03), p["window_color"], spec=0.6, shine=40.0)]
    if zf1 - zr1 > 1.0 and p["body"] != "pickup":
        zb = (zf1 + zr1) / 2 + 0.1
        pillar = np.vstack([_grow(cabin[:2], 0.02), cabin[4:], [[0, 0, 1, zb + 0.05], [0, 0, -1, -(zb - 0.05)]]])
        prims.append(rc.convex(pillar, (-hw, belt, zb - 0.06), (hw, roof, zb + 0.06), tone, **glossy))
    # wheels: a dark tyre and a hub that pokes out of it
    axle = L / 2 - p["overhang"] * L
    for sx in (-1, 1):
        for sz in (-1, 1):
            c = (sx * (hw - ww / 2 + 0.03), r, sz * axle)
            prims.append(rc.cylinder(c, r, ww / 2, "#19191c", axis=(1, 0, 0), spec=0.05))
            prims.append(rc.cylinder(c, 0.55 * r, ww / 2 + 0.012, p["hub_color"], axis=(1, 0, 0), spec=0.5))

    def on_face(plane, y):  # z of a (front or back) face plane at height y
        return (plane[3] - plane[1] * y) / plane[2]

    yl = max(clear + 0.12, belt - p["hood_drop"] - 0.1)
    zl = on_face(body[2], yl)
    yt = max(clear + 0.12, belt - p["trunk_drop"] - 0.12)
    zt = on_face(body[3], yt)
    for sx in (-1, 1):
        prims.append(rc.ellipsoid((sx * (hw - 0.27), yl, zl), (0.17, 0.065, 0.07), "#fff4be", emit=0.6, spec=0.6))
        prims.append(rc.ellipsoid((sx * (hw - 0.2), yt, zt), (0.2, 0.07, 0.06), "#d2191e", emit=0.4, spec=0.5))
        xm = sorted((sx * hw, sx * (hw + 0.14)))  # wing mirror
        prims.append(rc.box((xm[0], belt + 0.06, zf0 - 0.2), (xm[1], belt + 0.15, zf0 - 0.1), tone))
    prims.append(rc.ellipsoid((0, yl - 0.02, on_face(body[2], yl - 0.02)), (max(0.1, hw - 0.5), 0.07, 0.045), "#232328"))
    prims.append(rc.ellipsoid((0, clear + 0.3, on_face(body[3], clear + 0.3)), (0.22, 0.07, 0.035), "#ebebe1", emit=0.3))
    if p["body"] == "pickup":  # bed walls and tailgate above the lower body
        zb0, zb1 = -L / 2 + 0.02, zr0 - 0.06
        for sx in (-1, 1):
            prims.append(rc.box((min(sx * hw, sx * (hw - 0.07)), belt - 0.02, zb0), (max(sx * hw, sx * (hw - 0.07)), belt + 0.3, zb1), paint, **glossy))
        prims.append(rc.box((-hw, belt - 0.02, zb0), (hw, belt + 0.3, zb0 + 0.07), paint, **glossy))
    prims += _details(p, body, cabin)
    return prims


def _details(p, body, cabin) -> list[rc.Prim]:
    """Taxi sign, racing stripes, spoiler, roof rack: the identity's optional extras."""
    L, belt, roof, hw = p["length"], p["belt"], p["height"], p["width"] / 2
    zf1, zr1 = p["cabin"][1] * L, p["cabin"][2] * L
    out = []
    if p["stripes"]:  # a pair of racing stripes over nose, hood, roof and tail: grown paint layers cut to an x band
        for sx in (-1, 1):
            xa, xb = sorted((sx * 0.12, sx * 0.3))
            band = [[1, 0, 0, xb], [-1, 0, 0, -xa]]
            out.append(rc.convex(np.vstack([_grow(body, 0.01), band]), (xa, p["clearance"], -L / 2 - 0.02),
                                 (xb, belt + 0.02, L / 2 + 0.02), p["stripe_color"], spec=0.35, shine=30.0))
            out.append(rc.convex(np.vstack([_grow(cabin, 0.01), band, [[0, -1, 0, -(roof - 0.05)]]]),
                                 (xa, roof - 0.06, zr1 - 0.05), (xb, roof + 0.02, zf1 + 0.05), p["stripe_color"]))
    if p["taxi"]:
        zc = (zf1 + zr1) / 2
        out.append(rc.box((-0.28, roof, zc - 0.12), (0.28, roof + 0.18, zc + 0.12), "#fad728", emit=0.3))
        out.append(rc.box((-0.29, roof + 0.02, zc - 0.13), (0.29, roof + 0.05, zc + 0.13), "#1e1e1e"))
    if p["spoiler"]:
        if p["body"] in ("sedan", "sports"):
            y = belt - p["trunk_drop"] + 0.2
            out.append(rc.box((-hw + 0.1, y, -L / 2 + 0.05), (hw - 0.1, y + 0.05, -L / 2 + 0.35), "#1a1a1c", spec=0.3))
            for sx in (-1, 1):
                x = sx * (hw - 0.35)
                out.append(rc.box((x - 0.03, belt - 0.12, -L / 2 + 0.15), (x + 0.03, y, -L / 2 + 0.25), "#1a1a1c"))
        else:
            out.append(rc.box((-hw + 0.25, roof - 0.03, zr1 - 0.15), (hw - 0.25, roof + 0.02, zr1 + 0.1), p["body_color"], spec=0.35))
    if p["roof_rack"]:
        xr = hw - p["cabin_inset"] - 0.08
        for sx in (-1, 1):
            out.append(rc.box((sx * xr - 0.03, roof - 0.02, zr1 + 0.05), (sx * xr + 0.03, roof + 0.1, zf1 - 0.05), "#323236"))
        for z in np.linspace(zr1 + 0.25, zf1 - 0.25, 3):
            out.append(rc.box((-xr, roof + 0.07, z - 0.03), (xr, roof + 0.11, z + 0.03), "#b4b4b8", spec=0.4))
    return out


def render_car_rgba(params: dict, azimuth: float, elevation: float, size: int, ss: int = 3):
    """(premultiplied float RGB, alpha) of one car: for compositing with true coverage."""
    return rc.render(car_prims(params), azimuth, elevation, size, ss)


def render_car(params: dict, azimuth: float, elevation: float, size: int, ss: int = 3) -> np.ndarray:
    """One car on the dataset background (``raycast.BACKGROUND``): uint8 HxWx3 RGB."""
    return rc.compose(*render_car_rgba(params, azimuth, elevation, size, ss))


def identity_name(index: int) -> str:
    return f"car_{index:04d}"


def pose_grid(azimuths: int, elevations: int, elev_range=(0.0, 30.0)) -> list[tuple[str, float, float]]:
    """(pose name, azimuth, elevation) in sorted-name order: az00_el0, az00_el1, ..."""
    wa, we = max(2, len(str(azimuths - 1))), len(str(elevations - 1))
    return [(f"az{i:0{wa}d}_el{j:0{we}d}", az, el)
            for i, az in enumerate(ds.grid(0.0, 360.0, azimuths, wrap=True))
            for j, el in enumerate(ds.grid(*elev_range, elevations))]


def factors(p: dict) -> dict:
    return {k: p[k] for k in FACTOR_KEYS}


def _render_identity(task) -> list[dict]:
    out, index, seed, size, poses, overwrite = task
    p = car_params(seed, index)
    prims = car_prims(p)
    bound = rc.bounding_sphere(prims)
    name = identity_name(index)
    rows = []
    for pose, az, el in poses:
        img = rc.compose(*rc.render(prims, az, el, size, bound=bound))
        rel = f"{name}/{pose}.png"
        ds.write_png(Path(out) / rel, img, overwrite=overwrite)
        rows.append({"path": rel, "identity": name, "pose": pose, "azimuth": az, "elevation": el, **factors(p)})
    return rows


def render_cars(out, identities: int = 100, size: int = 64, azimuths: int = 24, elevations: int = 4,
                elev_range=(0.0, 30.0), seed: int = 0, workers: int | None = None, overwrite: bool = False,
                progress: Callable[[int], None] | None = None) -> dict:
    """Write ``OUT/car_NNNN/azAA_elE.png`` for every car x pose, ``labels.csv`` and ``synth.json``.

    Same seed -> byte-identical files, whatever ``workers``. Returns the summary.
    """
    ds.check_range("--identities", identities, 1)
    ds.check_range("--size", size, 16, 1024)
    ds.check_range("--azimuths", azimuths, 1, 360)
    ds.check_range("--elevations", elevations, 1, 90)
    ds.check_range("--max-elevation", elev_range[1], elev_range[0], 89.0)
    workers = ds.default_workers() if workers is None else workers
    ds.check_range("--workers", workers, 1, 64)
    out = ds.prepare_out(out, overwrite)
    poses = pose_grid(azimuths, elevations, elev_range)
    config = {"kind": "cars", "identities": identities, "size": size, "azimuths": azimuths, "elevations": elevations,
              "elev_range": list(elev_range), "seed": seed, "background": list(rc.BACKGROUND)}
    ds.write_json(out / ds.MARKER, {**config, "complete": False}, overwrite=True)
    t0 = time.perf_counter()
    tasks = [(str(out), i, seed, size, poses, overwrite) for i in range(identities)]
    rows = [r for chunk in ds.run_tasks(_render_identity, tasks, workers, progress) for r in chunk]
    ds.write_csv(out / "labels.csv", rows, overwrite=True)
    seconds = time.perf_counter() - t0
    summary = {**config, "out": str(out), "poses": len(poses), "images": len(rows), "seconds": round(seconds, 3),
               "images_per_s": round(len(rows) / max(seconds, 1e-9), 1), "labels": str(out / "labels.csv"),
               "workers": workers, "complete": True}
    ds.write_json(out / ds.MARKER, summary, overwrite=True)
    return summary
