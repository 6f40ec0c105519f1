"""The papers' metrics on labelled data: pose-transfer error and code leakage.

    report = evaluate(model, "synth/labels.csv", pairs=1000, seed=0, device="cpu")

Report keys: ``transfer`` ({metric: {swap, copy_pose, copy_identity}}, metrics
mse, psnr (dB, capped at 100), ssim, lpips (None when unavailable); mse also has
swap_to_pose, the swap's distance to the pose image, which shows a model that
copies the pose image),
``transfer_mse_over_best_copy``, ``reconstruction`` ({metric: value}),
``leakage`` (see posecli.eval.leakage; None when disabled) and the data counts.

A big evaluation splits into shards (``evaluate_part`` with a ``posecli.batch.Shard``:
the pairs and images whose names hash to it) that run anywhere; ``report_from_parts``
adds their sums, joins their codes for the leakage probe and gives the same report as
one run (posecli.eval.parts stores parts and gathers them under torchrun).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import file_sha256

__all__ = ["Part", "evaluate", "evaluate_part", "report_from_parts"]

PART_FORMAT = "posecli-eval-part/1"


@dataclass
class Part:
    """One shard's share of an evaluation: metric sums over its pairs and reconstructions,
    and the codes of the images it owns. ``meta`` says what it was computed from."""

    meta: dict
    transfer: "Sums"  # noqa: F821 (posecli.eval.transfer.Sums)
    reconstruction: "Sums"  # noqa: F821
    index: np.ndarray  # int64 rows of the labels CSV whose codes are here
    id_codes: np.ndarray  # float32 (len(index), identity_dim)
    pose_codes: np.ndarray  # float32 (len(index), pose_dim)


def pair_name(names: list[str], i: int, j: int) -> str:
    """The name a pair is sharded by: the identity image's, then the pose image's CSV path."""
    return f"{names[i]} > {names[j]}"


def evaluate_part(model, labels_csv, pairs: int = 1000, seed: int = 0, device="cpu", batch_size: int = 128,
                  progress=None, crop: str = "center", shard=None) -> Part:
    """The share of ``shard`` (a ``posecli.batch.Shard``; None: everything) of an evaluation.
    ``labels_csv``: a folder with labels.csv, the CSV, or a LabelledSet already read.

    Every shard draws the same ``pairs`` (seeded) and owns those whose ``pair_name`` hashes to
    it, and the images whose CSV path does; it reads and encodes only the images these need.
    Raises InputError for unusable data (one line naming the file).
    """
    import torch

    from ..errors import InputError, UsageError
    from ..pipelines.encode import encode_prepared
    from ..runtime import resolve_device
    from . import metrics
    from .transfer import load_images, read_labels, reconstruction_sums, sample_pairs, transfer_sums

    if pairs < 1:
        raise UsageError(f"--pairs {pairs}: must be at least 1")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    device = resolve_device(device) if isinstance(device, str) else device
    if isinstance(model, (str, Path)):
        from ..modelfile import load_model

        model = load_model(model, device)
    model = model.to(device).eval()

    labels = read_labels(labels_csv)
    id_lab, pose_lab, id_names, pose_names = labels.codes()
    chosen = sample_pairs(id_lab, pose_lab, pairs, seed)
    if len(chosen) == 0:
        raise InputError("no pair of images of different identities has a ground truth (the image of one's "
                         "identity in the other's pose); identities must share pose labels", labels.csv_path)
    rng = np.random.default_rng(seed)
    recon_idx = np.sort(rng.choice(len(labels), min(len(labels), pairs), replace=False))
    names = labels.names()
    mine = np.arange(len(labels))
    my_pairs, my_recon = chosen, recon_idx
    if shard is not None:
        owned = np.array([shard.owns(n) for n in names], bool)
        mine = np.flatnonzero(owned)
        my_pairs = chosen[np.array([shard.owns(pair_name(names, i, j)) for i, j, _ in chosen.tolist()], bool)]
        my_recon = recon_idx[owned[recon_idx]]
    # read and encode only what this part needs; ``row`` maps a CSV row to its place here
    needed = np.unique(np.concatenate([mine, my_pairs.ravel(), my_recon]).astype(np.int64))
    row = np.full(len(labels), -1, np.int64)
    row[needed] = np.arange(len(needed))
    size = model.image_size
    images = load_images(labels, size, crop, progress, index=needed)
    metrics.get_lpips(device)  # load (or warn about) LPIPS once, before any progress bar
    id_codes, pose_codes = map(torch.from_numpy, encode_prepared(model, images, batch_size, device, progress))
    transfer = transfer_sums(model, images, id_codes, pose_codes, row[my_pairs], device, batch_size, progress)
    recon = reconstruction_sums(model, images, id_codes, pose_codes, row[my_recon], device, batch_size)
    path = getattr(model, "path", None)
    meta = {
        "format": PART_FORMAT,
        "data": str(labels.csv_path),
        "labels_sha256": file_sha256(labels.csv_path),
        "model": str(path if path is not None else type(model).__name__),
        "model_sha256": file_sha256(path),
        "method": getattr(model, "method", ""),
        "image_size": size,
        "crop": crop,
        "seed": seed,
        "pairs_requested": pairs,
        "pairs": len(chosen),
        "reconstructions": len(recon_idx),
        "images": len(labels),
        "identities": len(id_names),
        "poses": len(pose_names),
        "shard": None if shard is None else [shard.index, shard.count],
        "lpips_note": metrics.lpips_unavailable_reason(),
    }
    return Part(meta, transfer, recon, mine.astype(np.int64), id_codes.numpy()[row[mine]],
                pose_codes.numpy()[row[mine]])


def report_from_parts(parts: list[Part], labels_csv, leakage: bool = True) -> dict:
    """The report of the evaluation the ``parts`` make up together (checked with
    ``posecli.eval.parts.check_parts`` first): summed metrics, and the leakage probe on
    every image's codes. ``labels_csv``: as for ``evaluate_part``."""
    from .metrics import PSNR_CAP
    from .transfer import Sums, read_labels

    meta = parts[0].meta
    transfer = Sums.merged([p.transfer for p in parts])
    recon_sums = Sums.merged([p.reconstruction for p in parts])
    means = transfer.means()
    copy_best = min(means["mse"]["copy_pose"], means["mse"]["copy_identity"])
    ratio = means["mse"]["swap"] / copy_best if copy_best > 0 else None
    recon = {m: v["reconstruction"] for m, v in recon_sums.means().items()}
    recon["images"] = recon_sums.n
    lpips_ok = transfer.lpips_ok and recon_sums.lpips_ok
    report = {
        "data": meta["data"],
        "model": meta["model"],
        "method": meta["method"],
        "image_size": meta["image_size"],
        "crop": meta["crop"],
        "seed": meta["seed"],
        "images": meta["images"],
        "identities": meta["identities"],
        "poses": meta["poses"],
        "pairs": transfer.n,
        "transfer": means,
        "transfer_mse_over_best_copy": ratio,
        "reconstruction": recon,
        "lpips_available": lpips_ok,
        "lpips_note": None if lpips_ok else next((p.meta["lpips_note"] for p in parts if p.meta["lpips_note"]), None),
        "psnr_cap_db": PSNR_CAP,
        "leakage": None,
    }
    if len(parts) > 1:
        report["shards"] = len(parts)
    if leakage:
        from .leakage import leakage as leakage_probe

        labels = read_labels(labels_csv)
        id_lab, pose_lab, _, _ = labels.codes()
        order = np.argsort(np.concatenate([p.index for p in parts]), kind="stable")
        id_codes = np.concatenate([p.id_codes for p in parts])[order]
        pose_codes = np.concatenate([p.pose_codes for p in parts])[order]
        report["leakage"] = leakage_probe(id_codes, pose_codes, id_lab, pose_lab, seed=meta["seed"])
    return report


def evaluate(model, labels_csv, pairs: int = 1000, seed: int = 0, device="cpu", leakage: bool = True,
             batch_size: int = 128, progress=None, crop: str = "center") -> dict:
    """Evaluate ``model`` (a PoseModel, or a model name/path) on labelled images.

    The model is put in eval mode. ``labels_csv``: a folder with labels.csv or
    the CSV itself. ``progress``: None or a callable like
    ``posecli.progress.progress`` (iterable, total=, desc=).
    Raises InputError for unusable data (one line naming the file).
    """
    from .transfer import read_labels

    labels = read_labels(labels_csv)
    part = evaluate_part(model, labels, pairs, seed, device, batch_size, progress, crop)
    return report_from_parts([part], labels, leakage)
