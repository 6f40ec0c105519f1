"""Training data: folders (a subfolder per identity), videos (a video, or a clip, per
identity) and CSV manifests (path,identity), decoded once into a uint8 array.

The decoded set is cached (keyed by the sources' paths, sizes and mtimes and the
preparation options) so a re-run does not decode again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, PoseCliError, UsageError
from ..inputs import IMAGE_EXTS, VIDEO_EXTS, glob_matches, has_magic

log = logging.getLogger("posecli")
CACHE_VERSION = 2  # 2: clip and frame indices


@dataclass
class Source:
    path: str
    identity: str
    kind: str  # "image" or "video"


@dataclass
class ImageSet:
    images: np.ndarray  # (N, S, S, 3) uint8
    labels: np.ndarray  # (N,) int64 index into names
    names: list[str]  # identity names
    paths: list[str]  # where each image came from ("video.mp4#frame")
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    clips: np.ndarray | None = None  # (N,) int64 index of the video clip of each frame, -1 for stills
    frames: np.ndarray | None = None  # (N,) int64 frame index within its clip, -1 for stills

    def __post_init__(self):
        if self.clips is None:
            self.clips = np.full(len(self.images), -1, np.int64)
        if self.frames is None:
            self.frames = np.full(len(self.images), -1, np.int64)

    def __len__(self) -> int:
        return len(self.images)


def check_synth_complete(folder: Path) -> None:
    """Refuse a ``posecli synth`` output whose synth.json says it was not finished
    (interrupted, or its disk filled): half a dataset would train without a word."""
    marker = folder / "synth.json"
    if not marker.is_file():
        return
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(info, dict) and info.get("complete") is False:
        kind = info.get("kind", "KIND")
        raise InputError(f"an incomplete posecli synth output (synth.json: \"complete\": false; the run was stopped "
                         f"before the end): run `posecli synth {kind} {folder} ... --overwrite` again with the "
                         "same options to finish it", folder)


def _from_folder(root: Path) -> list[Source]:
    """Identity subfolders of images, else the folder's videos (one identity each)."""
    check_synth_complete(root)
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    out = []
    for d in subdirs:
        files = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        out += [Source(str(f), d.name, "image") for f in files]
    if not out:
        out = [Source(str(f), f.stem, "video") for f in sorted(root.iterdir())
               if f.is_file() and f.suffix.lower() in VIDEO_EXTS and not f.name.startswith(".")]
    if not out:  # a flat folder of images: one identity, the folder's (for methods without labels)
        out = [Source(str(f), root.resolve().name, "image") for f in sorted(root.iterdir())
               if f.is_file() and f.suffix.lower() in IMAGE_EXTS and not f.name.startswith(".")]
    if not out:
        raise InputError("no identity subfolders with images (expected DATA/<identity>/<image>), "
                         "no videos (one identity each) and no images", root)
    return out


def _from_manifest(path: Path) -> list[Source]:
    check_synth_complete(path.parent)  # a synth output's labels.csv
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read manifest: {e}", path) from None
    if not rows or "path" not in rows[0]:
        raise InputError("manifest needs the column path (and identity, for methods that use labels)", path)
    out = []
    for r in rows:
        p = Path(r["path"])
        p = p if p.is_absolute() else path.parent / p
        kind = "video" if p.suffix.lower() in VIDEO_EXTS else "image"
        out.append(Source(str(p), str(r.get("identity") or path.stem), kind))  # no identity: one, the manifest's
    return out


def collect_sources(specs: list[str]) -> list[Source]:
    """Each spec is a dataset folder, a video, a CSV manifest, an image (its identity is the
    name of its folder, as in DATA/<identity>/<image>) or a quoted glob of these."""
    out: list[Source] = []
    for spec in specs:
        p = Path(spec)
        if not p.exists() and has_magic(spec):  # a quoted glob: each match as if given alone
            out += collect_sources(glob_matches(spec, folders=True))
            continue
        if not p.exists():
            raise InputError("no such file or folder", p)
        if p.is_dir():
            out += _from_folder(p)
        elif p.suffix.lower() == ".csv":
            out += _from_manifest(p)
        elif p.suffix.lower() in VIDEO_EXTS:
            out.append(Source(str(p), p.stem, "video"))
        elif p.suffix.lower() in IMAGE_EXTS:
            out.append(Source(str(p), p.resolve().parent.name, "image"))
        else:
            raise InputError("expected a folder of identity subfolders, a video, an image or a .csv manifest", p)
    return out


SIZES = (32, 64, 128)  # the image sizes the models are built for
DEFAULT_SIZE = 64


