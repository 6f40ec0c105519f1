"""Finding ffmpeg and reading what it says about an input file.

posecli needs only the ``ffmpeg`` binary: the system one when it is on PATH,
else the static build inside the imageio-ffmpeg wheel. That wheel has no
``ffprobe``, so probing parses the stream dump ffmpeg prints on stderr for
``-i FILE`` (see ``parse_input_dump``) and counts packets with a stream copy.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import InputError, PoseCliError


@functools.lru_cache(maxsize=None)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``ffmpeg`` on PATH, else imageio-ffmpeg's."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise PoseCliError(
            f"ffmpeg not found: install it on PATH or `pip install imageio-ffmpeg` ({exc})"
        ) from None


@functools.lru_cache(maxsize=None)
def ffmpeg_version() -> tuple[int, int]:
    """(major, minor) of the binary; git builds without a number count as new."""
    out = _run_text([ffmpeg_exe(), "-hide_banner", "-version"])
    m = re.search(r"ffmpeg version n?(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)


@functools.lru_cache(maxsize=None)
def encoders() -> frozenset[str]:
    """Names of the encoders this ffmpeg build has (libx264, libvpx-vp9, ...)."""
    out = _run_text([ffmpeg_exe(), "-hide_banner", "-encoders"])
    names = re.findall(r"^\s[VAS][A-Z.]{5}\s+(\S+)", out, flags=re.M)
    return frozenset(names)


def has_encoder(name: str) -> bool:
    return name in encoders()


def passthrough_args() -> list[str]:
    """Options that emit every decoded frame once (no duplication to a constant rate)."""
    return ["-fps_mode", "passthrough"] if ffmpeg_version() >= (5, 1) else ["-vsync", "0"]


def passthrough_kwargs() -> dict:
    """``passthrough_args`` as ffmpeg-python output options."""
    flag, value = passthrough_args()
    return {flag[1:]: value}


def ffmpeg_cmd(stream, *, overwrite: bool = False) -> list[str]:
    """The command line of an ffmpeg-python graph, run by posecli's own process handling.

    ffmpeg-python (a command builder) lays out inputs, outputs, options and filter
    graphs; the binary is ``ffmpeg_exe()`` and the global options come first: no
    banner, errors only, and ``-nostdin`` always (ffmpeg would otherwise read the
    terminal, eating the input of a user's ``while read`` loop).
    """
    import ffmpeg

    base = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"] + (["-y"] if overwrite else [])
    return ffmpeg.compile(stream, cmd=base)


def _run_text(cmd: list[str]) -> str:
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    return res.stdout.decode("utf-8", "replace") + res.stderr.decode("utf-8", "replace")


# -- reading ffmpeg's stderr ---------------------------------------------------

_PREFIX = re.compile(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+")


class StderrTail:
    """Drains a process's stderr in a thread (a full pipe would block ffmpeg)
    and keeps the last lines for error messages."""

    def __init__(self, stream: IO[bytes], keep: int = 40):
        self.lines: deque[str] = deque(maxlen=keep)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    self.lines.append(line)
        except (OSError, ValueError):  # pipe closed under us by kill()
            pass

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def last_line(self) -> str:
        return last_message(self.lines)


def last_message(lines) -> str:
    """The last meaningful stderr line, without ``[h264 @ 0x..]`` prefixes."""
    for line in reversed(list(lines)):
        if line.startswith("Last message repeated") or line.startswith("Conversion failed"):
            continue
        return _PREFIX.sub("", line).strip() or line
    return "no message from ffmpeg"


# -- parsing the ``-i FILE`` stream dump ----------------------------------------


@dataclass(frozen=True)
class StreamDump:
    """One stream as printed by ffmpeg: ``kind`` is 'Video', 'Audio', ..."""

    index: int
    kind: str
    codec: str
    width: int = 0
    height: int = 0
    fps: float = 0.0
    rotation: float = 0.0  # display-matrix convention: degrees counter-clockwise
    attached_pic: bool = False


@dataclass(frozen=True)
class InputDump:
    duration: float | None
    streams: tuple[StreamDump, ...]

    @property
    def video(self) -> list[StreamDump]:
        """Real video streams (cover art / attached pictures excluded), as ffmpeg's ``V``."""
        return [s for s in self.streams if s.kind == "Video" and not s.attached_pic]

    @property
    def audio(self) -> list[StreamDump]:
        return [s for s in self.streams if s.kind == "Audio"]


_STREAM = re.compile(r"^\s*Stream #0:(\d+)\S*: (\w+): ([^\s,]+)(.*)$")
_DURATION = re.compile(r"^\s*Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_SIZE = re.compile(r", (\d+)x(\d+)(?=[\s,\[]|$)")
_FPS = re.compile(r", (\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_MATRIX = re.compile(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees", re.I)
_ROTATE_TAG = re.compile(r"^\s*rotate\s*: (-?\d+(?:\.\d+)?)\s*$")


def parse_input_dump(text: str) -> InputDump:
    """Parse ffmpeg's ``Input #0`` dump (stderr of ``ffmpeg -i FILE``).

    Rotation comes from the display-matrix side data (``Display Matrix:`` in
    ffmpeg >= 7, ``displaymatrix:`` before) or, from old builds, the ``rotate``
    tag, which counts clockwise and so is negated.
    """
    duration = None
    streams: list[dict] = []
    in_input = False
    for line in text.splitlines():
        if line.startswith("Input #0"):
            in_input = True
            continue
        if line.startswith(("Output #", "Stream mapping", "Input #1")):
            in_input = False
        if not in_input:
            continue
        if m := _DURATION.match(line):
            h, mi, s = m.groups()
            duration = int(h) * 3600 + int(mi) * 60 + float(s)
        elif m := _STREAM.match(line):
            idx, kind, codec, rest = m.groups()
            st = {"index": int(idx), "kind": kind, "codec": codec, "attached_pic": "(attached pic)" in rest}
            if kind == "Video":
                if sm := _SIZE.search(rest):
                    st["width"], st["height"] = int(sm.group(1)), int(sm.group(2))
                rates = {unit: float(v) * (1000 if k else 1) for v, k, unit in _FPS.findall(rest)}
                st["fps"] = rates.get("fps") or rates.get("tbr") or 0.0
            streams.append(st)
        elif streams and (m := _MATRIX.search(line)):
            streams[-1]["rotation"] = float(m.group(1))
            streams[-1]["matrix"] = True
        elif streams and (m := _ROTATE_TAG.match(line)) and not streams[-1].get("matrix"):
            streams[-1]["rotation"] = -float(m.group(1))
    out = []
    for st in streams:
        st.pop("matrix", None)
        rot = st.get("rotation", 0.0) % 360.0
        st["rotation"] = rot - 360.0 if rot > 180.0 else rot  # normalise to (-180, 180]
        out.append(StreamDump(**st))
    return InputDump(duration=duration, streams=tuple(out))


def input_error_line(text: str) -> str:
    """Why ffmpeg could not open an input (its last non-dump line)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith("At least one output file")]
    return last_message(useful)


# -- probing --------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    width: int  # displayed size: after the rotation ffmpeg applies on decode
    height: int
    fps: float
    frame_count: int
    duration: float  # seconds
    has_audio: bool
    rotation: float  # degrees counter-clockwise (display matrix), in (-180, 180]


def check_media_file(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a folder, not a media file", path)


def _dump(path: Path, extra: list[str]) -> tuple[InputDump, subprocess.CompletedProcess]:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), *extra]
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    text = res.stderr.decode("utf-8", "replace")
    if "Input #0" not in text:
        raise InputError(f"not a media file ({input_error_line(text)})", path)
    return parse_input_dump(text), res


def inspect_media(path: str | Path) -> InputDump:
    """Streams of any media file (header only, nothing decoded)."""
    path = Path(path)
    check_media_file(path)
    return _dump(path, [])[0]


def probe_video(path: str | Path) -> VideoInfo:
    """Size, rate, frame count and audio of a video, with ffmpeg alone (no ffprobe).

    The frame count is the number of video packets (a stream copy to the null
    muxer, which reads but does not decode): exact for the usual codecs.
    """
    path = Path(path)
    check_media_file(path)
    count_args = ["-map", "0:V:0?", "-an", "-sn", "-dn", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
    dump, res = _dump(path, count_args)
    if not dump.video:
        raise InputError("no video stream", path)
    frames = [int(v) for v in _progress_values(res.stdout, "frame")]
    count = frames[-1] if frames else 0
    if res.returncode != 0 and count == 0:
        raise InputError(f"cannot read video ({input_error_line(res.stderr.decode('utf-8', 'replace'))})", path)
    if count == 0:
        raise InputError("video has no frames", path)
    v = dump.video[0]
    swap = round(abs(v.rotation)) % 180 == 90
    width, height = (v.height, v.width) if swap else (v.width, v.height)
    fps = v.fps or 25.0  # images-as-video and some raw streams state no rate
    duration = dump.duration if dump.duration else count / fps
    return VideoInfo(width, height, float(fps), count, float(duration), bool(dump.audio), v.rotation)


def _progress_values(stdout: bytes, key: str) -> list[str]:
    prefix = f"{key}="
    return [ln[len(prefix):].strip() for ln in stdout.decode("ascii", "replace").splitlines() if ln.startswith(prefix)]
