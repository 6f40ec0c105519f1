"""posecli data: conversion speed per dataset, on small sources written here in each native format.

    .venv/bin/python benchmarks/data_convert.py [--scale 1] [--append]

Each source is a slice of the real dataset's shape (Cars3D 128x128 .mat files,
SmallNORB 96x96 binary matrices, 3D Shapes 64x64 in HDF5, 3D Chairs 600x600
PNGs, CelebA 178x218 JPEGs, KTH 160x120 MJPEG videos) with smooth random
content (gradients plus noise), converted at --size 64 in one process. Reported:
images per second (wall and per CPU second) and the full dataset's time at that
rate. Writing the sources is not timed. ``--append`` adds the table to
benchmarks/RESULTS.md with hardware, date, commit and command.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FULL = {"cars3d": 17568, "smallnorb": 48600, "shapes3d": 480000, "chairs": 86366, "celeba": 202599,
        "kth": 289715}  # kth: frames of the 599 videos at 25 fps (about 290k)


def smooth(g: np.random.Generator, n: int, h: int, w: int, c: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    base = g.uniform(0, 255, (n, 1, 1, c)) * (0.5 + 0.5 * np.sin(6 * xx + 4 * yy))[None, :, :, None]
    return np.clip(base + g.normal(0, 8, (n, h, w, c)), 0, 255).astype(np.uint8)


def make_sources(root: Path, scale: int) -> dict[str, tuple[Path, dict]]:
    import cv2
    import h5py
    import scipy.io as sio

    from posecli.data.datasets.smallnorb import PARTS
    from posecli.media.images import write_image

    g = np.random.default_rng(0)
    out = {}
    cars = root / "cars"
    cars.mkdir(parents=True)
    for i in range(4 * scale):
        im = smooth(g, 96, 128, 128).reshape(4, 24, 128, 128, 3).transpose(2, 3, 4, 1, 0)
        sio.savemat(cars / f"car_{i:03d}_mesh.mat", {"im": np.ascontiguousarray(im)})
    out["cars3d"] = (cars, {"test_count": 1})
    norb = root / "norb"
    norb.mkdir()
    for part in PARTS:
        recs = np.array([(c, i, e, 2 * a, lt) for c in range(5)
                         for i in ((4, 6, 7, 8, 9) if part == "training" else (0, 1, 2, 3, 5))[:scale] for e in (0, 4, 8)
                         for a in range(18) for lt in (0, 5)], np.int32)  # unique, as in the real files
        n = len(recs)
        dat = smooth(g, n * 2, 96, 96, 1).reshape(n, 2, 96, 96)
        cat, info = recs[:, 0].copy(), recs[:, 1:].copy()
        for kind, a in (("dat", dat), ("cat", cat), ("info", info.astype(np.int32))):
            magic = 0x1E3D4C55 if a.dtype == np.uint8 else 0x1E3D4C54
            head = np.array([magic, a.ndim, *a.shape, *[1] * max(0, 3 - a.ndim)], "<i4").tobytes()
            (norb / f"{PARTS[part]}-{kind}.mat.gz").write_bytes(gzip.compress(head + a.tobytes(), 1))
    out["smallnorb"] = (norb, {"variant": "plain"})
    n = 1000 * scale
    idx = np.unravel_index(np.sort(g.choice(480000, n, replace=False)), (10, 10, 10, 8, 4, 15))  # distinct, as real
    labels = np.stack([idx[0] / 10, idx[1] / 10, idx[2] / 10, idx[3] / 14 + 0.75, idx[4], idx[5] * 60 / 14 - 30], 1)
    with h5py.File(root / "3dshapes.h5", "w") as f:
        f["images"], f["labels"] = smooth(g, n, 64, 64), labels
    out["shapes3d"] = (root / "3dshapes.h5", {})
    for c in range(4 * scale):
        d = root / "rendered_chairs" / f"chair{c:04d}" / "renders"
        d.mkdir(parents=True)
        for k, px in enumerate(smooth(g, 62, 600, 600)):
            write_image(d / f"image_{k:03d}_p{20 + 10 * (k // 31):03d}_t{(k % 31) * 11:03d}_r096.png", px)
    out["chairs"] = (root / "rendered_chairs", {"test_count": 1})
    img = root / "celeba" / "img_align_celeba"
    img.mkdir(parents=True)
    lines = []
    for k, px in enumerate(smooth(g, 400 * scale, 218, 178), 1):
        cv2.imwrite(str(img / f"{k:06d}.jpg"), px, [cv2.IMWRITE_JPEG_QUALITY, 95])
        lines.append(f"{k:06d}.jpg {1 + k % (40 * scale)}")
    (root / "celeba" / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    out["celeba"] = (root / "celeba", {"test_count": 2})
    kth = root / "kth"
    kth.mkdir()
    for p in range(2 * scale):
        w = cv2.VideoWriter(str(kth / f"person{p + 1:02d}_walking_d1_uncomp.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                            25.0, (160, 120))
        for f in smooth(g, 250, 120, 160):
            w.write(f)
        w.release()
    out["kth"] = (kth, {})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1, help="source size multiplier")
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    from posecli.data.datasets import convert

    rows = ["| dataset | images | s | images/s | images per CPU s | full dataset at this rate |",
            "|---|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = make_sources(root / "src", args.scale)
        for name, (src, opts) in sources.items():
            t0, c0 = time.perf_counter(), time.process_time()
            s = convert(name, src, root / "out" / name, size=64, **opts)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            n = s["files"]
            full_min = FULL[name] / (n / wall) / 60
            rows.append(f"| {name} | {n} | {wall:.1f} | {n / wall:.0f} | {n / cpu:.0f} | {full_min:.0f} min |")
            print(rows[-1], flush=True)
    text = ("Sources written by the script in each native format (smooth random content), converted at "
            "--size 64 in one process; the wall rate depends on what else runs on the machine.\n\n" + "\n".join(rows))
    print(text)
    if args.append:
        from benchmarks.report import append_section

        append_section("posecli data conversion speed", "cpu", text)


if __name__ == "__main__":
    main()
