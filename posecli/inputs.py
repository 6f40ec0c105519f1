"""Inputs as users give them: a file, a folder, a quoted glob, or '-' for stdin."""

from __future__ import annotations

import glob
from pathlib import Path

from .errors import InputError

# .gif is both: where an image is expected its first frame is the image (with a notice
# when it has more, media.images.decode_image_bytes); animate --video plays it.
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")


def is_video_only(path: str | Path) -> bool:
    """A video type that is not also read as an image (.gif is both)."""
    ext = Path(path).suffix.lower()
    return ext in VIDEO_EXTS and ext not in IMAGE_EXTS

STDIN = "-"


def has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def glob_matches(spec: str, folders: bool = False) -> list[str]:
    """A quoted glob's matches, sorted (``**`` recurses): files, and folders too with
    ``folders``. Raises InputError when nothing matches."""
    found = sorted(f for f in glob.glob(spec, recursive=True) if folders or Path(f).is_file())
    if not found:
        raise InputError("glob matches no file or folder" if folders else "glob matches no file", spec)
    return found


def expand_inputs(specs: list[str] | str, exts: tuple[str, ...] = IMAGE_EXTS, recursive: bool = False,
                  allow_stdin: bool = True) -> list[str]:
    """Each spec is a file, a folder (its files with ``exts``, sorted) or a glob.

    A folder with no such file at its top but some in its subfolders (a dataset root,
    DATA/<identity>/<image>, as ``train`` reads it) gives those, hidden folders left out.

    Returns paths as strings in the order given ('-' kept as is). Raises InputError
    for a missing path, a folder with no matching file, or a glob that matches nothing.
    """
    if isinstance(specs, str):
        specs = [specs]
    out: list[str] = []
    for spec in specs:
        if spec == STDIN:
            if not allow_stdin:
                raise InputError("'-' (stdin) is not accepted here")
            out.append(spec)
            continue
        p = Path(spec)
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(f for f in p.glob(pattern) if f.is_file())
            found = [str(f) for f in files if f.suffix.lower() in exts]
            if not found and not recursive:  # a dataset root, DATA/<identity>/<image>: read as train reads it
                files = sorted(f for f in p.glob("*/**/*") if f.is_file()
                               and not any(part.startswith(".") for part in f.relative_to(p).parts))
                found = [str(f) for f in files if f.suffix.lower() in exts]
            if not found:
                raise InputError(f"folder has no files of type {', '.join(exts)}", p)
            _note_skipped(p, [f for f in files if f.suffix.lower() not in exts and not f.name.startswith(".")], exts)
            out.extend(found)
        elif p.exists():
            out.append(str(p))
        elif has_magic(spec):
            out.extend(glob_matches(spec))
        else:
            raise InputError("no such file or folder", p)
    return out


def _note_skipped(folder: Path, skipped: list[Path], exts: tuple[str, ...]) -> None:
    """One notice naming the files of a folder input that are not of the types read."""
    if not skipped:
        return
    import logging

    names = ", ".join(f.relative_to(folder).as_posix() for f in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    logging.getLogger("posecli").warning(
        f"{folder}: skipped {len(skipped)} file(s) not of type {', '.join(e[1:] for e in exts)}: {names}")
