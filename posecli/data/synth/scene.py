"""A street scene with toy cars at known boxes, and its ground truth with the cars replaced.

The cars are identities of the cars dataset of the same seed (``car_params(seed,
index)``), so a model trained on ``synth cars --seed S`` knows them. Each car
is ray-cast at its box size and composited with its true anti-aliased coverage
(alpha), farther cars (higher up the road) first. ``scene_replaced.png`` is the
same street with every car replaced by ONE replacement identity in the same
pose and the same box: it differs from ``scene.png`` only inside the boxes.
For an oracle generator, ``replaced/car_K.png`` is the replacement car's true
render in box K (box-sized, on the dataset's plain background, as a perfect
generator would draw it) and ``replaced_masks/car_K.png`` its true coverage in
the scene (as ``masks/car_K.png`` is the original car's).

A box is the square window that frames the car's bounding sphere, exactly as
in the dataset images: cropping a box and resizing it to the dataset size
gives the dataset's framing (``bbox`` is the tighter box of the car's pixels).
"""

from __future__ import annotations

import time

import numpy as np

from posecli.errors import PoseCliError

from . import output as ds
from . import raycast as rc
from .cars import car_params, identity_name, render_car_rgba

REFERENCE_POSE = (45.0, 10.0)  # azimuth, elevation of replacement.png


