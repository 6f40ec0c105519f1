"""Pose transfer against ground truth (the LORD / C-S "content transfer" protocol).

Labelled data: a CSV with columns ``path,identity,pose`` (paths relative to the
CSV's folder), as written by ``posecli synth``. For ordered pairs (i, j) of
images of different identities where the image of identity(i) in pose(j)
exists, the swap G(E_id(x_i), E_pose(x_j)) is compared with that image, next
to two copy baselines: the pose image x_j itself and the identity image x_i.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

LABELS_FILE = "labels.csv"
REQUIRED_COLUMNS = ("path", "identity", "pose")
METRICS = ("mse", "psnr", "ssim", "lpips")
BASELINES = ("swap", "copy_pose", "copy_identity")


@dataclass
class LabelledSet:
    """Image paths with an identity and a pose label each (labels as strings)."""

    csv_path: Path
    paths: list[Path]
    identities: list[str]
    poses: list[str]
    rows: list[str] | None = None  # the CSV's path column as written (what --shard partitions by)

    def __len__(self) -> int:
        return len(self.paths)

    def names(self) -> list[str]:
        """Each image's path as the CSV writes it (relative to the CSV's folder, so the same on
        every machine): what --shard partitions by."""
        return list(self.rows) if self.rows is not None else [p.as_posix() for p in self.paths]

    def codes(self) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """Integer label arrays (identity, pose) and the sorted label names."""
        id_names, id_codes = np.unique(np.array(self.identities, dtype=object).astype(str), return_inverse=True)
        pose_names, pose_codes = np.unique(np.array(self.poses, dtype=object).astype(str), return_inverse=True)
        return id_codes.astype(np.int64), pose_codes.astype(np.int64), list(id_names), list(pose_names)


def find_labels(data: str | Path) -> Path:
    """DATA is a folder holding labels.csv, or the CSV itself."""
    p = Path(data)
    if p.is_dir():
        p = p / LABELS_FILE
        if not p.is_file():
            raise InputError(f"no {LABELS_FILE} in this folder; eval needs labelled images "
                             f"(a CSV with columns {','.join(REQUIRED_COLUMNS)}, e.g. from 'posecli synth')", data)
        return p
    if not p.exists():
        raise InputError("no such file or folder", p)
    return p


def read_labels(data: str | Path | LabelledSet) -> LabelledSet:
    """Read and check the labels CSV (a set already read is returned as it is); raises InputError
    (one line, naming the file)."""
    if isinstance(data, LabelledSet):
        return data
    path = find_labels(data)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise InputError(f"missing column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'}; "
                                 f"needs {','.join(REQUIRED_COLUMNS)})", path)
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str) or v is None}
                    for row in reader]
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 CSV file", path) from None
    except csv.Error as e:
        raise InputError(f"not a valid CSV file ({e})", path) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None
    base = path.parent
    paths, ids, poses, rows_seen = [], [], [], []
    for line, row in enumerate(rows, start=2):
        empty = [c for c in REQUIRED_COLUMNS if not row.get(c)]
        if empty:
            raise InputError(f"line {line}: empty {', '.join(empty)}", path)
        paths.append(base / row["path"])
        rows_seen.append(row["path"])
        ids.append(row["identity"])
        poses.append(row["pose"])
    if not paths:
        raise InputError("no rows (no labelled images)", path)
    n_ids = len(set(ids))
    if n_ids < 2:
        raise InputError(f"only one identity ({ids[0]!r}); transfer needs images of at least two identities", path)
    return LabelledSet(path, paths, ids, poses, rows_seen)


def load_images(labels: LabelledSet, size: int, crop: str = "center", progress=None,
                index: np.ndarray | None = None) -> np.ndarray:
    """The images (all, or the rows ``index`` in that order) cropped and resized to ``size``:
    uint8 (N, size, size, 3)."""
    from ..media.images import read_image
    from ..regions import crop_for_model

    paths = labels.paths if index is None else [labels.paths[int(k)] for k in index]
    out = np.empty((len(paths), size, size, 3), np.uint8)
    items = enumerate(paths)
    if progress is not None:
        items = progress(items, total=len(paths), desc="reading images")
    for k, p in items:
        if not p.is_file():
            raise InputError(f"listed in {labels.csv_path.name} but missing", p)
        out[k] = crop_for_model(read_image(p), size, crop, name=str(p))  # any size: resized here
    return out


def sample_pairs(identity: np.ndarray, pose: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` distinct ordered pairs (i, j, gt), uniformly over all valid pairs.

    Valid: identity[i] != identity[j] and an image gt of identity[i] in pose[j]
    exists (the first such image when the data repeats an (identity, pose)).
    Returns int64 (m, 3); m = 0 when no pair has a ground truth.
    """
    identity, pose = np.asarray(identity), np.asarray(pose)
    gt: dict[tuple[int, int], int] = {}
    for k, key in enumerate(zip(identity.tolist(), pose.tolist())):
        gt.setdefault(key, k)
    by_id: dict[int, list[int]] = {}
    for k, c in enumerate(identity.tolist()):
        by_id.setdefault(c, []).append(k)
    # per pose p: the images of every identity seen in pose p, grouped by identity
    ids_in_pose: dict[int, set[int]] = {}
    for c, q in gt:
        ids_in_pose.setdefault(q, set()).add(c)
    pools: dict[int, tuple[np.ndarray, dict[int, tuple[int, int]]]] = {}
    for p, ids in ids_in_pose.items():
        blocks, start, members = {}, 0, []
        for c in sorted(ids):
            blocks[c] = (start, len(by_id[c]))
            members.extend(by_id[c])
            start += len(by_id[c])
        pools[p] = (np.array(members, np.int64), blocks)
    # weight of j = number of valid partners i
    weight = np.array([len(pools[p][0]) - pools[p][1][c][1] for c, p in zip(identity.tolist(), pose.tolist())],
                      np.int64)
    total = int(weight.sum())
    if total == 0 or n <= 0:
        return np.zeros((0, 3), np.int64)

    def gt_of(i: int, j: int) -> int:
        return gt[(int(identity[i]), int(pose[j]))]

    rng = np.random.default_rng(seed)
    if total <= 4 * n:  # few pairs: list them all, then choose
        pairs = []
        for j in range(len(pose)):
            members, blocks = pools[int(pose[j])]
            s, length = blocks[int(identity[j])]
            for i in np.concatenate([members[:s], members[s + length:]]).tolist():
                pairs.append((i, j, gt_of(i, j)))
        arr = np.array(pairs, np.int64)
        if len(arr) > n:
            arr = arr[np.sort(rng.choice(len(arr), n, replace=False))]
        return arr
    # many pairs: draw j by its weight, then i uniformly among its partners; drop repeats
    chosen: dict[tuple[int, int], None] = {}
    prob = weight / total
    while len(chosen) < n:
        js = rng.choice(len(pose), size=2 * (n - len(chosen)) + 16, p=prob)
        us = rng.random(len(js))
        for j, u in zip(js.tolist(), us.tolist()):
            members, blocks = pools[int(pose[j])]
            s, length = blocks[int(identity[j])]
            k = min(int(u * weight[j]), int(weight[j]) - 1)
            i = int(members[k + length if k >= s else k])  # skip j's own identity block
            chosen.setdefault((i, j), None)
            if len(chosen) == n:
                break
    return np.array([(i, j, gt_of(i, j)) for i, j in chosen], np.int64)


