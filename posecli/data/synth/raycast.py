"""A small analytic ray caster (numpy only) shared by the synthetic datasets.

An object is a list of ``Prim``: ellipsoids, capped cylinders and convex
polyhedra (planes), each optionally cut by extra half-spaces, with a colour (or
a procedural texture) and a simple material. Object frame: y up, front +z.

The camera is orthographic and orbits the object's bounding sphere, so the
object is centred and wholly in frame at every pose: azimuth 0 looks at the
front (+z), azimuth 90 at the object's +x side, 180 at the back; elevation > 0
looks from above. Rays are cast on a ``ss`` x ``ss`` sub-pixel grid and
box-filtered, which also gives the exact anti-aliased coverage (alpha).

Speed comes from two facts: orthographic rays share one direction, so every
ray/surface quantity is a linear or quadratic form in the pixel coordinates
(built from 1-D vectors by broadcasting); and each primitive is only tested on
the pixel block its projected bounds cover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

BACKGROUND = (230, 230, 230)  # plain light grey behind every dataset image (RGB)

LIGHT = np.array([0.35, 1.0, 0.55]) / np.linalg.norm([0.35, 1.0, 0.55])  # key light, fixed in the object frame
AMBIENT, DIFFUSE, FILL = 0.30, 0.60, 0.25  # FILL: a light at the camera, so no side is black

Texture = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (points, normals) (m,3) -> colours (m,3) in [0,1]


@dataclass
class Prim:
    kind: str  # "ellipsoid" | "cylinder" | "convex"
    color: np.ndarray  # (3,) in [0, 1]
    planes: np.ndarray  # (P, 4): n.x <= d inside (faces of a convex; extra cuts otherwise)
    lo: np.ndarray  # axis-aligned bounds in the object frame, used for culling and framing
    hi: np.ndarray
    center: np.ndarray | None = None  # ellipsoid / cylinder: local = M @ (x - center) is the unit shape
    M: np.ndarray | None = None
    radius: float = 0.0  # bounding-sphere radius around center (round kinds)
    spec: float = 0.15
    shine: float = 20.0
    emit: float = 0.0  # 0: fully shaded, 1: flat colour (lamps)
    texture: Texture | None = None

    def __post_init__(self):
        self.corners = np.array(np.meshgrid(*zip(self.lo, self.hi), indexing="ij")).reshape(3, -1).T


def rgb(c) -> np.ndarray:
    """'#rrggbb', (r, g, b) in 0..255, or an array already in [0, 1] -> float (3,)."""
    if isinstance(c, str):
        c = c.lstrip("#")
        return np.array([int(c[i : i + 2], 16) for i in (0, 2, 4)], float) / 255.0
    a = np.asarray(c)
    return a / 255.0 if np.issubdtype(a.dtype, np.integer) or a.max() > 1.0 else a.astype(float)


def hexcolor(c) -> str:
    r, g, b = (int(round(float(x) * 255)) for x in rgb(c))
    return f"#{r:02x}{g:02x}{b:02x}"


def _mat(kw):
    return {k: kw[k] for k in ("spec", "shine", "emit", "texture") if k in kw}


def _planes(clip) -> np.ndarray:
    return np.zeros((0, 4)) if clip is None or len(clip) == 0 else np.asarray(clip, float).reshape(-1, 4)


def basis(axis) -> np.ndarray:
    """A rotation whose third column is ``axis`` (the local z of cylinders)."""
    z = np.asarray(axis, float) / np.linalg.norm(axis)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def ellipsoid(center, radii, color, rot=None, clip=None, **kw) -> Prim:
    center, radii = np.asarray(center, float), np.asarray(radii, float)
    rot = np.eye(3) if rot is None else np.asarray(rot, float)
    ext = np.sqrt(((rot * radii) ** 2).sum(axis=1))  # exact axis-aligned half extents
    return Prim("ellipsoid", rgb(color), _planes(clip), center - ext, center + ext, center,
                (rot / radii).T, float(radii.max()), **_mat(kw))


def sphere(center, r, color, **kw) -> Prim:
    return ellipsoid(center, (r, r, r), color, **kw)


def cylinder(center, radius, half_length, color, axis=(0, 0, 1), clip=None, **kw) -> Prim:
    """A capped circular cylinder of ``radius`` along ``axis``, ``2*half_length`` long."""
    center, rot = np.asarray(center, float), basis(axis)
    radii = np.array([radius, radius, half_length], float)
    ext = np.sqrt(((rot * radii) ** 2).sum(axis=1))
    return Prim("cylinder", rgb(color), _planes(clip), center - ext, center + ext, center,
                (rot / radii).T, float(math.hypot(radius, half_length)), **_mat(kw))


def convex(planes, lo, hi, color, **kw) -> Prim:
    """The intersection of half-spaces n.x <= d; ``lo``/``hi`` must bound it."""
    return Prim("convex", rgb(color), _planes(planes), np.asarray(lo, float), np.asarray(hi, float), **_mat(kw))


def box_planes(lo, hi) -> np.ndarray:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    eye = np.eye(3)
    return np.array([[*eye[k], hi[k]] for k in range(3)] + [[*-eye[k], -lo[k]] for k in range(3)])


def box(lo, hi, color, **kw) -> Prim:
    return convex(box_planes(lo, hi), lo, hi, color, **kw)


def frustum_planes(y0, y1, bottom, top) -> np.ndarray:
    """A hexahedron between heights y0 < y1 (planar faces, symmetric in x).

    ``bottom``/``top`` = (half_width, z_back, z_front) of the rectangles at y0 and y1:
    slanted front/back faces make windscreens, bumpers and tapered cabins.
    Order: +x, -x, front, back, top, bottom.
    """
    (xb, zb0, zb1), (xt, zt0, zt1) = bottom, top
    dy = y1 - y0

    def plane(n, point):
        n = np.asarray(n, float) / np.linalg.norm(n)
        return [*n, float(n @ np.asarray(point, float))]

    return np.array([
        plane((dy, xb - xt, 0), (xb, y0, 0)),
        plane((-dy, xb - xt, 0), (-xb, y0, 0)),
        plane((0, zb1 - zt1, dy), (0, y0, zb1)),
        plane((0, zt0 - zb0, -dy), (0, y0, zb0)),
        [0, 1, 0, y1],
        [0, -1, 0, -y0],
    ])


def bounding_sphere(prims: Sequence[Prim]) -> tuple[np.ndarray, float]:
    """Centre of the object's bounds and a radius enclosing every primitive."""
    lo = np.min([p.lo for p in prims], axis=0)
    hi = np.max([p.hi for p in prims], axis=0)
    c = (lo + hi) / 2
    r = 0.0
    for p in prims:
        if p.kind == "convex":
            r = max(r, float(np.linalg.norm(p.corners - c, axis=1).max()))
        else:
            r = max(r, float(np.linalg.norm(p.center - c)) + p.radius)
    return c, r


