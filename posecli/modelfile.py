"""Model files: one .safetensors file, tensors plus one JSON metadata string.

Loading never unpickles: ``safetensors.safe_open`` validates the header (length,
JSON, dtypes, offsets against the file's size) and each refusal becomes a clear
one-line error; the metadata is checked against the tensors' shapes before any
tensor is read, all through one open of the file.

Metadata (key "posecli" in the safetensors header):
    format_version, method, image_size, identity_dim, pose_dim,
    config (the method's architecture dataclass), training (summary), posecli_version
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path

from . import __version__
from .errors import ModelFileError, UsageError
from .fileio import atomic_path

FORMAT_VERSION = 1
META_KEY = "posecli"
SUFFIX = ".safetensors"
MAX_HEADER = 100 * 1024 * 1024
DIMS = ("image_size", "identity_dim", "pose_dim")  # in the metadata, and properties of every PoseModel


def bundled_dir() -> Path:
    return Path(os.environ.get("POSECLI_WEIGHTS", Path(__file__).resolve().parent.parent / "weights"))


def user_dir() -> Path:
    from platformdirs import PlatformDirs

    return Path(PlatformDirs("posecli", appauthor=False).user_data_path) / "models"


def search_dirs() -> list[Path]:
    """Where model names resolve: the user's data folder first, then the bundled weights."""
    return [user_dir(), bundled_dir()]


def resolve_model(name_or_path: str) -> Path:
    """A path to an existing file, or a NAME found in search_dirs()."""
    p = Path(name_or_path)
    # p.is_file(), not p.exists(): `-m faces` run beside a data folder faces/ means the model
    if p.suffix == SUFFIX or os.sep in name_or_path or p.is_file():
        if p.is_dir():
            raise ModelFileError("is a folder, expected a .safetensors model file", p)
        if not p.exists():
            raise ModelFileError("no such model file", p)
        return p
    for d in search_dirs():
        cand = d / f"{name_or_path}{SUFFIX}"
        if cand.is_file():
            return cand
    names = ", ".join(m["name"] for m in list_models()) or "none"
    raise ModelFileError(f"no model named {name_or_path!r} (available: {names}; or pass a path)")


_BAD_LENGTH = "not a safetensors model file (bad header length; truncated or another format)"


@contextlib.contextmanager
def open_model_file(path: str | Path):
    """``safetensors.safe_open`` on the file (which validates the header: its length, JSON,
    dtypes, shapes and offsets against the file size), its errors as one-line ModelFileErrors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        handle = safe_open(str(path), "pt")
    except SafetensorError as e:
        raise _header_error(path, str(e)) from None
    except OSError as e:
        raise ModelFileError(f"cannot read: {e.strerror or e}", path) from None
    with handle as f:
        yield f


def _header_error(path: Path, reason: str) -> ModelFileError:
    """safe_open's refusal as today's one-line message (the raw header is read only on this path,
    to say which part is wrong)."""
    reason = reason.split("header: ", 1)[-1].strip()
    if "header too small" in reason:
        return ModelFileError("not a safetensors model file (too short)", path)
    if "header too large" in reason or "invalid header length" in reason:
        return ModelFileError(_BAD_LENGTH, path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            raw = f.read(min(n, MAX_HEADER))
    except (OSError, struct.error):
        return ModelFileError(f"not a safetensors model file ({reason})", path)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ModelFileError("not a safetensors model file (header is not JSON)", path)
    if not isinstance(header, dict):
        return ModelFileError("not a safetensors model file (header is not an object)", path)
    md = header.get("__metadata__")
    if md is not None and not isinstance(md, dict):
        return ModelFileError("a safetensors file without posecli metadata (not a posecli model)", path)
    if isinstance(md, dict) and META_KEY in md and not isinstance(md[META_KEY], str):
        return ModelFileError("posecli metadata is not valid JSON", path)
    if "not fully covered" in reason or "incomplete metadata" in reason:
        try:
            end = max([int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"] or [0])
            return ModelFileError(f"truncated: {size} bytes, the header promises {8 + n + end}", path)
        except (TypeError, KeyError, IndexError, ValueError):
            pass
    bad = [k for k, v in header.items() if k != "__metadata__" and not isinstance(v, dict)]
    if bad:
        return ModelFileError(f"corrupt header entry for tensor {bad[0]!r}", path)
    import re

    dtype = re.search(r"unknown variant `([^`]*)`", reason)
    if dtype:
        bad = [k for k, v in header.items() if k != "__metadata__" and v.get("dtype") == dtype.group(1)]
        return ModelFileError(f"corrupt safetensors header (tensor {bad[0] if bad else '?'!r} has unknown type "
                              f"{dtype.group(1)!r})", path)
    return ModelFileError(f"corrupt safetensors header ({reason})", path)


def read_header(path: str | Path) -> dict:
    """The header as safetensors validates it: ``__metadata__`` and, per tensor, its dtype
    and shape; raises ModelFileError."""
    with open_model_file(path) as f:
        header: dict = {"__metadata__": f.metadata() or {}}
        for k in f.keys():
            sl = f.get_slice(k)
            header[k] = {"dtype": sl.get_dtype(), "shape": list(sl.get_shape())}
    return header


def read_metadata(path: str | Path) -> dict:
    """posecli's metadata of a model file, checked for format version and method."""
    with open_model_file(path) as f:
        return _metadata_of(f, Path(path))


