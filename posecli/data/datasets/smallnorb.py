"""SmallNORB (LeCun et al. 2004): 50 toys (5 categories x 10 instances), 2 cameras,
9 elevations x 18 azimuths x 6 lightings, 96x96 grey.

Source: the six distributed binary matrix files, ``smallnorb-5x46789x9x18x6x2x96x96-training-
{dat,cat,info}.mat`` and ``smallnorb-5x01235x9x18x6x2x96x96-testing-...`` (as is, or
still gzipped). Each starts with a magic number naming the element type, the
number of dimensions and at least 3 dimension sizes (int32, little-endian),
then the data: dat = uint8 (N, 2 cameras, 96, 96), cat = int32 (N,), info =
int32 (N, 4): instance, elevation index (30 + 5i degrees), azimuth (0, 2 .. 34;
x10 degrees) and lighting.

Variants (identity / pose / split):
  lord        LORD's "SmallNorb": toy x elevation x lighting / azimuth / the official
              toy split (the 25 toys of the testing files held out; LORD: 25 and 25)
  lord-poses  LORD's "SmallNorb-Poses": toy x lighting / elevation x azimuth /
              10% of the images held out (LORD)
  plain       the toy / elevation x azimuth x lighting (camera views and lighting as
              pose, as Esser et al. use NORB) / the official toy split
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ...errors import InputError, UsageError
from .common import (Options, Plan, check_options, choose_variant, image_split, in_test, prepare,
                     split_by_identity)
from .writer import Item, Unit

ACCEPTS = {"variant", "camera", "test_ids", "test_count", "test_fraction"}
VARIANTS = {"lord": "toy x elevation x lighting / azimuth",
            "lord-poses": "toy x lighting / elevation x azimuth",
            "plain": "toy / elevation x azimuth x lighting"}
CATEGORIES = ("animal", "human", "airplane", "truck", "car")
MAGIC = {0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64, 0x1E3D4C54: np.int32, 0x1E3D4C55: np.uint8,
         0x1E3D4C56: np.int16}
PARTS = {"training": "smallnorb-5x46789x9x18x6x2x96x96-training", "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing"}
CHUNK = 600  # records per unit (progress and resume granularity)


def read_matrix(path: Path) -> np.ndarray:
    """A NORB binary matrix file (optionally .gz) as a numpy array; one-line errors for
    foreign or truncated files. Uncompressed files are memory-mapped."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
            buf, size = data, len(data)
        else:
            buf, size = None, path.stat().st_size
            with open(path, "rb") as f:
                data = f.read(8 + 4 * 8)  # the header is at most this long for ndim <= 8
    except (OSError, EOFError) as e:
        raise InputError(f"cannot read ({e}); truncated download?", path) from None
    if len(data) < 20:
        raise InputError(f"truncated ({len(data)} bytes; a NORB matrix header alone is 20)", path)
    magic, ndim = (int(v) for v in np.frombuffer(data, "<i4", 2))
    if magic not in MAGIC:
        raise InputError(f"not a SmallNORB binary matrix (magic number 0x{magic & 0xFFFFFFFF:08X})", path)
    if not 1 <= ndim <= 8:
        raise InputError(f"not a SmallNORB binary matrix ({ndim} dimensions)", path)
    stored = max(3, ndim)
    if len(data) < 8 + 4 * stored:
        raise InputError("truncated header", path)
    dims = tuple(int(d) for d in np.frombuffer(data, "<i4", stored, 8)[:ndim])
    if any(d < 0 for d in dims):
        raise InputError(f"not a SmallNORB binary matrix (dimensions {dims})", path)
    dtype = np.dtype(MAGIC[magic]).newbyteorder("<")
    offset, need = 8 + 4 * stored, int(np.prod(dims)) * dtype.itemsize
    if size - offset < need:
        raise InputError(f"truncated: {size} bytes, the header announces {offset + need}", path)
    if buf is not None:
        return np.frombuffer(buf, dtype, int(np.prod(dims)), offset).reshape(dims)
    return np.memmap(path, dtype, "r", offset, dims)


def _find(src: Path, stem: str, kind: str) -> Path:
    for name in (f"{stem}-{kind}.mat", f"{stem}-{kind}.mat.gz"):
        for folder in (src, src / "smallnorb", src / "small_norb"):
            if (folder / name).is_file():
                return folder / name
    raise InputError(f"missing {stem}-{kind}.mat (or .mat.gz) of the SmallNORB download", src / f"{stem}-{kind}.mat")


