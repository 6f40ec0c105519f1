"""Atomic output files: write beside the target, then rename.

Every writer in posecli goes through ``atomic_path`` so that an error or Ctrl-C
never leaves a half-written file at a user's output path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError, OutputWriteError

# OSError numbers that mean "this output cannot be written", and how they are told.
WRITE_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "permission denied: read-only file system",
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk full: quota exceeded",
    errno.EFBIG: "file too large for this file system",
}
MIN_FREE_BYTES = 1 << 20  # less than this free where an output goes counts as a full disk

_TEMPS: dict[str, Path] = {}  # temporary path -> the user's output path, while a write is under way
# atomic_path's and VideoWriter's temporary names: .STEM.XXXXXXXX.part.EXT, .STEM.XXXXXXXX.video.EXT
_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.[A-Za-z0-9_]{8}\.(?:part|video)(?P<ext>\.[^.]*)?$")


def user_path(filename: str | os.PathLike | None) -> str | None:
    """The user's output path for one of our temporary files (else ``filename`` itself)."""
    if filename is None:
        return None
    name = os.fspath(filename)
    for tmp, target in list(_TEMPS.items()):
        if name == tmp or name.startswith(tmp + os.sep):
            return str(target)
    m = _TEMP_NAME.match(os.path.basename(name))
    if m:
        return os.path.join(os.path.dirname(name), m["stem"] + (m["ext"] or ""))
    return name


def write_error(path: str | Path, exc: OSError) -> OutputWriteError | None:
    """``PATH: cannot write (permission denied | disk full)`` for an OSError that means so, else None."""
    reason = WRITE_ERRNOS.get(getattr(exc, "errno", None))
    return None if reason is None else OutputWriteError(f"cannot write ({reason})", user_path(path))


@contextlib.contextmanager
def temp_for(tmp: str | Path, target: str | Path) -> Iterator[None]:
    """While the block runs, errors about ``tmp`` (a file or a folder and what is in it)
    name ``target``, the user's output."""
    key = os.fspath(tmp)
    _TEMPS[key] = Path(target)
    try:
        yield
    finally:
        _TEMPS.pop(key, None)


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder_writable(folder: str | Path, target: str | Path | None = None) -> None:
    """Before long work: can files be created where ``folder`` is (or will be), and is there
    room? Raises OutputWriteError naming ``target`` (default ``folder``)."""
    target = folder if target is None else target
    where = _existing_ancestor(Path(folder))
    if where.is_file():
        return  # a file in the way: the writer's own message says so
    try:
        with tempfile.TemporaryFile(prefix=".posecli-probe-", dir=where):
            pass
    except OSError as e:
        err = write_error(target, e)
        if err is None:
            raise
        raise err from None
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return
    if free < MIN_FREE_BYTES:
        raise OutputWriteError(f"cannot write (disk full: {free // 1024} KiB free in {where})", target)


def check_writable(path: str | Path, overwrite: bool = False, probe: bool = True) -> Path:
    """Refuse an existing output unless ``overwrite``; with ``probe`` also refuse, before
    any work, a folder where it cannot be written (read-only, full disk). Returns the path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    if probe:
        check_folder_writable(path.parent, path)
    return path


@contextlib.contextmanager
def write_errors(path: str | Path, *temps: str | Path) -> Iterator[None]:
    """Turn an OSError that means "cannot write" into OutputWriteError naming ``path``.

    Only errors about ``path``, one of ``temps`` or a file beside them (or with no
    file name) are taken to be about this output; others pass unchanged.
    """
    try:
        yield
    except OSError as e:
        if isinstance(e, OutputWriteError):  # pragma: no cover - PoseCliError is no OSError
            raise
        err = write_error(path, e)
        if err is None:
            raise
        if e.filename is not None:
            mine = {os.path.abspath(p) for p in (path, *temps)}
            name = os.path.abspath(e.filename)
            if name not in mine and os.path.dirname(name) not in {os.path.dirname(m) for m in mine} | mine:
                raise
        raise err from None


@contextlib.contextmanager
def new_folder(path: str | Path) -> Iterator[Path]:
    """A folder this run may create: if the run fails and the folder it created is
    empty, it is removed (no empty folder left behind by a failed write)."""
    path = Path(path)
    created = [] if path.exists() else [p for p in [path, *path.parents] if not p.exists()]
    try:
        yield path
    except BaseException:
        for p in created:  # innermost first
            with contextlib.suppress(OSError):
                p.rmdir()  # only when empty
        raise


def make_folder(path: str | Path) -> Path:
    """mkdir -p with write errors told as OutputWriteError."""
    path = Path(path)
    with write_errors(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def umask_mode(kind: str = "file") -> int:
    """The mode the user's umask gives a new file (0o666 & ~umask) or folder (0o777 & ~umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if kind == "folder" else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder with the target's suffix.

    On success it is renamed over ``path``; on any exception (KeyboardInterrupt
    too) it is removed. The suffix is kept because cv2 and ffmpeg choose the
    format from it.
    """
    path = Path(path)
    check_writable(path, overwrite, probe=False)  # creating the temporary file is the probe
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _TEMPS[tmp] = path
    try:
        with write_errors(path, tmp_path):
            yield tmp_path
            if path.exists() and not overwrite:  # appeared while we worked
                raise OutputExistsError(path)
            # mkstemp makes 0600, and some writers (safetensors) recreate the file as 0600:
            # the finished file gets the user's usual mode
            os.chmod(tmp_path, umask_mode("file"))
            os.replace(tmp_path, path)
    finally:
        _TEMPS.pop(tmp, None)
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_bytes_atomic(path: str | Path, data: bytes, overwrite: bool = False) -> Path:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def file_sha256(path) -> str | None:
    """SHA-256 of a file's bytes (None when there is no such file): how a file is recognised on any
    machine (eval's parts, a model's --init source)."""
    import hashlib

    if path is None or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