def _metadata_of(f, path: Path) -> dict:
    """The checked metadata of an open file (see read_metadata)."""
    from .models import MODEL_REGISTRY

    md = f.metadata()
    raw = md.get(META_KEY) if isinstance(md, dict) else None
    if raw is None:
        raise ModelFileError("a safetensors file without posecli metadata (not a posecli model)", path)
    try:
        meta = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise ModelFileError("posecli metadata is not valid JSON", path) from None
    if not isinstance(meta, dict):
        raise ModelFileError("posecli metadata is not a JSON object", path)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(f"model format version {version!r} is not supported by posecli {__version__} "
                             f"(supported: {FORMAT_VERSION}); upgrade posecli or re-train", path)
    if meta.get("method") not in MODEL_REGISTRY:
        raise ModelFileError(f"unknown method {meta.get('method')!r} (known: {', '.join(sorted(MODEL_REGISTRY))})", path)
    missing = [k for k in ("image_size", "identity_dim", "pose_dim", "config") if k not in meta]
    if missing:  # `posecli models` and load_model read these
        raise ModelFileError(f"posecli metadata lacks {', '.join(missing)}", path)
    if not isinstance(meta["config"], dict):
        raise ModelFileError("bad architecture config: not a JSON object", path)
    return meta


def save_model(path: str | Path, model, training: dict | None = None, overwrite: bool = False,
               half: bool = False) -> Path:
    """Write ``model`` (a PoseModel) atomically; ``half`` stores floats as fp16."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != SUFFIX:
        raise UsageError(f"model files end in {SUFFIX}", path)
    meta = {
        "format_version": FORMAT_VERSION,
        "method": model.method,
        "image_size": model.image_size,
        "identity_dim": model.identity_dim,
        "pose_dim": model.pose_dim,
        "config": model.config_dict(),
        "training": training or {},
        "posecli_version": __version__,
        "dtype": "float16" if half else "float32",
    }
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v.contiguous()
    with atomic_path(path, overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


def load_model(name_or_path: str | Path, device="cpu"):
    """A PoseModel in eval mode, fp32, on ``device``; ``.meta`` holds the metadata.

    The file is opened once: its metadata is checked, the architecture built from it,
    each tensor's shape compared with the architecture's (and the metadata's image_size,
    identity_dim and pose_dim with the architecture's) before any tensor is read.
    """
    from safetensors import SafetensorError

    from .models import model_class

    path = resolve_model(str(name_or_path))
    with open_model_file(path) as f:
        meta = _metadata_of(f, path)
        cls = model_class(meta["method"])
        try:
            model = cls.from_config_dict(meta["config"])
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"bad architecture config: {e}", path) from None
        for k in DIMS:
            if meta[k] != getattr(model, k):
                raise ModelFileError(f"metadata says {k} {meta[k]!r}, its architecture gives {getattr(model, k)!r}",
                                     path)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        keys = list(f.keys())
        for k in keys:
            shape = tuple(f.get_slice(k).get_shape())
            if k in expected and shape != expected[k]:
                raise ModelFileError(f"tensors do not match the architecture in its metadata: {k} has shape "
                                     f"{list(shape)}, the metadata's {meta['method']} config gives "
                                     f"{list(expected[k])}", path)
        missing = [k for k in expected if k not in keys and k not in model.optional_state]
        unexpected = [k for k in keys if k not in expected]
        if missing or unexpected:
            raise ModelFileError(f"tensors do not match the {meta['method']} architecture "
                                 f"(missing {len(missing)}, unexpected {len(unexpected)})", path)
        try:
            state = {k: f.get_tensor(k) for k in keys}
        except (SafetensorError, OSError) as e:
            raise ModelFileError(f"cannot read tensors: {e}", path) from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=False)  # names and shapes checked above
    model.meta = meta
    model.path = path
    return model.to(device).eval().requires_grad_(False)


def load_model_or_default(name: str | None, default: str, device="cpu"):
    """load_model(name); with no name, the default model, or an error that says how to get one."""
    if name is None:
        try:
            resolve_model(default)
        except ModelFileError:
            raise ModelFileError(
                f"no -m given and the default model {default!r} is not installed (looked in "
                f"{', '.join(str(d) for d in search_dirs())}); train one with `posecli train`, list what you have "
                f"with `posecli models`, then pass -m NAME_OR_FILE") from None
        name = default
    return load_model(name, device)


def list_models() -> list[dict]:
    """Every model file in search_dirs(), with its metadata (or the error)."""
    seen, out = set(), []
    for d in search_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.glob(f"*{SUFFIX}")):
            if f.stem in seen:
                continue  # shadowed by the user's model of the same name
            seen.add(f.stem)
            entry = {"name": f.stem, "path": str(f), "size_bytes": f.stat().st_size}
            try:
                entry["meta"] = read_metadata(f)
            except ModelFileError as e:
                entry["error"] = str(e)
            out.append(entry)
    return out
