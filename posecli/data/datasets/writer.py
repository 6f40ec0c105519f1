"""The one writer behind every ``posecli data NAME``: layout, labels, split, resume.

Layout (trains directly: ``posecli train OUT/train`` or ``OUT/train/labels.csv``)::

    OUT/train/<identity>/<pose>.png      (or OUT/train/<clip>.mp4 for video clips)
    OUT/test/<identity>/<pose>.png
    OUT/labels.csv                       path,identity,pose,split + factor columns (paths from OUT)
    OUT/train/labels.csv, OUT/test/labels.csv   the same rows, paths from their folder
    OUT/dataset.json                     the marker: dataset, options, counts, status

A converter yields *units* (a car's .mat file, a chair, a video, a chunk of an
array); each unit yields *items* with their split, labels and pixels. When a unit
is finished its rows go to the journal ``OUT/.posecli-data.jsonl``; with
``skip_existing`` a later run takes finished units from the journal without
decoding them again, and keeps any file already written. Every file is written
atomically, and the source is only ever read.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ...errors import InputError, OutputExistsError, PoseCliError, UsageError
from ...fileio import write_bytes_atomic

log = logging.getLogger("posecli")

MARKER = "dataset.json"
JOURNAL = ".posecli-data.jsonl"
LABELS = "labels.csv"
SPLITS = ("train", "test")


@dataclass
class Item:
    """One output file: an image (``pixels``, uint8 HxW or HxWx3) or a clip (``frames``)."""

    split: str
    identity: str
    pose: str
    factors: dict = field(default_factory=dict)
    pixels: np.ndarray | None = None
    frames: Callable[[], Iterable[np.ndarray]] | None = None  # a clip: called only when it must be written
    fps: float = 25.0
    name: str | None = None  # file name without suffix (default: the pose)

    def relpath(self) -> str:
        if self.frames is not None:
            return f"{self.split}/{self.name or self.pose}.mp4"
        return f"{self.split}/{self.identity}/{self.name or self.pose}.png"


@dataclass
class Unit:
    """A piece of the source converted at once; ``items()`` decodes it."""

    key: str
    count: int  # progress-bar steps for this unit (its images, or 1 for a video)
    items: Callable[[], Iterator[Item]]


def prepare_out(out: Path, meta: dict, overwrite: bool, skip_existing: bool) -> dict:
    """Check OUT may be written; returns the previous run's marker (or {})."""
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing: give one of them")
    if out.exists() and not out.is_dir():
        raise PoseCliError("exists and is not a folder; posecli data writes a folder", out)
    if not (out.is_dir() and any(out.iterdir())):
        return {}
    marker = out / MARKER
    if not marker.is_file():
        if overwrite:
            return {}
        raise PoseCliError("is not empty and not a posecli data output; pass --overwrite to write into it "
                           "anyway (no file is deleted)", out)
    try:
        old = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    if not (overwrite or skip_existing):
        raise PoseCliError(f"holds a previous posecli data output ({old.get('dataset', '?')}); pass "
                           "--skip-existing to resume it or --overwrite to replace its files", out)
    if skip_existing:
        keys = ("dataset", "options", "split")
        diff = [k for k in keys if old.get(k) != meta.get(k)]
        if diff:
            raise UsageError(f"--skip-existing: {out} was written with other settings ({', '.join(diff)} differ: "
                             f"{json.dumps({k: old.get(k) for k in diff})}); use another OUT or --overwrite")
    return old