class Sums:
    """Per-image sums of each metric for several named comparisons. Sums (not means) so that
    the parts of a sharded evaluation add up exactly to the whole (``merged``)."""

    def __init__(self, names, mse_only=()):
        self.sums = {name: dict.fromkeys(METRICS, 0.0) for name in names}
        self.sums.update({name: {"mse": 0.0} for name in mse_only})
        self.lpips_ok = True
        self.n = 0

    def add(self, name: str, out, target) -> None:
        from . import metrics as M

        s = self.sums[name]
        s["mse"] += float(M.mse(out, target).sum())
        if "psnr" not in s:  # an MSE-only comparison (mse_only)
            return
        s["psnr"] += float(M.psnr(out, target).sum())
        s["ssim"] += float(M.ssim(out, target).sum())
        d = M.lpips_distance(out, target) if self.lpips_ok else None
        if d is None:
            self.lpips_ok = False
        else:
            s["lpips"] += float(d.sum())

    def means(self) -> dict:
        """{metric: {name: mean}}; None with no images, and for LPIPS when it was unavailable."""
        out = {m: {} for m in METRICS}
        for name, s in self.sums.items():
            for m, total in s.items():
                out[m][name] = total / self.n if self.n and (m != "lpips" or self.lpips_ok) else None
        return out

    def to_dict(self) -> dict:
        return {"sums": self.sums, "lpips_ok": self.lpips_ok, "n": self.n}

    @classmethod
    def from_dict(cls, d: dict) -> "Sums":
        acc = cls([])
        acc.sums = {name: {m: float(v) for m, v in s.items()} for name, s in d["sums"].items()}
        acc.lpips_ok, acc.n = bool(d["lpips_ok"]), int(d["n"])
        return acc

    @classmethod
    def merged(cls, parts: "list[Sums]") -> "Sums":
        acc = cls([])
        acc.sums = {name: dict.fromkeys(s, 0.0) for name, s in parts[0].sums.items()}
        for p in parts:
            for name, s in p.sums.items():
                for m, v in s.items():
                    acc.sums[name][m] += v
            acc.lpips_ok &= p.lpips_ok
            acc.n += p.n
        return acc


