"""3D Chairs (Aubry et al. 2014): 1,393 chair models x 62 views (31 azimuths x 2 elevations).

Source: ``rendered_chairs/`` from rendered_chairs.tar: ``<chair>/renders/image_NNN_pPPP_tTTT_rRRR.png``
(600x600 RGB; p = elevation in degrees, t = azimuth in degrees, r = the camera
distance). Identity = the chair folder, pose = elevation x azimuth. Every chair
must have the same views. Split: 100 chairs held out (C-S 2021 appendix B).
Crop: none by default (the whole render, resized); ``--crop PX`` takes a centred square first.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import InputError
from ...media.images import read_image
from .common import Options, Plan, check_options, prepare, split_by_identity
from .writer import Item, Unit

ACCEPTS = {"test_ids", "test_count", "crop"}
NAME = re.compile(r"image_(\d+)_p(\d+)_t(\d+)_r(\d+)\.png$")
TEST_CHAIRS = 100
PAPER = "100 of the 1,393 chairs held out at random (C-S 2021)"


def _chairs(src: Path) -> Path:
    if not src.is_dir():
        raise InputError("expected the rendered_chairs folder", src)
    if (src / "rendered_chairs").is_dir():
        src = src / "rendered_chairs"
    if not any((d / "renders").is_dir() for d in src.iterdir() if d.is_dir()):
        raise InputError("no chair folders: expected rendered_chairs/<chair>/renders/image_NNN_pPPP_tTTT_rRRR.png "
                         "(from rendered_chairs.tar)", src)
    return src


def _views(chair: Path) -> dict[str, tuple[Path, dict]]:
    renders = chair / "renders"
    if not renders.is_dir():
        raise InputError("missing the renders folder of this chair", renders)
    views = {}
    for f in sorted(renders.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        m = NAME.match(f.name)
        if not m:
            raise InputError("not a 3D Chairs render name (image_NNN_pPPP_tTTT_rRRR.png)", f)
        _, p, t, r = (int(g) for g in m.groups())
        pose = f"p{p:03d}_t{t:03d}"
        if pose in views:
            raise InputError(f"a second render of the view {pose} (also {views[pose][0].name})", f)
        views[pose] = (f, {"elevation": p, "azimuth": t, "distance": r})
    if not views:
        raise InputError("no renders (image_NNN_pPPP_tTTT_rRRR.png)", renders)
    return views


def plan(src: Path, opts: Options) -> Plan:
    check_options("chairs", opts, ACCEPTS)
    root = _chairs(src)
    chairs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    views = {d.name: _views(d) for d in chairs}
    poses = set().union(*(set(v) for v in views.values()))
    for name, v in views.items():  # an incomplete chair means a broken extraction
        missing = sorted(poses - set(v))
        if missing:
            raise InputError(f"has {len(v)} of the {len(poses)} views other chairs have; missing the view "
                             f"{missing[0]} (a file named image_NNN_{missing[0]}_rRRR.png)", root / name / "renders")
    test, split = split_by_identity(views, opts, TEST_CHAIRS, PAPER)

    def units():
        for name, v in views.items():
            def items(name=name, v=v):
                split_name = "test" if name in test else "train"
                for pose, (f, factors) in sorted(v.items()):
                    yield Item(split_name, name, pose, {"chair": name, **factors, "source": f.name},
                               prepare(read_image(f), opts.size, opts.crop))
            yield Unit(f"chairs:{name}", len(v), items)

    notes = [] if len(chairs) == 1393 else [f"the source has {len(chairs)} chairs (the distributed set has 1393)"]
    return Plan(units(), sum(len(v) for v in views.values()), "img", {"size": opts.size, "crop": opts.crop},
                split, notes)
