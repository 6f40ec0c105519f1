"""Video files as streams of uint8 RGB frames, through the ffmpeg binary.

Reading pipes ``rawvideo rgb24`` out of ffmpeg, one frame at a time, so memory
does not depend on the length of the video. Writing pipes frames into ffmpeg
and goes through ``atomic_path``. The command lines are built with ffmpeg-python
(``ffmpeg_bin.ffmpeg_cmd``); the processes are posecli's own: ffmpeg always runs
with ``-nostdin``, in its own session, and its stderr is drained in a thread (a
full stderr pipe would stall it; ffmpeg-python's ``run_async`` does not drain it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Iterable, Iterator

import ffmpeg  # ffmpeg-python: the command-line builder
import numpy as np

from ..errors import InputError, PoseCliError, UsageError
from ..fileio import atomic_path, check_writable, write_error, write_errors
from ..inputs import VIDEO_EXTS  # the types read (anything ffmpeg opens works; these are listed)
from .ffmpeg_bin import (  # probing lives beside the ffmpeg plumbing; re-exported here
    StderrTail,
    VideoInfo,
    check_media_file,
    ffmpeg_cmd,
    ffmpeg_exe,
    has_encoder,
    inspect_media,
    last_message,
    passthrough_args,
    passthrough_kwargs,
    probe_video,
)

__all__ = ["VIDEO_EXTS", "WRITE_EXTS", "VideoInfo", "VideoReader", "VideoWriter", "inspect_media", "probe_video",
           "read_video_frames", "write_video"]

WRITE_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".gif")
_POPEN = {"start_new_session": True}  # Ctrl-C reaches Python only; we stop ffmpeg ourselves


class VideoReader:
    """Iterate uint8 HxWx3 RGB frames of a video; use as a context manager.

    ``size=(w, h)`` scales while decoding; ``fps`` resamples to a constant rate
    (drops/duplicates frames by timestamp, so variable-rate input stays in sync
    with its audio). Without ``fps`` every decoded frame comes out once.
    ``strict``: any decoding error ffmpeg reports fails the read (when
    resampling, a corrupt middle would otherwise pass as repeated frames).
    """

    def __init__(self, path: str | Path, *, size: tuple[int, int] | None = None, fps: float | None = None,
                 strict: bool = False):
        self.path = Path(path)
        self.info = probe_video(self.path)
        w, h = size if size is not None else (self.info.width, self.info.height)
        if w <= 0 or h <= 0 or (fps is not None and fps <= 0):
            raise UsageError(f"bad size {w}x{h} or fps {fps} for reading", self.path)
        self.size = (int(w), int(h))
        self.fps = float(fps) if fps else self.info.fps
        self._resample = fps is not None
        self._strict = strict
        self.frames_read = 0
        shrink = w * h < self.info.width * self.info.height
        # Scaling to the displayed size even without ``size`` pins the frame
        # size we slice the pipe by, whatever rotation or pixel aspect ffmpeg applied.
        filters = [f"fps={self.fps!r}"] if self._resample else []
        filters.append(f"scale={w}:{h}:flags={'area' if shrink else 'bicubic'},setsar=1")
        out = ffmpeg.input(str(self.path)).output(
            "pipe:1", map="0:V:0", an=None, sn=None, dn=None, vf=",".join(filters), f="rawvideo", pix_fmt="rgb24",
            **({} if self._resample else passthrough_kwargs()))
        cmd = ffmpeg_cmd(out)
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **_POPEN)
        self._stderr = StderrTail(self._proc.stderr)
        self._done = False

    @property
    def expected_frames(self) -> int:
        """Frames this reader should yield (estimated when resampling)."""
        if self._resample:
            return max(1, round(self.info.duration * self.fps))
        return self.info.frame_count

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        if self._done:
            raise StopIteration
        w, h = self.size
        buf = bytearray(w * h * 3)
        view, got = memoryview(buf), 0
        while got < len(buf):
            n = self._proc.stdout.readinto(view[got:])
            if not n:
                break
            got += n
        if got < len(buf):
            self._finish(partial=got > 0)
            raise StopIteration
        self.frames_read += 1
        return np.frombuffer(buf, np.uint8).reshape(h, w, 3)

    def _finish(self, partial: bool) -> None:
        """End of the pipe: decide whether the video decoded completely."""
        self._done = True
        rc = self._proc.wait()
        self._stderr.join()
        errors = list(self._stderr.lines)
        short = self.frames_read < self.expected_frames and not self._resample
        if rc != 0 or partial or self.frames_read == 0 or ((short or self._strict) and errors):
            why = self._stderr.last_line() if errors else f"ffmpeg exit status {rc}"
            raise InputError(f"decoding failed after {self.frames_read} frames ({why})", self.path)

    def close(self) -> None:
        """Stop ffmpeg (if still running) and release the pipes."""
        self._done = True
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._stderr.join()  # stderr reaches EOF once ffmpeg is gone
        for stream in (self._proc.stdout, self._proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()


def read_video_frames(path: str | Path, **kw) -> Iterator[np.ndarray]:
    """Generator of frames (see ``VideoReader`` for the options)."""
    with VideoReader(path, **kw) as reader:
        yield from reader


# -- writing ------------------------------------------------------------------

# Audio codecs each container takes as they are (anything else is re-encoded).
_COPYABLE = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le"},
    ".mkv": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "vorbis", "flac", "pcm_s16le", "pcm_s24le", "pcm_f32le"},
    ".webm": {"opus", "vorbis"},
}


def _webm_audio_codec() -> dict:
    for name in ("libopus", "libvorbis"):
        if has_encoder(name):
            return {"c:a": name, "b:a": "128k"}
    return {"c:a": "opus", "strict": -2, "b:a": "128k"}


class VideoWriter:
    """Encode uint8 RGB frames to a video file; use as a context manager.

    Format from the extension: .mp4/.mov/.mkv H.264 yuv420p (``crf``, ``preset``),
    .webm VP9 (crf + 13 on VP9's 0-63 scale) with Opus audio, .gif with a
    generated palette and no audio (audio arguments are ignored for .gif).

    H.264 in yuv420p needs even sizes: an odd width or height grows by one
    pixel, repeating the last column/row. Padding (rather than scaling) keeps
    every source pixel unresampled; ``output_size`` says what was written.

    Sound: ``audio_from`` (a media file; its first audio track is copied when the
    container takes its codec, else re-encoded) or ``audio=(samples, rate)``
    (float32 in [-1, 1], shape (n,) or (n, 1|2)). Frames are encoded first;
    at ``close()`` the sound is added in a second, stream-copying ffmpeg run
    cut to exactly the picture's duration (frames / fps), re-encoded sound
    padded with silence when shorter. (ffmpeg's ``-shortest`` on a live pipe
    cuts at a timing-dependent point.)

    The file appears at ``path`` only after a successful ``close()``; an
    exception inside the ``with`` block (Ctrl-C too) kills ffmpeg and leaves nothing.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float,
        size: tuple[int, int] | None = None,
        audio_from: str | Path | None = None,
        audio: tuple[np.ndarray, int] | None = None,
        overwrite: bool = False,
        crf: int = 18,
        preset: str = "medium",
    ):
        self.path = Path(path)
        self.ext = self.path.suffix.lower()
        if self.ext not in WRITE_EXTS:
            raise UsageError(f"cannot write video as '{self.ext or '(no extension)'}' (use {', '.join(WRITE_EXTS)})", self.path)
        if not fps or fps <= 0:
            raise UsageError(f"fps must be positive, got {fps}", self.path)
        if audio_from is not None and audio is not None:
            raise UsageError("give audio_from or audio, not both", self.path)
        check_writable(self.path, overwrite)
        self.fps, self.crf, self.preset = float(fps), int(crf), preset
        self.size = tuple(size) if size is not None else None
        self.frames_written = 0
        self._audio_from = Path(audio_from) if audio_from is not None else None
        if self._audio_from is not None:
            check_media_file(self._audio_from)
        self._audio = _check_audio(*audio) if audio is not None else None
        self._proc: subprocess.Popen | None = None
        self._stderr: StderrTail | None = None
        self._video_tmp: Path | None = None  # picture only, when sound is added at close
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path, overwrite))
        self._closed = False

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(w, h) as encoded: ``size`` rounded up to even for H.264."""
        if self.size is None:
            return None
        w, h = self.size
        return (w + w % 2, h + h % 2) if self.ext in (".mp4", ".mov", ".mkv") else (w, h)

    @property
    def _wants_audio(self) -> bool:
        return self.ext != ".gif" and (self._audio is not None or self._audio_from is not None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc_type, exc, tb)

    def write(self, frames: np.ndarray) -> None:
        """Append one HxWx3 uint8 RGB frame or a batch NxHxWx3."""
        if self._closed:
            raise ValueError("write() on a closed VideoWriter")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 HxWx3 or NxHxWx3 RGB frames, got {frames.dtype} {frames.shape}")
        if self.size is None:
            self.size = (frames.shape[2], frames.shape[1])
        if (frames.shape[2], frames.shape[1]) != self.size:
            raise ValueError(f"frame size {frames.shape[2]}x{frames.shape[1]} differs from the video's {self.size[0]}x{self.size[1]}")
        if self._proc is None:
            self._start()
        pad_w, pad_h = (self.output_size[0] - self.size[0], self.output_size[1] - self.size[1])
        if pad_w or pad_h:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frames).tobytes())
        except (BrokenPipeError, OSError):
            self._proc.wait()
            self._stderr.join()
            raise _ffmpeg_failed("ffmpeg stopped", self._stderr.lines, self.path) from None
        self.frames_written += len(frames)

    def _video_output(self, frames, target: Path, faststart: bool):
        """The encoding output node for the piped ``frames`` (an ffmpeg-python stream)."""
        if self.ext == ".gif":  # a palette made from the frames themselves
            split = frames.split()
            palette = split[0].filter("palettegen")
            return ffmpeg.filter([split[1], palette], "paletteuse").output(str(target), loop=0)
        if self.ext == ".webm":
            codec = "libvpx-vp9" if has_encoder("libvpx-vp9") else "libvpx"
            crf = min(63, max(4, self.crf + 13))
            opts = {"c:v": codec, "pix_fmt": "yuv420p", "crf": crf, "b:v": 0, "deadline": "good", "cpu-used": 4,
                    "row-mt": 1}
        elif has_encoder("libx264"):
            opts = {"c:v": "libx264", "crf": self.crf, "preset": self.preset, "pix_fmt": "yuv420p"}
        else:  # LGPL-only ffmpeg builds: MPEG-4 part 2 is always there
            opts = {"c:v": "mpeg4", "q:v": 3, "pix_fmt": "yuv420p"}
        return frames.output(str(target), **opts, **(self._faststart() if faststart else {}))

    def _faststart(self) -> dict:
        return {"movflags": "+faststart"} if self.ext in (".mp4", ".mov") else {}

    def _start(self) -> None:
        target = self._tmp
        if self._wants_audio:
            with write_errors(self.path):
                fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".video{self.ext}", dir=self._tmp.parent)
            os.close(fd)
            self._video_tmp = target = Path(name)
            self._stack.callback(_unlink, target)
        w, h = self.output_size
        frames = ffmpeg.input("pipe:0", f="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=repr(self.fps))
        cmd = ffmpeg_cmd(self._video_output(frames, target, faststart=not self._wants_audio), overwrite=True)
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **_POPEN)
        self._stderr = StderrTail(self._proc.stderr)

    def _add_audio(self) -> None:
        """Mux the picture (copied) with the sound into the output, cut to the picture's length."""
        reencode = _webm_audio_codec() if self.ext == ".webm" else {"c:a": "aac", "b:a": "192k"}
        pad = {"af": "apad"}  # silence after a shorter sound; ``-t`` cuts it
        if self._audio is not None:
            sound = _write_wav(*self._audio)
            self._stack.callback(_unlink, sound)
            enc = {**reencode, **pad}
        else:
            dump = inspect_media(self._audio_from)
            if not dump.audio:
                os.replace(self._video_tmp, self._tmp)
                return
            sound = self._audio_from
            enc = {"c:a": "copy"} if dump.audio[0].codec in _COPYABLE.get(self.ext, set()) else {**reencode, **pad}
        duration = self.frames_written / self.fps
        picture, track = ffmpeg.input(str(self._video_tmp)), ffmpeg.input(str(sound))
        out = ffmpeg.output(picture["v:0"], track["a:0"], str(self._tmp), **{"c:v": "copy"}, **enc,
                            t=f"{duration:.6f}", **self._faststart())
        cmd = ffmpeg_cmd(out, overwrite=True)
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, **_POPEN)
        if res.returncode != 0:
            lines = res.stderr.decode("utf-8", "replace").splitlines()
            raise _ffmpeg_failed("ffmpeg failed adding the sound", lines, self.path)

    def close(self) -> Path:
        """Finish the file and move it to ``path``; raises PoseCliError if ffmpeg failed."""
        if self._closed:
            return self.path
        try:
            if self._proc is None:
                raise PoseCliError("no frames to write", self.path)
            self._proc.stdin.close()
            rc = self._proc.wait()
            self._stderr.join()
            if rc != 0:
                raise _ffmpeg_failed("ffmpeg failed", self._stderr.lines, self.path)
            if self._video_tmp is not None:
                self._add_audio()
        except BaseException as exc:
            self.abort(type(exc), exc, exc.__traceback__)
            raise
        self._closed = True
        self._stack.close()  # removes the scratch files, renames the output into place
        return self.path

    def abort(self, exc_type=None, exc=None, tb=None) -> None:
        """Kill ffmpeg and remove the partial file."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            self._stderr.join()
        err = exc if exc is not None else PoseCliError("aborted")
        with contextlib.suppress(type(err)):
            self._stack.__exit__(type(err), err, tb)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.abort()


# What ffmpeg prints (strerror) when it cannot write its output, as errno.
_WRITE_FAILURES = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                   "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES,
                   "File too large": errno.EFBIG}


def _ffmpeg_failed(what: str, lines, path: Path) -> PoseCliError:
    """``OUT: cannot write (disk full)`` when ffmpeg's stderr says so (its last line is often
    only "Nothing was written into output file"), else ``OUT: WHAT: <ffmpeg's last message>``."""
    text = "\n".join(lines)
    for needle, code in _WRITE_FAILURES.items():
        if needle in text:
            return write_error(path, OSError(code, needle))
    return PoseCliError(f"{what}: {last_message(lines)}", path)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _check_audio(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Validate generated sound: float samples (n,) or (n, 1|2) and a positive rate."""
    a = np.asarray(samples, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[1] not in (1, 2) or a.shape[0] == 0:
        raise UsageError(f"audio must be (n,) or (n, 1|2) samples, got shape {np.shape(samples)}")
    if int(rate) <= 0:
        raise UsageError(f"audio sample rate must be positive, got {rate}")
    return a, int(rate)


def _write_wav(samples: np.ndarray, rate: int) -> Path:
    """(n, channels) float samples in [-1, 1] -> a temporary int16 WAV file."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    fd, name = tempfile.mkstemp(prefix="posecli-audio-", suffix=".wav")
    os.close(fd)
    with wave.open(name, "wb") as wf:
        wf.setnchannels(samples.shape[1])
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm.tobytes())
    return Path(name)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, **kw) -> Path:
    """Write an iterable of frames (or batches) with ``VideoWriter``; returns the path."""
    with VideoWriter(path, fps=fps, **kw) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path
