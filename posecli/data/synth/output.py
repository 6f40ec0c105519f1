"""Writing synthetic datasets: the output folder rule, images, CSVs, worker pools.

Layout shared by every kind: ``OUT/<identity>/<pose>.png``, ``OUT/labels.csv``
(``path,identity,pose`` + factor columns) and ``OUT/synth.json`` (the marker
and summary that lets a later run recognise the folder as a synth output).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from posecli.errors import PoseCliError, UsageError
from posecli.fileio import check_folder_writable, make_folder, write_bytes_atomic

MARKER = "synth.json"


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def rng_for(seed_or_rng, *salt: int) -> np.random.Generator:
    """A Generator as is, or one seeded by (seed, *salt): every identity gets its own stream,
    so a dataset is the same whatever the number of workers."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng([int(seed_or_rng) % 2**63, *salt])


def check_range(name: str, value, lo, hi=None) -> None:
    if value < lo or (hi is not None and value > hi):
        span = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise UsageError(f"{name} must be {span}, got {value}")


def prepare_out(out: str | Path, overwrite: bool) -> Path:
    """Refuse a non-empty folder unless ``overwrite`` (which only replaces the files written)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PoseCliError("exists and is not a folder; synth writes a folder of files", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        if (out / MARKER).is_file():
            raise PoseCliError("holds a previous synth output; pass --overwrite to replace its files", out)
        raise PoseCliError("is not empty and not a posecli synth output; "
                           "pass --overwrite to write into it anyway (no file is deleted)", out)
    check_folder_writable(out)  # read-only or full: before any rendering
    make_folder(out)
    return out


def write_png(path: str | Path, pixels: np.ndarray, overwrite: bool = False) -> None:
    """uint8 HxWx3 RGB (or HxW grey) -> PNG, atomically."""
    from posecli.media.images import write_image

    write_image(path, pixels, overwrite=overwrite)


def write_json(path: str | Path, obj, overwrite: bool = False) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, default=str) + "\n").encode(), overwrite)


def write_csv(path: str | Path, rows: Sequence[dict], overwrite: bool = False) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode(), overwrite)


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_tasks(fn: Callable, tasks: Iterable, workers: int, progress: Callable[[int], None] | None,
              count: Callable = len) -> list:
    """``[fn(t) for t in tasks]`` in order, over a process pool when workers > 1.

    ``progress(count(result))`` is called as results arrive. Fork where it is
    safe (no torch loaded: its thread pools would be copied mid-lock), which also
    works from scripts without a ``__main__`` guard; spawn otherwise.
    """
    tasks = list(tasks)
    results = []
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            results.append(fn(t))
            if progress:
                progress(count(results[-1]))
        return results
    import multiprocessing as mp
    import sys

    from posecli.signals import workers_ignore_sigint

    method = "fork" if "fork" in mp.get_all_start_methods() and "torch" not in sys.modules else "spawn"
    with workers_ignore_sigint():  # Ctrl-C is the parent's to handle: no worker tracebacks
        pool = mp.get_context(method).Pool(min(workers, len(tasks)), initializer=_worker_init)
    with pool:
        for r in pool.imap(functools.partial(_guarded, fn), tasks, chunksize=1):
            results.append(r)
            if progress:
                progress(count(r))
        pool.close()  # let idle workers exit on their own; terminate() is for errors and Ctrl-C
        pool.join()
    return results


_busy = False  # in a worker: a task is running


def _guarded(fn, task):
    global _busy
    _busy = True
    try:
        return fn(task)
    finally:
        _busy = False


def _on_sigterm(*_):
    if _busy:  # unwind, so atomic writes remove their temp files
        raise SystemExit(1)
    os._exit(1)


def _worker_init() -> None:
    """Pool.terminate (an error or Ctrl-C in the parent) sends SIGTERM to the workers;
    the terminal's Ctrl-C (sent to the whole process group) is left to the parent."""
    import signal

    from posecli.signals import ignore_sigint_in_worker

    ignore_sigint_in_worker()
    signal.signal(signal.SIGTERM, _on_sigterm)


def grid(lo: float, hi: float, n: int, wrap: bool = False) -> list[float]:
    """n evenly spaced values; ``wrap`` spaces them over a full turn [lo, hi) (azimuth)."""
    if n == 1:
        return [float(lo) if wrap else (lo + hi) / 2.0]
    vals = np.linspace(lo, hi, n, endpoint=not wrap)
    return [round(float(v), 4) for v in vals]