def camera(azimuth: float, elevation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right, up and towards-camera unit vectors for an orbiting camera (degrees)."""
    a = math.radians(azimuth)
    e = math.radians(max(-89.0, min(89.0, elevation)))
    f = np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])
    r = np.cross([0.0, 1.0, 0.0], f)
    r /= np.linalg.norm(r)
    return r, np.cross(f, r), f


def _interval_planes(planes, lin, d, t0, t1):
    """Narrow the ray intervals [t0, t1] by half-spaces; returns the new arrays."""
    for n0, n1, n2, dd in planes:
        n = np.array([n0, n1, n2])
        s = float(n @ d)
        no = lin(n, 0.0)
        if s < -1e-12:
            t0 = np.maximum(t0, (dd - no) / s)
        elif s > 1e-12:
            t1 = np.minimum(t1, (dd - no) / s)
        else:  # parallel: all in or all out
            t0 = np.where(no <= dd, t0, np.inf)
    return t0, t1


def _intersect(p: Prim, lin, d, shape):
    if p.kind == "convex":
        t0, t1 = np.full(shape, -np.inf), np.full(shape, np.inf)
        return _interval_planes(p.planes, lin, d, t0, t1)
    M, c = p.M, p.center
    dl = M @ d
    o = [lin(M[k], -float(M[k] @ c)) for k in range(3)]
    if p.kind == "ellipsoid":
        a = float(dl @ dl)
        g = M.T @ dl
        b = lin(g, -float(g @ c))
        disc = b * b - a * (o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - 1.0)
        sq = np.sqrt(np.maximum(disc, 0.0))
        t0 = np.where(disc >= 0, (-b - sq) / a, np.inf)
        t1 = (-b + sq) / a
    else:  # cylinder: radial quadric in local x, y and a slab in local z
        rr = o[0] * o[0] + o[1] * o[1] - 1.0
        a = float(dl[0] ** 2 + dl[1] ** 2)
        if a < 1e-12:
            t0 = np.where(rr <= 0, -np.inf, np.inf)
            t1 = np.full(shape, np.inf)
        else:
            b = o[0] * dl[0] + o[1] * dl[1]
            disc = b * b - a * rr
            sq = np.sqrt(np.maximum(disc, 0.0))
            t0 = np.where(disc >= 0, (-b - sq) / a, np.inf)
            t1 = (-b + sq) / a
        if abs(dl[2]) < 1e-12:
            t0 = np.where(np.abs(o[2]) <= 1, t0, np.inf)
        else:
            za, zb = (-1.0 - o[2]) / dl[2], (1.0 - o[2]) / dl[2]
            t0 = np.maximum(t0, np.minimum(za, zb))
            t1 = np.minimum(t1, np.maximum(za, zb))
    if len(p.planes):
        t0, t1 = _interval_planes(p.planes, lin, d, t0, t1)
    return t0, t1


def _normals(p: Prim, P: np.ndarray) -> np.ndarray:
    """Outward normals at hit points: the surface the point lies on (smallest residual)."""
    cands, res = [], []
    if p.kind != "convex":
        q = (P - p.center) @ p.M.T
        if p.kind == "ellipsoid":
            g = q @ p.M
            cands.append(g)
            res.append(np.abs((q * q).sum(1) - 1.0) / (2 * np.linalg.norm(g, axis=1) + 1e-12))
        else:
            qr = q.copy()
            qr[:, 2] = 0
            g = qr @ p.M
            cands.append(g)
            res.append(np.abs((qr * qr).sum(1) - 1.0) / (2 * np.linalg.norm(g, axis=1) + 1e-12))
            axis = p.M[2] / np.linalg.norm(p.M[2])
            cands.append(np.sign(q[:, 2:3]) * axis)
            res.append(np.abs(np.abs(q[:, 2]) - 1.0) / np.linalg.norm(p.M[2]))
    if len(p.planes):
        pr = np.abs(P @ p.planes[:, :3].T - p.planes[:, 3])
        k = pr.argmin(1)
        cands.append(p.planes[k, :3])
        res.append(pr[np.arange(len(P)), k])
    if len(cands) == 1:
        n = cands[0]
    else:
        pick = np.argmin(np.stack(res), axis=0)
        n = np.stack(cands)[pick, np.arange(len(P))]
    return n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)


def render(prims: Sequence[Prim], azimuth: float, elevation: float, size: int, ss: int = 3,
           bound: tuple[np.ndarray, float] | None = None, margin: float = 1.03, light: np.ndarray = LIGHT):
    """Ray-cast ``prims``; returns (premultiplied RGB float32 HxWx3, alpha float32 HxW).

    ``bound`` (centre, radius) fixes the framing (default: the object's bounding
    sphere); the view spans ``radius * margin`` each side of the centre.
    ``light``: the key light's unit direction in the object frame.
    """
    c, radius = bounding_sphere(prims) if bound is None else bound
    R, U, F = camera(azimuth, elevation)
    d = -F
    half = radius * margin
    n = size * ss
    coords = ((np.arange(n) + 0.5) / n * 2.0 - 1.0) * half
    us, vs = coords, -coords  # column -> right, row -> down
    origin = c + F * (2.0 * radius + 1.0)  # the image plane, in front of everything
    tbest = np.full((n, n), np.inf)
    ids = np.full((n, n), -1, np.int32)
    scale = n / (2.0 * half)
    for k, p in enumerate(prims):
        corners = p.corners - c
        pu, pv = corners @ R, corners @ U
        u0, u1, v0, v1 = pu.min(), pu.max(), pv.min(), pv.max()
        if p.kind != "convex":  # the sphere's disc is tighter at oblique views
            cu, cv = float((p.center - c) @ R), float((p.center - c) @ U)
            u0, u1 = max(u0, cu - p.radius), min(u1, cu + p.radius)
            v0, v1 = max(v0, cv - p.radius), min(v1, cv + p.radius)
        c0, c1 = max(0, int((u0 + half) * scale - 0.5)), min(n, int((u1 + half) * scale - 0.5) + 2)
        r0, r1 = max(0, int((half - v1) * scale - 0.5)), min(n, int((half - v0) * scale - 0.5) + 2)
        if c0 >= c1 or r0 >= r1:
            continue
        ub, vb = us[c0:c1], vs[r0:r1]

        def lin(a, const, ub=ub, vb=vb):
            return np.add.outer(vb * float(a @ U), ub * float(a @ R) + (float(a @ origin) + const))

        t0, t1 = _intersect(p, lin, d, (r1 - r0, c1 - c0))
        t = np.where(t0 <= t1, t0, np.inf)
        tb = tbest[r0:r1, c0:c1]
        better = t < tb
        np.copyto(tb, t, where=better)
        np.copyto(ids[r0:r1, c0:c1], k, where=better)

    buf = np.zeros((n * n, 3))
    flat = ids.ravel()
    hit = np.flatnonzero(flat >= 0)
    if len(hit):
        order = hit[np.argsort(flat[hit], kind="stable")]
        counts = np.bincount(flat[hit], minlength=len(prims))
        H = (light + F) / np.linalg.norm(light + F)
        start = 0
        for k, cnt in enumerate(counts):
            if cnt == 0:
                continue
            idx = order[start : start + cnt]
            start += cnt
            p = prims[k]
            P = origin + us[idx % n, None] * R + vs[idx // n, None] * U + tbest.ravel()[idx, None] * d
            N = _normals(p, P)
            N *= np.where(N @ F < 0, -1.0, 1.0)[:, None]
            base = p.texture(P, N) if p.texture is not None else p.color[None, :]
            shade = AMBIENT + DIFFUSE * np.maximum(N @ light, 0) + FILL * np.maximum(N @ F, 0)
            col = base * shade[:, None] + p.spec * np.maximum(N @ H, 0)[:, None] ** p.shine
            if p.emit:
                col = (1 - p.emit) * col + p.emit * base
            buf[idx] = np.minimum(np.maximum(col, 0.0), 1.0)
    premult = _box_filter(buf.reshape(n, n, 3), ss)
    alpha = _box_filter((ids >= 0).astype(np.float32), ss)
    return premult.astype(np.float32), alpha


def _box_filter(a: np.ndarray, ss: int) -> np.ndarray:
    """Mean of each ss x ss block (strided sums: several times faster than reshape-mean)."""
    acc = np.zeros((a.shape[0] // ss, a.shape[1] // ss) + a.shape[2:], a.dtype)
    for i in range(ss):
        for j in range(ss):
            acc += a[i::ss, j::ss]
    return acc / (ss * ss)


def compose(premult: np.ndarray, alpha: np.ndarray, background=BACKGROUND) -> np.ndarray:
    """Premultiplied colour over a background (RGB tuple or float HxWx3 in [0,1]) -> uint8."""
    bg = np.asarray(background, np.float32)
    if bg.ndim == 1:  # an RGB tuple in 0..255
        bg = bg / 255.0
    out = premult + (1.0 - alpha[..., None]) * bg
    return np.rint(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def to_image(prims: Sequence[Prim], azimuth: float, elevation: float, size: int, ss: int = 3, **kw) -> np.ndarray:
    """Render on the dataset background: uint8 HxWx3 RGB."""
    return compose(*render(prims, azimuth, elevation, size, ss, **kw))