def _load_part(src: Path, part: str) -> dict:
    stem = PARTS[part]
    paths = {k: _find(src, stem, k) for k in ("dat", "cat", "info")}
    dat, cat, info = (read_matrix(paths[k]) for k in ("dat", "cat", "info"))
    if dat.dtype != np.uint8 or dat.ndim != 4 or dat.shape[1] != 2:
        raise InputError(f"holds {dat.dtype} {dat.shape}; a -dat file holds uint8 (N, 2 cameras, H, W)", paths["dat"])
    if cat.dtype != np.int32 or cat.ndim != 1:
        raise InputError(f"holds {cat.dtype} {cat.shape}; a -cat file holds int32 (N,)", paths["cat"])
    if info.dtype != np.int32 or info.ndim != 2 or info.shape[1] != 4:
        raise InputError(f"holds {info.dtype} {info.shape}; an -info file holds int32 (N, 4)", paths["info"])
    n = len(dat)
    for k, a in (("cat", cat), ("info", info)):
        if len(a) != n:
            raise InputError(f"{len(a)} records but {paths['dat'].name} has {n}; files of different downloads?", paths[k])
    cat, info = np.asarray(cat), np.asarray(info)
    if n and (cat.min() < 0 or cat.max() >= len(CATEGORIES) or info.min() < 0 or info[:, 0].max() > 9
              or info[:, 1].max() > 8 or info[:, 2].max() > 34 or info[:, 3].max() > 5):
        raise InputError("labels out of range (category 0-4, instance 0-9, elevation 0-8, azimuth 0-34, "
                         "lighting 0-5); not a SmallNORB -cat/-info file", paths["info"])
    return {"dat": dat, "cat": cat, "info": info, "path": paths["dat"]}


def _labels(variant: str, cat: int, inst: int, el: int, az: int, light: int, cam: str | None) -> tuple[str, str]:
    toy = f"{CATEGORIES[cat]}{inst}"
    a = f"az{az // 2:02d}"
    camera = f"_{cam}" if cam else ""
    if variant == "lord":
        return f"{toy}_el{el}_l{light}{camera}", a
    if variant == "lord-poses":
        return f"{toy}_l{light}{camera}", f"el{el}_{a}"
    return toy, f"el{el}_{a}_l{light}{camera}"


def plan(src: Path, opts: Options) -> Plan:
    check_options("smallnorb", opts, ACCEPTS)
    variant = choose_variant("smallnorb", opts, VARIANTS)
    camera = opts.camera or "left"
    if camera not in ("left", "right", "both"):
        raise UsageError(f"--camera {camera}: expected left, right or both")
    if not src.is_dir():
        raise InputError("expected the folder holding the six SmallNORB files", src)
    parts = {p: _load_part(src, p) for p in PARTS}
    toys = {p: {f"{CATEGORIES[c]}{i}" for c, i in zip(d["cat"].tolist(), d["info"][:, 0].tolist())}
            for p, d in parts.items()}
    frac = None
    if variant == "lord-poses":
        if opts.test_ids is not None or opts.test_count is not None:
            raise UsageError("--variant lord-poses holds out images (--test-fraction), not identities")
        frac, split = image_split(opts, 0.1, "10% of the images held out at random (LORD, SmallNorb-Poses)")
        test_toys = set()
    elif opts.test_ids is None and opts.test_count is None:
        if opts.test_fraction is not None:
            raise UsageError(f"--variant {variant} holds out toys (--test-ids, --test-count), not a fraction of images")
        test_toys = toys["testing"]
        split = {"by": "identity", "rule": "the official SmallNORB split: the 25 toys of the testing files held "
                 "out (LORD: 25 toys for training, 25 for testing)", "test_toys": sorted(test_toys)}
    else:
        test_toys, split = split_by_identity(toys["training"] | toys["testing"], opts, 25, "")
        split["test_toys"] = split.pop("test_identities")
    cams = {"left": [(0, None)], "right": [(1, None)], "both": [(0, "left"), (1, "right")]}[camera]

    def units():
        for part, d in parts.items():
            for start in range(0, len(d["dat"]), CHUNK):
                def items(d=d, start=start):
                    stop = min(start + CHUNK, len(d["dat"]))
                    for k in range(start, stop):
                        c = int(d["cat"][k])
                        inst, el, az, light = (int(v) for v in d["info"][k])
                        toy = f"{CATEGORIES[c]}{inst}"
                        for ci, cam in cams:
                            ident, pose = _labels(variant, c, inst, el, az, light, cam)
                            if frac is not None:
                                split_name = "test" if in_test(f"{ident}/{pose}", opts.seed, frac) else "train"
                            else:
                                split_name = "test" if toy in test_toys else "train"
                            factors = {"category": CATEGORIES[c], "instance": inst, "toy": toy, "elevation": 30 + 5 * el,
                                       "azimuth": 10 * az, "lighting": light, "camera": ("left", "right")[ci]}
                            yield Item(split_name, ident, pose, factors, prepare(np.asarray(d["dat"][k, ci]), opts.size))
                n = min(CHUNK, len(d["dat"]) - start)
                yield Unit(f"smallnorb:{part}:{start}", n * len(cams), items)

    total = sum(len(d["dat"]) for d in parts.values()) * len(cams)
    notes = [] if total == 48600 * len(cams) else [f"the source has {total // len(cams)} records (the distributed set has 48600)"]
    return Plan(units(), total, "img", {"size": opts.size, "variant": variant, "camera": camera}, split, notes)