def infer_size(specs: list[str], sample: int = 16) -> tuple[int, str]:
    """``train``'s --size when not given: 64, or the largest model size that does not upscale
    the data when its images are smaller (32-px data train at 32, not upscaled to 64).

    Reads only the headers of up to ``sample`` images (or videos) spread over the data.
    Returns (size, reason for the notice). Unreadable files are left to the loader.
    """
    sources = collect_sources(specs)
    step = max(1, len(sources) // sample)
    sides = []
    for src in sources[::step][:sample]:
        try:
            if src.kind == "image":
                from PIL import Image

                with Image.open(src.path) as im:
                    sides.append(min(im.size))
            else:
                from ..media.ffmpeg_bin import inspect_media

                v = inspect_media(src.path).video
                if v and v[0].width and v[0].height:
                    sides.append(min(v[0].width, v[0].height))
        except Exception:  # the loader reports (or skips) what it cannot read
            continue
    if not sides:
        return DEFAULT_SIZE, "the default"
    side = min(sides)
    fitting = [s for s in SIZES if s <= min(side, DEFAULT_SIZE)]
    size = max(fitting) if fitting else SIZES[0]
    return size, f"from the data: its smallest side is {side} px"


def _cache_key(sources: list[Source], size: int, crop: str, fps: float, clip_seconds: float) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([CACHE_VERSION, size, crop, fps, clip_seconds]).encode())
    for s in sources:
        try:
            st = Path(s.path).stat()
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = (-1, -1)
        h.update(json.dumps([s.path, s.identity, s.kind, *stamp]).encode())
    return h.hexdigest()[:16]


def _video_frames(src: Source, size: int, crop: str, fps: float, clip_seconds: float, misses: list[str]):
    """(identity, frame, name, clip number, frame in clip) for each sampled frame; clips
    become identities of their own."""
    from ..media.video import VideoReader
    from ..regions import crop_for_model

    with VideoReader(src.path, fps=fps) as reader:
        per_clip = int(round(clip_seconds * fps)) if clip_seconds > 0 else 0
        n = 0
        for i, frame in enumerate(reader):
            clip, in_clip = divmod(i, per_clip) if per_clip else (0, i)
            ident = f"{src.identity}_clip{clip:03d}" if per_clip else src.identity
            yield ident, crop_for_model(frame, size, crop, f"{src.path}#{i}", misses), f"{src.path}#{i}", clip, in_clip
            n += 1
    if n == 0:
        raise InputError("video yields no frames", src.path)


def load_image_set(specs: list[str], size: int = 64, crop: str = "center", fps: float = 5.0,
                   clip_seconds: float = 0.0, strict: bool = False, cache_dir: Path | None = None,
                   quiet: bool = False) -> ImageSet:
    """Decode, crop and resize every training image; unreadable files are skipped
    (listed in ``skipped`` and logged) unless ``strict``."""
    from ..media.images import read_image
    from ..progress import progress
    from ..regions import crop_for_model

    sources = collect_sources(specs)
    key = _cache_key(sources, size, crop, fps, clip_seconds)
    cache = cache_dir / f"data-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                log.info(f"using decoded data cached in {cache}")
                return ImageSet(z["images"], z["labels"], meta["names"], meta["paths"],
                                [tuple(s) for s in meta["skipped"]], z["clips"], z["frames"])
        except (OSError, ValueError, KeyError):
            log.warning(f"{cache}: unreadable cache, decoding again")

    images, idents, paths, clips, frames, skipped, no_face = [], [], [], [], [], [], []
    n_clips = 0
    for src in progress(sources, desc="decoding", unit="file", quiet=quiet):
        try:
            if src.kind == "video":
                got = [(ident, frame, name, n_clips + c, f)
                       for ident, frame, name, c, f in _video_frames(src, size, crop, fps, clip_seconds, no_face)]
                for ident, frame, name, c, f in got:  # a video that fails half-way adds nothing
                    images.append(frame); idents.append(ident); paths.append(name); clips.append(c); frames.append(f)
                n_clips = got[-1][3] + 1  # clip numbers rise through a video
            else:
                images.append(crop_for_model(read_image(src.path), size, crop, src.path, no_face))
                idents.append(src.identity); paths.append(src.path); clips.append(-1); frames.append(-1)
        except PoseCliError as e:
            if strict:
                raise
            skipped.append((src.path, str(e)))
            log.warning(f"skipped {e}")
    if no_face:  # one line, not one per image
        log.warning(f"--crop face: no face found in {len(no_face)} image(s) (e.g. {no_face[0]}); "
                    "they were centre-cropped")
    if skipped:
        log.warning(f"skipped {len(skipped)} unreadable file(s) (--strict makes this an error)")
    if not images:
        raise InputError("no readable images in the training data", ", ".join(specs))
    names = sorted(set(idents))
    index = {n: i for i, n in enumerate(names)}
    data = ImageSet(np.stack(images), np.array([index[i] for i in idents], np.int64), names, paths, skipped,
                    np.array(clips, np.int64), np.array(frames, np.int64))
    if cache is not None:
        from ..fileio import atomic_path

        meta = json.dumps({"names": names, "paths": paths, "skipped": skipped})
        with atomic_path(cache, overwrite=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=data.images, labels=data.labels, clips=data.clips, frames=data.frames,
                     meta=np.array(meta))
    return data


def check_trainable(data: ImageSet, batch_size: int, what: str, needs_labels: bool = True) -> None:
    if needs_labels and len(data.names) < 2:
        raise UsageError(f"{what}: found a single identity ({data.names[0]!r}); this method needs at least "
                         "2 identities (subfolders, videos or clips); --method cs learns without labels")
    if len(data) < batch_size:
        raise UsageError(f"{what}: {len(data)} images is fewer than --batch-size {batch_size}; lower --batch-size")
