"""What every dataset converter shares: options, the train/test split, pixel preparation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import InputError, UsageError
from .writer import Unit


@dataclass
class Options:
    """The options of ``posecli data``; each dataset reads the ones it has (see ``ACCEPTS``)."""

    size: int = 64
    seed: int = 0
    test_ids: tuple[str, ...] | None = None  # identities held out, overriding the paper's random choice
    test_count: int | None = None  # identities held out at random (seeded)
    test_fraction: float | None = None  # share of images held out, for splits by image
    variant: str | None = None
    camera: str | None = None  # smallnorb
    crop: int | None = None  # centre crop in source pixels before resizing (celeba, chairs, kth)
    fps: float | None = None  # kth
    actions: tuple[str, ...] | None = None  # kth
    scenarios: tuple[str, ...] | None = None  # kth
    given: set = field(default_factory=set)  # names of the options the user set


@dataclass
class Plan:
    """A checked source, ready to convert: the units to write and what goes in dataset.json."""

    units: Iterable[Unit]
    total: int  # progress-bar steps
    unit: str  # "img" or "video"
    options: dict  # dataset options that change the output (resume refuses others)
    split: dict  # how train and test were chosen
    notes: list[str] = field(default_factory=list)


def check_options(name: str, opts: Options, accepts: set[str]) -> None:
    extra = sorted(opts.given - accepts - {"size", "seed"})
    if extra:
        flags = ", ".join("--" + e.replace("_", "-") for e in extra)
        raise UsageError(f"{flags}: not an option of posecli data {name}")
    if not 8 <= opts.size <= 1024:
        raise UsageError(f"--size {opts.size}: must be between 8 and 1024")
    if opts.test_fraction is not None and not 0 < opts.test_fraction < 1:
        raise UsageError(f"--test-fraction {opts.test_fraction}: must be between 0 and 1 (exclusive)")
    if opts.test_count is not None and opts.test_count < 0:
        raise UsageError(f"--test-count {opts.test_count}: must be 0 or more")
    if opts.crop is not None and opts.crop < 1:
        raise UsageError(f"--crop {opts.crop}: must be a positive number of pixels")


def choose_variant(name: str, opts: Options, variants: dict[str, str]) -> str:
    v = opts.variant or next(iter(variants))
    if v not in variants:
        raise UsageError(f"--variant {v}: posecli data {name} has {', '.join(variants)}")
    return v


def split_by_identity(names: Iterable[str], opts: Options, default_count: int, paper: str) -> tuple[set[str], dict]:
    """The held-out identities: --test-ids, else --test-count (default: the paper's) drawn with --seed.

    The draw depends only on the sorted identity names and the seed, so it is the
    same on every machine and every run.
    """
    names = sorted(set(names))
    if opts.test_ids is not None:
        unknown = [t for t in opts.test_ids if t not in names]
        if unknown:
            raise UsageError(f"--test-ids: no identity {unknown[0]!r} in the source (e.g. {', '.join(names[:3])})")
        test = set(opts.test_ids)
        rule = "given by --test-ids"
    else:
        count = default_count if opts.test_count is None else opts.test_count
        if count >= len(names):
            raise UsageError(f"the split holds out {count} identities but the source has {len(names)}; "
                             f"pass --test-count N (fewer) or --test-ids")
        rng = np.random.default_rng(opts.seed)
        test = {names[i] for i in rng.choice(len(names), count, replace=False)} if count else set()
        rule = paper if opts.test_count is None else f"{count} identities drawn with --seed {opts.seed}"
    if len(test) >= len(names):
        raise UsageError("--test-ids holds out every identity; keep at least one for training")
    return test, {"by": "identity", "rule": rule, "seed": opts.seed, "test_identities": sorted(test)}


def image_split(opts: Options, default_fraction: float, paper: str) -> tuple[float, dict]:
    frac = default_fraction if opts.test_fraction is None else opts.test_fraction
    rule = paper if opts.test_fraction is None else f"{frac:g} of the images, drawn with --seed {opts.seed}"
    return frac, {"by": "image", "rule": rule, "seed": opts.seed, "test_fraction": frac}


def in_test(key: str, seed: int, fraction: float) -> bool:
    """A seeded, order-free coin for splits by image: the same answer for a key on every run."""
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0**64 < fraction


def prepare(pixels: np.ndarray, size: int, crop: int | None = None) -> np.ndarray:
    """uint8 HxW or HxWx3 -> size x size: a centred ``crop`` x ``crop`` square (default: the
    largest centred square), resized (area filter when shrinking, as media.convert.resize_pixels;
    cv2 directly, so that converting a dataset does not load torch)."""
    import cv2

    h, w = pixels.shape[:2]
    side = min(h, w) if crop is None else min(crop, h, w)
    y, x = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(pixels[y:y + side, x:x + side])
    if side == size:
        return square
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if size < side else cv2.INTER_CUBIC)


def to_uint8(a: np.ndarray, what: str) -> np.ndarray:
    """uint8 as is; floats in [0, 1] scaled to 0..255; anything else refused."""
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0 + 1e-6:
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    raise InputError(f"images are {a.dtype} (expected uint8, or floats in [0, 1])", what)


def need_file(path: Path, hint: str = "") -> Path:
    if not path.is_file():
        raise InputError(f"missing{': ' + hint if hint else ''}", path)
    return path


def optional_module(module: str, what: str):
    """Import an optional dependency of ``posecli[datasets]`` with a one-line error when absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs the Python package {module.split('.')[0]}: "
                         f"pip install 'posecli[datasets]'") from None
