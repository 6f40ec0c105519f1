"""3D Shapes (Burgess & Kim 2018): 480,000 64x64 RGB renders of 6 factors.

Source: ``3dshapes.h5`` (HDF5, read with h5py: ``pip install 'posecli[datasets]'``),
datasets ``images`` uint8 (N, 64, 64, 3) and ``labels`` float (N, 6): floor hue,
wall hue, object hue (10 values each), scale (8), shape (4), orientation (15).
Factor values are turned into indices (0 .. n-1, in increasing value).

Variants (identity / pose / split):
  lord     LORD's code: the shape / the other five factors / no paper gives a split
           (3D Shapes is not in LORD's tables): 10% of the images held out at random
  objects  the object (shape x object hue x scale, 320) / orientation x floor hue x wall
           hue / posecli's choice, no paper gives one: 32 objects (10%) held out
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError, UsageError
from .common import (Options, Plan, check_options, choose_variant, image_split, in_test, optional_module, prepare,
                     split_by_identity)
from .writer import Item, Unit

ACCEPTS = {"variant", "test_ids", "test_count", "test_fraction"}
VARIANTS = {"lord": "shape / floor hue x wall hue x object hue x scale x orientation",
            "objects": "shape x object hue x scale / orientation x floor hue x wall hue"}
FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
CHUNK = 2000


def _open(path: Path):
    h5py = optional_module("h5py", "reading 3dshapes.h5")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"cannot read as HDF5 ({str(e).strip()[:120]}); truncated or not 3dshapes.h5", path) from None
    for key in ("images", "labels"):
        if key not in f:
            has = ", ".join(f.keys()) or "none"
            f.close()
            raise InputError(f"no dataset '{key}' (has: {has}); not 3dshapes.h5", path)
    return f


def _labels(f, path: Path) -> np.ndarray:
    images, labels = f["images"], f["labels"]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise InputError(f"'images' is {images.dtype} {images.shape}; 3dshapes.h5 holds uint8 (N, 64, 64, 3)", path)
    if labels.shape != (images.shape[0], 6):
        raise InputError(f"'labels' has shape {labels.shape}; expected ({images.shape[0]}, 6)", path)
    try:
        values = np.asarray(labels[:], np.float64)
    except OSError as e:
        raise InputError(f"cannot read 'labels' ({e}); truncated?", path) from None
    index = np.empty(values.shape, np.int64)
    for j in range(6):  # factor values -> 0 .. n-1 (rounded: the hues are stored as 0.1 steps in float)
        _, index[:, j] = np.unique(np.round(values[:, j], 4), return_inverse=True)
    return index


def _names(variant: str, idx) -> tuple[str, str]:
    fh, wh, oh, sc, sh, orient = (int(v) for v in idx)
    if variant == "lord":
        return f"shape{sh}", f"f{fh}_w{wh}_o{oh}_s{sc}_r{orient:02d}"
    return f"shape{sh}_o{oh}_s{sc}", f"r{orient:02d}_f{fh}_w{wh}"


def plan(src: Path, opts: Options) -> Plan:
    check_options("shapes3d", opts, ACCEPTS)
    variant = choose_variant("shapes3d", opts, VARIANTS)
    path = src / "3dshapes.h5" if src.is_dir() else src
    if not path.is_file():
        raise InputError("missing: the 3D Shapes file 3dshapes.h5", path)
    with _open(path) as f:
        index = _labels(f, path)
    idents = [_names(variant, row)[0] for row in index]
    frac, test = None, set()
    if variant == "lord":
        if opts.test_ids is not None or opts.test_count is not None:
            raise UsageError("--variant lord has 4 identities (shapes) and holds out images (--test-fraction)")
        frac, split = image_split(opts, 0.1, "no paper gives one: 10% of the images held out at random (posecli)")
    else:
        if opts.test_fraction is not None:
            raise UsageError("--variant objects holds out objects (--test-ids, --test-count), not images")
        test, split = split_by_identity(idents, opts, max(1, len(set(idents)) // 10),
                                        "no paper gives one: 10% of the objects held out at random (posecli)")

    def units():
        for start in range(0, len(index), CHUNK):
            def items(start=start):
                stop = min(start + CHUNK, len(index))
                with _open(path) as f:
                    try:
                        block = f["images"][start:stop]
                    except OSError as e:
                        raise InputError(f"cannot read images {start}..{stop} ({e}); truncated?", path) from None
                for k in range(start, stop):
                    ident, pose = _names(variant, index[k])
                    if frac is not None:
                        split_name = "test" if in_test(f"{ident}/{pose}", opts.seed, frac) else "train"
                    else:
                        split_name = "test" if ident in test else "train"
                    factors = dict(zip(FACTORS, (int(v) for v in index[k])))
                    yield Item(split_name, ident, pose, factors, prepare(block[k - start], opts.size))
            yield Unit(f"shapes3d:{start}", min(CHUNK, len(index) - start), items)

    notes = [] if len(index) == 480000 else [f"the source has {len(index)} images (the distributed file has 480000)"]
    return Plan(units(), len(index), "img", {"size": opts.size, "variant": variant}, split, notes)
