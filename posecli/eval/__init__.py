"""The papers' metrics on labelled data: pose-transfer error and code leakage.

    report = evaluate(model, "synth/labels.csv", pairs=1000, seed=0, device="cpu")

Report keys: ``transfer`` ({metric: {swap, copy_pose, copy_identity}}, metrics
mse, psnr (dB, capped at 100), ssim, lpips (None when unavailable); mse also has
swap_to_pose, the swap's distance to the pose image, which shows a model that
copies the pose image),
``transfer_mse_over_best_copy``, ``reconstruction`` ({metric: value}),
``leakage`` (see posecli.eval.leakage; None when disabled) and the data counts.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["evaluate"]


def evaluate(model, labels_csv, pairs: int = 1000, seed: int = 0, device="cpu", leakage: bool = True,
             batch_size: int = 128, progress=None, crop: str = "center") -> dict:
    """Evaluate ``model`` (a PoseModel, or a model name/path) on labelled images.

    The model is put in eval mode. ``labels_csv``: a folder with labels.csv or
    the CSV itself. ``progress``: None or a callable like
    ``posecli.progress.progress`` (iterable, total=, desc=).
    Raises InputError for unusable data (one line naming the file).
    """
    import numpy as np
    import torch

    from ..errors import InputError, UsageError
    from ..runtime import resolve_device
    from . import metrics
    from ..pipelines.encode import encode_prepared
    from .transfer import load_images, read_labels, reconstruction_metrics, sample_pairs, transfer_metrics

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
    size = model.image_size
    images = load_images(labels, size, crop, progress)
    metrics.get_lpips(device)  # load (or warn about) LPIPS once, before any progress bar
    id_codes, pose_codes = map(torch.from_numpy, encode_prepared(model, images, batch_size, device, progress))
    transfer = transfer_metrics(model, images, id_codes, pose_codes, chosen, device, batch_size, progress)
    copy_best = min(transfer["mse"]["copy_pose"], transfer["mse"]["copy_identity"])
    ratio = transfer["mse"]["swap"] / copy_best if copy_best > 0 else None
    rng = np.random.default_rng(seed)
    recon_idx = np.sort(rng.choice(len(images), min(len(images), pairs), replace=False))
    recon = reconstruction_metrics(model, images, id_codes, pose_codes, recon_idx, device, batch_size)
    recon["images"] = len(recon_idx)

    report = {
        "data": str(labels.csv_path),
        "model": str(getattr(model, "path", type(model).__name__)),
        "method": getattr(model, "method", ""),
        "image_size": size,
        "crop": crop,
        "seed": seed,
        "images": len(labels),
        "identities": len(id_names),
        "poses": len(pose_names),
        "pairs": len(chosen),
        "transfer": transfer,
        "transfer_mse_over_best_copy": ratio,
        "reconstruction": recon,
        "lpips_available": metrics.lpips_unavailable_reason() is None,
        "lpips_note": metrics.lpips_unavailable_reason(),
        "psnr_cap_db": metrics.PSNR_CAP,
        "leakage": None,
    }
    if leakage:
        from .leakage import leakage as leakage_probe

        report["leakage"] = leakage_probe(id_codes, pose_codes, id_lab, pose_lab, seed=seed)
    return report