class DatasetWriter:
    def __init__(self, out: str | Path, meta: dict, *, overwrite: bool = False, skip_existing: bool = False,
                 progress: Callable[[int], None] | None = None):
        self.out = Path(out)
        self.meta = meta
        self.overwrite, self.skip_existing = overwrite, skip_existing
        self.progress = progress
        prepare_out(self.out, meta, overwrite, skip_existing)
        self.out.mkdir(parents=True, exist_ok=True)
        self.journal = self._read_journal() if skip_existing else {}
        if not skip_existing and (self.out / JOURNAL).exists():
            (self.out / JOURNAL).unlink()  # our own bookkeeping from a run being replaced
        self.rows: list[dict] = []
        self._seen: set[str] = set()
        self.written = self.kept = self.units_skipped = 0
        self._write_marker("incomplete")

    # --- bookkeeping -------------------------------------------------------

    def _read_journal(self) -> dict[str, list[dict]]:
        path = self.out / JOURNAL
        done: dict[str, list[dict]] = {}
        if not path.is_file():
            return done
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                done[rec["unit"]] = rec["rows"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by an interruption: that unit is redone
        return done

    def _journal(self, key: str, rows: list[dict]) -> None:
        with open(self.out / JOURNAL, "a", encoding="utf-8") as f:
            f.write(json.dumps({"unit": key, "rows": rows}) + "\n")
            f.flush()

    def _write_marker(self, status: str, summary: dict | None = None) -> None:
        obj = {**self.meta, "status": status, **(summary or {})}
        write_bytes_atomic(self.out / MARKER, (json.dumps(obj, indent=1, default=str) + "\n").encode(), overwrite=True)

    # --- writing -----------------------------------------------------------

    def _write_item(self, item: Item) -> dict:
        from ...media.images import write_image

        rel = item.relpath()
        if rel in self._seen:  # a source that labels two images alike (a mislabelled or merged download)
            raise InputError(f"two images of the source have the identity {item.identity!r} and the pose "
                             f"{item.pose!r} (both would be {rel}); its labels repeat", self.meta.get("source"))
        self._seen.add(rel)
        path = self.out / rel
        if path.exists():
            if self.skip_existing:
                self.kept += 1
                return self._row(item, rel)
            if not self.overwrite:
                raise OutputExistsError(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if item.frames is not None:
            from ...media.video import write_video

            write_video(path, item.frames(), fps=item.fps, overwrite=self.overwrite)
        else:
            write_image(path, item.pixels, overwrite=self.overwrite)
        self.written += 1
        return self._row(item, rel)

    @staticmethod
    def _row(item: Item, rel: str) -> dict:
        return {"path": rel, "identity": item.identity, "pose": item.pose, "split": item.split, **item.factors}

    def _finished(self, unit: Unit) -> list[dict] | None:
        """The rows of a unit a previous run finished (its files all present), else None."""
        rows = self.journal.get(unit.key)
        if rows is not None and all((self.out / r["path"]).is_file() for r in rows):
            return rows
        return None

    def run(self, units: Iterable[Unit]) -> dict:
        start = time.perf_counter()
        for unit in units:
            rows = self._finished(unit) if self.skip_existing else None
            if rows is not None:
                self._seen.update(r["path"] for r in rows)
                self.units_skipped += 1
                self.kept += len(rows)
            else:
                rows = []
                for item in unit.items():
                    rows.append(self._write_item(item))
                self._journal(unit.key, rows)
            self.rows.extend(rows)
            if self.progress:
                self.progress(unit.count)
        return self.finish(time.perf_counter() - start)

    def finish(self, seconds: float) -> dict:
        if not self.rows:
            raise PoseCliError("the source yielded nothing to write", self.meta.get("source"))
        rows = sorted(self.rows, key=lambda r: r["path"])
        write_csv(self.out / LABELS, rows)
        counts = {}
        for split in SPLITS:
            part = [{**r, "path": r["path"][len(split) + 1:]} for r in rows if r["split"] == split]
            if part:
                write_csv(self.out / split / LABELS, part)
            counts[split] = {"files": len(part), "identities": len({r["identity"] for r in part})}
        summary = {
            "out": str(self.out), "files": len(rows), "identities": len({r["identity"] for r in rows}),
            "poses": len({r["pose"] for r in rows}), "splits": counts, "written": self.written,
            "kept": self.kept, "seconds": round(seconds, 2),
        }
        self._write_marker("complete", summary)
        return {**self.meta, **summary}


def write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for r in rows:  # every column any row has, in first-seen order
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    w.writeheader()
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"), overwrite=True)