def transfer_sums(model, images: np.ndarray, id_codes, pose_codes, pairs: np.ndarray, device,
                  batch_size: int = 128, progress=None) -> Sums:
    """Sums of each metric over ``pairs`` (i, j, gt; rows of ``images`` and the codes) for the
    swap and the two copy baselines, plus "swap_to_pose" (MSE only): the swap against the pose
    image. Far below "copy_pose" (the truth against the pose image), the model copies the pose
    image instead of transferring it."""
    import torch

    from ..media.convert import to_tensor

    acc = Sums(BASELINES, mse_only=("swap_to_pose",))
    starts = range(0, len(pairs), batch_size)
    if progress is not None:
        starts = progress(starts, total=len(starts), desc="transfer")
    with torch.inference_mode():
        for s in starts:
            i, j, g = pairs[s : s + batch_size].T
            out = model.generate(id_codes[i].to(device), pose_codes[j].to(device)).float().clamp(0, 1)
            x_i, x_j, truth = (to_tensor(images[k], device) for k in (i, j, g))
            acc.add("swap", out, truth)
            acc.add("copy_pose", x_j, truth)
            acc.add("copy_identity", x_i, truth)
            acc.add("swap_to_pose", out, x_j)
            acc.n += len(i)
    return acc


def reconstruction_sums(model, images: np.ndarray, id_codes, pose_codes, index: np.ndarray, device,
                        batch_size: int = 128) -> Sums:
    """Sums of each metric of G(E_id(x), E_pose(x)) against x over the rows ``index``."""
    import torch

    from ..media.convert import to_tensor

    acc = Sums(["reconstruction"])
    with torch.inference_mode():
        for s in range(0, len(index), batch_size):
            k = index[s : s + batch_size]
            out = model.generate(id_codes[k].to(device), pose_codes[k].to(device)).float().clamp(0, 1)
            acc.add("reconstruction", out, to_tensor(images[k], device))
            acc.n += len(k)
    return acc
