"""The parts of a sharded evaluation: stored, found, checked, and gathered under torchrun.

``posecli eval DATA -m M --shard I/N -o report.json`` writes ``report.shardIofN.npz``
(metric sums, and the codes of the images it owns); ``posecli eval DATA -m M --merge
-o report.json`` finds the N parts beside ``report.json``, checks that they are one
evaluation of this data and model, complete and disjoint, and writes the report.
Under torchrun the ranks send their parts to rank 0 instead (``gather``).

A part file is an ``.npz`` of plain arrays (read with ``allow_pickle=False``), its
metadata and sums a JSON string in it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError
from . import PART_FORMAT, Part

# what must agree between the parts of one evaluation
SAME = ("labels_sha256", "model_sha256", "method", "image_size", "crop", "seed", "pairs_requested", "pairs",
        "reconstructions", "images")


def part_base(output: str | Path) -> Path:
    """``report.json`` -> ``report.npz``, which ``posecli.batch.shard_path`` numbers per part."""
    return Path(output).with_suffix(".npz")


def save_part(part: Part, path: str | Path, overwrite: bool = False) -> Path:
    from ..fileio import atomic_path

    meta = dict(part.meta, transfer=part.transfer.to_dict(), reconstruction=part.reconstruction.to_dict())
    with atomic_path(path, overwrite) as tmp, open(tmp, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), index=part.index, id_codes=part.id_codes,
                 pose_codes=part.pose_codes)
    return Path(path)


def load_part(path: str | Path) -> Part:
    """A part file written by ``save_part``; InputError (naming the file) for anything else."""
    import zipfile

    from .transfer import Sums

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            index, id_codes, pose_codes = (np.asarray(z[k]) for k in ("index", "id_codes", "pose_codes"))
        if meta.get("format") != PART_FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        transfer, recon = Sums.from_dict(meta.pop("transfer")), Sums.from_dict(meta.pop("reconstruction"))
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", path) from None
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise InputError(f"not a posecli eval part ({type(e).__name__}: {e})", path) from None
    if not (len(index) == len(id_codes) == len(pose_codes)) or index.dtype.kind not in "iu":
        raise InputError("not a posecli eval part (its index and codes disagree)", path)
    return Part(meta, transfer, recon, index.astype(np.int64), id_codes, pose_codes)


def find_parts(output: str | Path) -> list[Path]:
    """The part files of ``-o output``, ordered by part number; a UsageError naming what is
    missing when they are not exactly parts 0..N-1 of one N."""
    base = part_base(output)
    pattern = re.compile(rf"{re.escape(base.stem)}\.shard(\d+)of(\d+){re.escape(base.suffix)}")
    folder = base.parent if str(base.parent) else Path(".")
    found: dict[int, dict[int, Path]] = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = pattern.fullmatch(p.name)
            if m and int(m[1]) < int(m[2]):
                found.setdefault(int(m[2]), {})[int(m[1])] = p
    if not found:
        raise UsageError(f"--merge: no parts {base.stem}.shardIofN{base.suffix} in {folder}/; write them with "
                         f"--shard I/N -o {output} (the same -o), one run per part")
    if len(found) > 1:
        raise UsageError(f"--merge: parts of {' and '.join(map(str, sorted(found)))} shards are mixed in {folder}/ "
                         f"({base.stem}.shard*); keep one evaluation's parts there")
    (count, parts), = found.items()
    missing = [i for i in range(count) if i not in parts]
    if missing:
        shown = ", ".join(f"{i}/{count}" for i in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise UsageError(f"--merge: {len(missing)} of {count} parts missing beside {output}: run --shard {shown}")
    return [parts[i] for i in range(count)]


def check_parts(parts: list[Part], paths: list[Path | str], labels_sha: str | None = None,
                model_sha: str | None = None) -> None:
    """One evaluation, whole and once: the same data, model and settings in every part (and
    the ``labels_sha``/``model_sha`` of this run when given), every image exactly once.
    ``paths``: where each part came from, a file or (under torchrun) a name such as "rank 1"."""
    first, first_path = parts[0].meta, paths[0]
    first_name = first_path.name if isinstance(first_path, Path) else first_path
    for part, path in zip(parts, paths):
        for key in SAME:
            if part.meta.get(key) != first.get(key):
                raise InputError(f"a part of another evaluation: its {key} is {part.meta.get(key)!r}, "
                                 f"{first_name}'s is {first.get(key)!r}", path)
        if part.meta.get("shard") is None or part.meta["shard"][1] != len(parts):
            raise InputError(f"part {part.meta.get('shard')} does not belong to a {len(parts)}-part evaluation", path)
    if labels_sha is not None and first["labels_sha256"] != labels_sha:
        raise InputError(f"these parts evaluated another labels file ({first['data']}, different contents)",
                         first_path)
    if model_sha is not None and first["model_sha256"] != model_sha:
        raise InputError(f"these parts evaluated another model ({first['model']}, different contents)", first_path)
    index = np.concatenate([p.index for p in parts])
    counts = np.bincount(index, minlength=first["images"]) if len(index) else np.zeros(first["images"], int)
    if len(counts) != first["images"] or (counts != 1).any():
        raise InputError(f"the parts do not cover the {first['images']} images exactly once "
                         f"({int((counts == 0).sum())} missing, {int((counts > 1).sum())} repeated)", first_path)
    if sum(p.transfer.n for p in parts) != first["pairs"]:
        raise InputError(f"the parts hold {sum(p.transfer.n for p in parts)} pairs, not the {first['pairs']} drawn",
                         first_path)


def gather(part: Part, dist_info) -> list[Part] | None:
    """Under torchrun: every rank's part, on rank 0 (None on the others)."""
    import torch.distributed as dist

    from ..training import distributed as D

    parts = [None] * dist_info.world if dist_info.main else None
    dist.gather_object(part, parts, dst=0, group=D.slow_group())
    return parts
