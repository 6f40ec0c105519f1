"""Inputs as users give them: a file, a folder, a quoted glob, or '-' for stdin."""

from __future__ import annotations

import glob
from pathlib import Path

from .errors import InputError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")

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
            found = sorted(str(f) for f in p.glob(pattern) if f.is_file() and f.suffix.lower() in exts)
            if not found:
                raise InputError(f"folder has no files of type {', '.join(exts)}", p)
            out.extend(found)
        elif p.exists():
            out.append(str(p))
        elif has_magic(spec):
            out.extend(glob_matches(spec))
        else:
            raise InputError("no such file or folder", p)
    return out