def street(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, int]:
    """Sky, buildings, pavement and a road with lane markings: float HxWx3 in [0, 1]; returns the kerb row."""
    img = np.zeros((height, width, 3), np.float32)
    horizon = int(0.4 * height)
    kerb = horizon + max(2, int(0.08 * height))
    g = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = (1 - g) * rc.rgb((110, 160, 220)) + g * rc.rgb((205, 222, 240))
    x = 0
    while x < width:  # a row of blocks with lit and dark windows
        w = int(rng.uniform(0.08, 0.22) * width) + 4
        top = max(2, horizon - int(rng.uniform(0.15, 0.36) * height))
        img[top:horizon, x : x + w] = rc.rgb(str(rng.choice(["#a0522d", "#c8b89a", "#8c8c8c", "#6e7b8b", "#b5651d", "#d2c4a8"])))
        step = max(4, w // 5)
        for wy in range(top + 3, horizon - 4, step):
            for wx in range(x + 2, x + w - 4, step):
                img[wy : wy + step // 2, wx : wx + step // 2] = rc.rgb("#f0e6a0" if rng.random() < 0.3 else "#2e3440")
        x += w
    img[horizon:kerb] = rc.rgb((175, 170, 160))
    img[kerb : kerb + 2] = rc.rgb((120, 120, 115))
    img[kerb + 2 :] = rc.rgb((72, 74, 78))
    img[kerb + 2 :] += rng.normal(0, 0.012, (height - kerb - 2, width, 1)).astype(np.float32)  # asphalt grain
    for frac, dashed in ((0.12, False), (0.55, True), (0.97, False)):
        y = kerb + 2 + int(frac * (height - kerb - 3))
        t = max(1, (height - kerb) // 60)
        for x0 in range(0, width, 40 if dashed else width):
            img[y : y + t, x0 : x0 + (22 if dashed else width)] = rc.rgb((235, 235, 225))
    return np.clip(img, 0, 1), kerb


def _place(rng, params, kerb, width, height, taken, tries=200):
    """A pose and a window (x, y, size) whose car stands on the road, inside the image."""
    for _ in range(tries):
        az, el = round(float(rng.uniform(0, 360)), 1), round(float(rng.uniform(0, 10)), 1)
        ground = float(rng.uniform(kerb + 0.15 * (height - kerb), height - 2))
        depth = (ground - kerb) / (height - kerb)
        size = int(max(24, min(width / 2.5, height * (0.2 + 0.55 * depth))))
        premult, alpha = render_car_rgba(params, az, el, size)
        rows, cols = np.nonzero(alpha > 0.05)
        y0 = int(round(ground)) - int(rows.max()) - 1
        if y0 < 0 or y0 + size > height or size > width:
            continue
        x0 = int(rng.integers(0, width - size + 1))
        tight = (x0 + int(cols.min()), y0 + int(rows.min()), int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1)
        if all(_overlap(tight, t) < 0.25 for t in taken):
            return az, el, (x0, y0, size), tight, premult, alpha
    return None


def _overlap(a, b) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, iw) * max(0, ih) / max(1, min(a[2] * a[3], b[2] * b[3]))


def _paste(canvas, premult, alpha, x, y):
    s = alpha.shape[0]
    region = canvas[y : y + s, x : x + s]
    region[:] = premult + (1.0 - alpha[..., None]) * region


def _shadow(canvas, tight, ground, size):
    x, _, w, _ = tight
    cx, rx, ry = x + w / 2, w * 0.55, max(2.0, 0.06 * size)
    yy, xx = np.mgrid[0 : canvas.shape[0], 0 : canvas.shape[1]]
    d = ((xx - cx) / rx) ** 2 + ((yy - ground) / ry) ** 2
    canvas *= (1 - 0.35 * np.clip(1.2 - d, 0, 1))[..., None]


def render_scene(out, cars: int = 4, width: int = 512, height: int = 320, seed: int = 0, identity: int | None = None,
                 pool: int = 100, size: int = 64, overwrite: bool = False) -> dict:
    """Write scene.png, scene_replaced.png, background.png, replacement.png, masks/car_K.png, boxes.json,
    and the ground truth of each replacement: replaced/car_K.png (render) and replaced_masks/car_K.png (coverage).

    Scene cars are distinct identities drawn from ``car_0000 .. car_<pool-1>``;
    ``identity`` (an index in the same family) replaces them all; by default a
    pool identity that is not in the scene.
    """
    ds.check_range("--cars", cars, 1, 20)
    ds.check_range("--width", width, 64, 4096)
    ds.check_range("--height", height, 64, 4096)
    ds.check_range("--size", size, 16, 1024)
    ds.check_range("--pool", pool, 1)
    if identity is not None:
        ds.check_range("--identity", identity, 0)
    out = ds.prepare_out(out, overwrite)
    ds.write_json(out / ds.MARKER, {"kind": "scene", "seed": seed, "complete": False}, overwrite=True)
    t0 = time.perf_counter()
    rng = ds.rng_for(seed, 0x5CE4E)
    pool = max(pool, cars + 1)
    picks = [int(i) for i in rng.choice(pool, cars + 1, replace=False)]
    indices, replacement = picks[:cars], (picks[cars] if identity is None else int(identity))
    background, kerb = street(rng, width, height)
    placed = []
    for idx in indices:
        params = car_params(seed, idx)
        spot = _place(rng, params, kerb, width, height, [p["bbox"] for p in placed])
        if spot is None:
            raise PoseCliError(f"cannot place {cars} cars without heavy overlap in {width}x{height}; use fewer --cars or a bigger image")
        az, el, (x, y, s), tight, premult, alpha = spot
        placed.append({"box": [x, y, s, s], "bbox": list(tight), "identity": identity_name(idx), "index": idx,
                       "azimuth": az, "elevation": el, "car_params": params, "_rgba": (premult, alpha)})
    placed.sort(key=lambda p: (p["box"][1] + p["box"][3], p["box"][0]))  # farther (higher) first
    for p in placed:
        _shadow(background, p["bbox"], p["bbox"][1] + p["bbox"][3], p["box"][2])
    scene, swapped = background.copy(), background.copy()
    rep_params = car_params(seed, replacement)
    masks, renders, rep_masks = [], [], []
    for p in placed:
        (x, y, s, _), (premult, alpha) = p["box"], p.pop("_rgba")
        _paste(scene, premult, alpha, x, y)
        rep = render_car_rgba(rep_params, p["azimuth"], p["elevation"], s)
        _paste(swapped, *rep, x, y)
        renders.append(rc.compose(*rep))
        for store, a in ((masks, alpha), (rep_masks, rep[1])):
            full = np.zeros((height, width), np.float32)
            full[y : y + s, x : x + s] = a
            store.append(full)
    u8 = lambda a: rc.compose(a, np.ones(a.shape[:2], np.float32))  # noqa: E731  (opaque)
    ds.write_png(out / "background.png", u8(background), overwrite)
    ds.write_png(out / "scene.png", u8(scene), overwrite)
    ds.write_png(out / "scene_replaced.png", u8(swapped), overwrite)
    ds.write_png(out / "replacement.png", rc.compose(*render_car_rgba(rep_params, *REFERENCE_POSE, size)), overwrite)
    for k, (m, r, rm) in enumerate(zip(masks, renders, rep_masks)):
        ds.write_png(out / "masks" / f"car_{k}.png", np.rint(m * 255).astype(np.uint8), overwrite)
        ds.write_png(out / "replaced" / f"car_{k}.png", r, overwrite)
        ds.write_png(out / "replaced_masks" / f"car_{k}.png", np.rint(rm * 255).astype(np.uint8), overwrite)
    ds.write_json(out / "boxes.json", placed, overwrite)
    summary = {"kind": "scene", "out": str(out), "cars": cars, "width": width, "height": height, "seed": seed,
               "pool": pool, "size": size, "boxes": str(out / "boxes.json"),
               "replacement": {"identity": identity_name(replacement), "index": replacement,
                               "azimuth": REFERENCE_POSE[0], "elevation": REFERENCE_POSE[1], "car_params": rep_params},
               "images": 4 + 3 * len(masks), "seconds": round(time.perf_counter() - t0, 3), "complete": True}
    ds.write_json(out / ds.MARKER, summary, overwrite=True)
    return summary
