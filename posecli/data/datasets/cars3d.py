"""Cars3D (Reed et al. 2015): 183 car CAD models x 24 azimuths x 4 elevations.

Sources: the distributed ``.mat`` files, one per car (``data/cars/car_NNN_mesh.mat``
in nips2015-analogy-data.tar.gz; MATLAB v5, variable ``im`` of shape
(H, W, 3, 24 azimuths, 4 elevations), read with scipy), or a ``cars3d.npz`` as
LORD and disentanglement_lib use (``imgs`` or ``images``: N = 4 x 24 x cars
images ordered elevation, azimuth, car). Identity = the car, pose = elevation x
azimuth (indices; the dataset gives no degrees). Split: 20 cars held out (LORD
ICLR 2020 appendix A.2, C-S 2021 appendix B).
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import InputError
from .common import Options, Plan, check_options, optional_module, prepare, split_by_identity, to_uint8
from .writer import Item, Unit

ACCEPTS = {"test_ids", "test_count"}
AZIMUTHS, ELEVATIONS = 24, 4
TEST_CARS = 20
PAPER = "20 of the 183 cars held out at random (LORD ICLR 2020, C-S 2021)"
NPZ_KEYS = ("imgs", "images")


def plan(src: Path, opts: Options) -> Plan:
    check_options("cars3d", opts, ACCEPTS)
    npz = src if src.suffix == ".npz" else (src / "cars3d.npz" if (src / "cars3d.npz").is_file() else None)
    if npz is not None:
        names, units_for = _npz_source(npz, opts)
    else:
        names, units_for = _mat_source(src, opts)
    test, split = split_by_identity(names, opts, TEST_CARS, PAPER)
    notes = [] if len(names) == 183 else [f"the source has {len(names)} cars (the distributed set has 183)"]
    return Plan(units_for(test), len(names) * AZIMUTHS * ELEVATIONS, "img",
                {"size": opts.size, "source_kind": "npz" if npz else "mat"}, split, notes)


def _items(car: str, split: str, image, size: int):
    """The 96 views of a car; ``image(e, a)`` gives the (H, W, 3) view."""
    for e in range(ELEVATIONS):
        for a in range(AZIMUTHS):
            yield Item(split, car, f"el{e}_az{a:02d}", {"car": car, "elevation": e, "azimuth": a},
                       prepare(image(e, a), size))


# --- the .mat files ---------------------------------------------------------

def _mat_files(src: Path) -> list[Path]:
    if not src.is_dir():
        raise InputError("expected the folder of Cars3D .mat files (data/cars) or cars3d.npz", src)
    for folder in (src, src / "cars", src / "data" / "cars"):
        files = sorted(f for f in folder.glob("*.mat") if f.is_file())
        if files:
            return files
    raise InputError("no Cars3D files here: expected car_NNN_mesh.mat files (data/cars of "
                     "nips2015-analogy-data.tar.gz) or cars3d.npz", src)


def _load_mat(path: Path) -> np.ndarray:
    sio = optional_module("scipy.io", "reading Cars3D .mat files")
    try:
        mat = sio.loadmat(str(path))
    except NotImplementedError:
        raise InputError("a MATLAB v7.3 file; the distributed Cars3D files are MATLAB v5 "
                         "(re-download data/cars from nips2015-analogy-data.tar.gz)", path) from None
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... on truncated or foreign files
        raise InputError(f"cannot read as a MATLAB file ({type(e).__name__}: {str(e).strip()[:120]}); "
                         "truncated or not a Cars3D file", path) from None
    if "im" not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise InputError(f"no variable 'im' (has: {keys}); not a Cars3D file", path)
    im = mat["im"]
    if im.ndim != 5 or im.shape[2] != 3 or im.shape[3:] != (AZIMUTHS, ELEVATIONS):
        raise InputError(f"'im' has shape {im.shape}; a Cars3D file holds (H, W, 3, {AZIMUTHS}, {ELEVATIONS})", path)
    return to_uint8(im, str(path))


def _mat_source(src: Path, opts: Options):
    files = _mat_files(src)
    names = [f.stem.removesuffix("_mesh") for f in files]
    if len(set(names)) != len(names):
        raise InputError("two .mat files name the same car", src)

    def units(test):
        for f, car in zip(files, names):
            def items(f=f, car=car):
                im = _load_mat(f)
                yield from _items(car, "test" if car in test else "train", lambda e, a: im[:, :, :, a, e], opts.size)
            yield Unit(f"cars3d:{f.name}", AZIMUTHS * ELEVATIONS, items)
    return names, units


# --- cars3d.npz -------------------------------------------------------------

def _npz_header(path: Path) -> tuple[str, tuple[int, ...]]:
    """(key, shape) of the image array, read from the .npy header without loading it."""
    try:
        with zipfile.ZipFile(path) as z:
            members = {Path(n).stem: n for n in z.namelist() if n.endswith(".npy")}
            key = next((k for k in NPZ_KEYS if k in members), None)
            if key is None:
                raise InputError(f"no array {' or '.join(NPZ_KEYS)} (has: {', '.join(members) or 'none'}); "
                                 "not a Cars3D cars3d.npz", path)
            with z.open(members[key]) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, _ = read(f)
            info = z.getinfo(members[key])
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(f"cannot read as an .npz file ({e}); truncated or not cars3d.npz", path) from None
    if info.file_size < int(np.prod(shape)):
        raise InputError("truncated (the image array is shorter than its header says)", path)
    return key, tuple(int(s) for s in shape)


def _npz_source(path: Path, opts: Options):
    if not path.is_file():
        raise InputError("no such file", path)
    key, shape = _npz_header(path)
    per_car = AZIMUTHS * ELEVATIONS
    if len(shape) == 6 and shape[:2] == (ELEVATIONS, AZIMUTHS) and shape[-1] == 3:
        cars = shape[2]
    elif len(shape) == 4 and shape[-1] == 3 and shape[0] % per_car == 0:
        cars = shape[0] // per_car
    else:
        raise InputError(f"{key} has shape {shape}; expected (4 x 24 x cars, H, W, 3) ordered elevation, "
                         "azimuth, car (183 cars: 17568 images)", path)
    names = [f"car_{i:03d}" for i in range(cars)]

    @lru_cache(maxsize=1)
    def array():
        try:
            with np.load(path, allow_pickle=False) as z:
                a = z[key]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise InputError(f"cannot read {key} ({e}); truncated?", path) from None
        return to_uint8(a.reshape(ELEVATIONS, AZIMUTHS, cars, *a.shape[-3:]), str(path))

    def units(test):
        for i, car in enumerate(names):
            def items(i=i, car=car):
                a = array()
                yield from _items(car, "test" if car in test else "train", lambda e, az: a[e, az, i], opts.size)
            yield Unit(f"cars3d:npz:{car}", per_car, items)
    return names, units
