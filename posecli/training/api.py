"""train(): data -> a model file, with a resumable work folder beside it."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..errors import UsageError
from ..fileio import check_writable
from ..runtime import hardware_name
from .loop import TrainData, Trainer, TrainOptions

log = logging.getLogger("posecli")
SIZES = (32, 64, 128)


def default_workdir(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".safetensors") + ".work")


def train(data_specs: list[str], output: str | Path, opts: TrainOptions = TrainOptions(), *,
          workdir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          device: str | torch.device = "cpu", crop: str = "center", fps: float = 5.0,
          clip_seconds: float = 0.0, strict: bool = False, quiet: bool = False, half: bool = False,
          stop_after_steps: int | None = None, precision: str = "auto") -> dict:
    """Train ``opts.method`` on the data and write the model file; returns a summary."""
    from ..data.dataset import check_trainable, load_image_set
    from ..modelfile import SUFFIX, save_model
    from ..runtime import resolve_device
    from . import trainer_class
    from .losses import ReconstructionLoss

    output = Path(output)
    if output.suffix != SUFFIX:
        raise UsageError(f"-o {output}: model files end in {SUFFIX}")
    if opts.image_size not in SIZES:
        raise UsageError(f"--size {opts.image_size}: expected one of {', '.join(map(str, SIZES))}")
    check_writable(output, overwrite)  # fail before hours of training, not after
    method_cls = trainer_class(opts.method)
    device = resolve_device(device) if isinstance(device, str) else device
    workdir = Path(workdir) if workdir else default_workdir(output)
    workdir.mkdir(parents=True, exist_ok=True)

    data = load_image_set(data_specs, opts.image_size, crop, fps, clip_seconds, strict,
                          cache_dir=workdir / "cache", quiet=quiet)
    check_trainable(data, opts.batch_size, " ".join(data_specs))
    log.info(f"{len(data)} images of {len(data.names)} identities, {opts.image_size}px, on {device}")

    loss = ReconstructionLoss(opts.loss).to(device)
    opts = replace(opts, loss=loss.kind)  # the checkpoint and the model file record the loss used
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous().to(device)  # uint8, resident
    tdata = TrainData(images, torch.from_numpy(data.labels).to(device), len(data.names),
                      key=f"{len(data)}:{len(data.names)}:{hash_of(data)}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    method = method_cls(opts, tdata, device, loss)
    trainer = Trainer(method, tdata, opts, workdir, device, quiet, stop_after_steps, precision)
    t0 = time.monotonic()
    trainer.run(resume=resume)
    model = method.final_model().eval()
    last = {k: round(v, 6) for k, v in trainer.history[-1].items() if k not in ("stage", "step", "epoch")} \
        if trainer.history else {}
    summary = {
        "data": " ".join(data_specs), "images": len(data), "identities": len(data.names),
        "skipped": len(data.skipped), "loss": loss.kind, "epochs": [s.epochs for s in method.stages()],
        "options": asdict(opts), "final": last, "device": str(device),
        "hardware": hardware_name(device),
        "precision": "bf16" if trainer.bf16 else "fp32", "train_seconds": round(trainer.elapsed, 1), "wall_seconds_this_run": round(time.monotonic() - t0, 1),
    }
    save_model(output, model.cpu().float(), training=summary, overwrite=overwrite, half=half)
    return {"output": str(output), "workdir": str(workdir), **summary}


def hash_of(data) -> str:
    import hashlib

    h = hashlib.sha1(data.labels.tobytes())
    h.update(data.images[:: max(1, len(data) // 64)].tobytes())
    return h.hexdigest()[:12]
