"""Where animate's frames come from and go to: video files, frame folders, arrays.

A source knows its size, rate and length up front (``info``) and can be read
any number of times, at any size (``open(size)``): the face tracker reads it a
second time, small, ahead of the frames being animated. Video files are
resampled to a constant rate on decode, so variable-rate input stays in sync
with its copied sound. A sink writes frames atomically: a video through
``VideoWriter``; a folder of PNG frames is filled under a temporary name and
renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError, OutputExistsError, UsageError
from ..fileio import check_folder_writable, temp_for, umask_mode, write_errors
from ..inputs import IMAGE_EXTS, VIDEO_EXTS
from ..media.convert import resize_pixels

DEFAULT_FOLDER_FPS = 25.0
VIDEO_OUT_EXTS = (".mp4", ".webm", ".gif", ".mov", ".mkv")


@dataclass(frozen=True)
class SourceInfo:
    width: int
    height: int
    fps: float
    frames: int  # expected number of frames (an estimate when a video is resampled)
    audio_path: Path | None  # a file whose sound the output carries
    name: str


class VideoSource:
    """A video file, read at a constant ``fps`` (default: its own)."""

    def __init__(self, path: str | Path, fps: float | None = None):
        from ..media.video import probe_video

        self.path = Path(path)
        vi = probe_video(self.path)
        rate = float(fps) if fps else vi.fps
        self.info = SourceInfo(vi.width, vi.height, rate, max(1, round(vi.duration * rate)),
                               self.path if vi.has_audio else None, str(self.path))

    @contextlib.contextmanager
    def open(self, size: tuple[int, int] | None = None) -> Iterator[Iterator[np.ndarray]]:
        from ..media.video import VideoReader

        with VideoReader(self.path, size=size, fps=self.info.fps, strict=True) as reader:
            yield reader


class FolderSource:
    """Image files (a folder or a glob, sorted by name) as frames at ``fps``."""

    def __init__(self, spec: str, fps: float | None = None):
        from ..inputs import expand_inputs
        from ..media.images import read_image

        self.files = expand_inputs([spec], IMAGE_EXTS, allow_stdin=False)
        h, w = read_image(self.files[0]).shape[:2]
        rate = float(fps) if fps else DEFAULT_FOLDER_FPS
        self.info = SourceInfo(w, h, rate, len(self.files), None, spec)

    @contextlib.contextmanager
    def open(self, size: tuple[int, int] | None = None) -> Iterator[Iterator[np.ndarray]]:
        yield self._frames(size)

    def _frames(self, size):
        from ..media.images import read_image

        for f in self.files:
            px = read_image(f)
            if px.shape[1] != self.info.width or px.shape[0] != self.info.height:
                raise InputError(f"frame size {px.shape[1]}x{px.shape[0]} differs from the first frame's "
                                 f"{self.info.width}x{self.info.height}", f)
            yield resize_pixels(px, size) if size else px


class ArraySource:
    """Frames already in memory (a sequence of HxWx3 uint8 arrays), for library use."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float | None = None):
        if len(frames) == 0:
            raise InputError("no frames given")
        h, w = np.asarray(frames[0]).shape[:2]
        self.frames = frames
        self.info = SourceInfo(w, h, float(fps or DEFAULT_FOLDER_FPS), len(frames), None, "frames")

    @contextlib.contextmanager
    def open(self, size: tuple[int, int] | None = None) -> Iterator[Iterator[np.ndarray]]:
        yield (resize_pixels(np.asarray(f), size) if size else np.asarray(f) for f in self.frames)


