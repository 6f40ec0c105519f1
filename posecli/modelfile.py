"""Model files: one .safetensors file, tensors plus one JSON metadata string.

Loading never unpickles: the header is validated by hand first so that a
truncated or foreign file gets a clear one-line error, then safetensors reads
the tensors.

Metadata (key "posecli" in the safetensors header):
    format_version, method, image_size, identity_dim, pose_dim,
    config (the method's architecture dataclass), training (summary), posecli_version
"""

from __future__ import annotations

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


def read_header(path: str | Path) -> dict:
    """The safetensors JSON header, validated; raises ModelFileError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelFileError("not a safetensors model file (too short)", path)
            (n,) = struct.unpack("<Q", head)
            if n <= 1 or n > min(MAX_HEADER, size - 8):
                raise ModelFileError("not a safetensors model file (bad header length; truncated or another format)", path)
            raw = f.read(n)
    except OSError as e:
        raise ModelFileError(f"cannot read: {e.strerror}", path) from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError("not a safetensors model file (header is not JSON)", path) from None
    if not isinstance(header, dict):
        raise ModelFileError("not a safetensors model file (header is not an object)", path)
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise ModelFileError(f"corrupt header entry for tensor {name!r}", path) from None
    if 8 + n + end > size:
        raise ModelFileError(f"truncated: {size} bytes, the header promises {8 + n + end}", path)
    return header


def read_metadata(path: str | Path) -> dict:
    """posecli's metadata of a model file, checked for format version and method."""
    from .models import MODEL_REGISTRY

    header = read_header(path)
    md = header.get("__metadata__")
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
    """A PoseModel in eval mode, fp32, on ``device``; ``.meta`` holds the metadata."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models import model_class

    path = resolve_model(str(name_or_path))
    meta = read_metadata(path)
    cls = model_class(meta["method"])
    try:
        model = cls.from_config_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"bad architecture config: {e}", path) from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ModelFileError(f"cannot read tensors: {e}", path) from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).strip().splitlines()[-1].strip()
        raise ModelFileError(f"tensors do not match the architecture in its metadata: {first}", path) from None
    missing = [k for k in missing if k not in model.optional_state]
    if missing or unexpected:
        raise ModelFileError(f"tensors do not match the {meta['method']} architecture "
                             f"(missing {len(missing)}, unexpected {len(unexpected)})", path)
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