def open_source(video, fps: float | None = None):
    """A VideoSource, FolderSource or ArraySource for a path, folder, glob or frame sequence."""
    if fps is not None and fps <= 0:
        raise UsageError(f"--fps {fps}: expected a positive rate")
    if not isinstance(video, (str, Path)):
        return ArraySource(video, fps)
    p = Path(video)
    if p.is_dir() or (not p.exists() and any(c in str(video) for c in "*?[")):
        return FolderSource(str(video), fps)
    if p.suffix.lower() in IMAGE_EXTS and p.suffix.lower() not in VIDEO_EXTS:  # .gif plays as a video here
        raise UsageError("is one image; --video takes a video file, a folder of frames or a quoted glob", p)
    return VideoSource(p, fps)


# -- sinks --------------------------------------------------------------------


def output_kind(out: str | Path) -> str:
    """'video' for a video file name, 'frames' for a folder (existing, or a name without a suffix)."""
    if isinstance(out, str) and out == "-":  # (a Path cannot tell '-' from './-')
        raise UsageError("-o -: stdout takes single images only; give a video file (OUT.mp4) or a folder "
                         "for PNG frames (a name without a suffix, or ./- for a folder named '-')")
    p = Path(out)
    if p.suffix.lower() in VIDEO_OUT_EXTS:
        return "video"
    if p.is_dir() or not p.suffix or str(out).endswith(("/", os.sep)):
        if p.exists() and not p.is_dir():
            raise UsageError("exists and is not a folder", p)
        return "frames"
    raise UsageError(f"'{p.suffix}' is not a video type ({', '.join(VIDEO_OUT_EXTS)}); for PNG frames "
                     "give a folder (a name without a suffix, or ending in /)", p)


def check_output(out: str | Path, overwrite: bool) -> str:
    """Refuse an existing output before any work; returns output_kind(out)."""
    kind = output_kind(out)
    p = Path(out)
    if kind == "video" and p.exists() and not overwrite:
        raise OutputExistsError(p)
    if kind == "frames" and p.is_dir() and any(p.iterdir()) and not overwrite:
        raise OutputExistsError(p)
    check_folder_writable(p if kind == "frames" else p.parent, p)  # read-only, full disk: before any work
    return kind


class FolderSink:
    """PNG frames 000000.png, 000001.png, ... appearing in ``path`` only when all are written.

    The frames go to a hidden sibling folder first. A new (or empty) folder is
    created by renaming; into an existing folder (``overwrite``) the frames are
    moved one by one, replacing same-named files and leaving others alone.
    """

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path = Path(path)
        check_output(self.path, overwrite)
        with write_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.part-", dir=self.path.parent))
        self._names = temp_for(self._tmp, self.path)  # errors inside name the user's folder
        self._names.__enter__()
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        from ..media.images import write_image

        write_image(self._tmp / f"{self.frames_written:06d}.png", frame)
        self.frames_written += 1

    def __enter__(self) -> "FolderSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                with write_errors(self.path, self._tmp):
                    self._finish()
        finally:
            self._names.__exit__(None, None, None)
            shutil.rmtree(self._tmp, ignore_errors=True)  # our own temporary folder only

    def _finish(self) -> None:
        if self.frames_written == 0:
            raise InputError("no frames to write", self.path)
        if self.path.is_dir():
            if not any(self.path.iterdir()):
                self.path.rmdir()  # empty: replaced whole below
            else:
                for f in sorted(self._tmp.iterdir()):
                    os.replace(f, self.path / f.name)
                return
        os.chmod(self._tmp, umask_mode("folder"))  # mkdtemp makes 0700: the folder gets the user's usual mode
        os.replace(self._tmp, self.path)


def open_sink(out: str | Path, fps: float, audio_from: Path | None = None, overwrite: bool = False,
              preset: str = "veryfast", crf: int = 18):
    """A VideoWriter (sound copied from ``audio_from``) or a FolderSink, by the form of ``out``."""
    if check_output(out, overwrite) == "frames":
        return FolderSink(out, overwrite)
    from ..media.video import VideoWriter

    return VideoWriter(out, fps=fps, audio_from=audio_from, overwrite=overwrite, preset=preset, crf=crf)
