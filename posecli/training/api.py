"""train(): data -> a model file, with a resumable work folder beside it.

Under torchrun every process calls this: rank 0 decodes the data (the others then
read its cache), and rank 0 alone writes checkpoints, pictures and the model file.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import PoseCliError, UsageError
from ..fileio import check_writable
from ..runtime import hardware_name
from .method import TrainData, network_difference
from .options import TrainOptions

log = logging.getLogger("posecli")
SIZES = (32, 64, 128)


def default_workdir(output: Path) -> Path:
    return output.with_name(output.name.removesuffix(".safetensors") + ".work")


def train(data_specs: list[str], output: str | Path, opts: TrainOptions = TrainOptions(), *,
          workdir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          device: str | torch.device = "cpu", crop: str = "center", fps: float = 5.0,
          clip_seconds: float = 0.0, strict: bool = False, quiet: bool = False, half: bool = False,
          stop_after_steps: int | None = None, init: str | Path | None = None) -> dict:
    """Train ``opts.method`` on the data and write the model file; returns a summary.

    ``init`` (a model name or file of the same method and network) is where a new run
    starts instead of random weights: fine-tuning (``Method.warm_start``).
    """
    from ..modelfile import SUFFIX
    from ..runtime import resolve_device
    from . import distributed as D
    from . import method_class

    output = Path(output)
    if output.suffix != SUFFIX:
        raise UsageError(f"-o {output}: model files end in {SUFFIX}")
    if opts.image_size not in SIZES:
        raise UsageError(f"--size {opts.image_size}: expected one of {', '.join(map(str, SIZES))}")
    method_cls = method_class(opts.method)
    device = resolve_device(device) if isinstance(device, str) else device
    dist, device = D.setup(device)
    try:
        D.check_batch(opts.batch_size, dist)
        D.main_checks(dist, lambda: check_writable(output, overwrite))  # fail before hours of training, not after
        source = _init_model(init, opts) if init is not None else None
        return _train(data_specs, output, opts, method_cls, dist, device, workdir=workdir, resume=resume,
                      overwrite=overwrite, crop=crop, fps=fps, clip_seconds=clip_seconds, strict=strict,
                      quiet=quiet or not dist.main, half=half, stop_after_steps=stop_after_steps, init=source)
    except RuntimeError as e:
        if D.peer_failure(e, dist):
            raise PoseCliError(f"another process of this torchrun job stopped (its error is above): "
                               f"rank {dist.rank} of {dist.world} cannot go on") from None
        raise
    finally:
        D.teardown()


def _init_model(init: str | Path, opts: TrainOptions):
    """The --init model, checked against the run's method and network before any data is read."""
    from ..modelfile import load_model

    source = load_model(init)
    if source.method != opts.method:
        raise UsageError(f"--init {init}: a {source.method} model; this run trains --method {opts.method} "
                         f"(add --method {source.method})")
    own = init_config(source.method, opts)
    if own != source.config:
        diff = network_difference(own, source.config)
        raise UsageError(f"--init {init}: its network differs from this run's ({diff}); leave those options out "
                         "to take the model's")
    return source


def init_config(method: str, opts: TrainOptions):
    """The model config this run builds (as the method's __init__ will)."""
    from ..models import model_class

    cls = model_class(method)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    o = dataclasses.asdict(opts.method_options)
    given = {**{k: o[k] for k in fields if k in o}, "image_size": opts.image_size}
    return cls.Config(**given)


def _train(data_specs, output: Path, opts: TrainOptions, method_cls, dist, device, *, workdir, resume, overwrite,
           crop, fps, clip_seconds, strict, quiet, half, stop_after_steps, init=None) -> dict:
    from ..data.dataset import check_trainable, load_image_set
    from ..modelfile import save_model
    from . import distributed as D
    from .loop import Trainer
    from .losses import ReconstructionLoss

    workdir = Path(workdir) if workdir else default_workdir(output)
    created = dist.main and not workdir.exists()
    try:
        if dist.main:
            workdir.mkdir(parents=True, exist_ok=True)
        with D.main_first(dist):  # rank 0 decodes into the cache; the others read it
            data = load_image_set(data_specs, opts.image_size, crop, fps, clip_seconds, strict,
                                  cache_dir=workdir / "cache" if dist.main or workdir.is_dir() else None, quiet=quiet)
        check_trainable(data, opts.batch_size, " ".join(data_specs), method_cls.needs_labels)
        if not method_cls.needs_labels and not quiet and len(data.names) > 1:
            log.warning(f"--method {opts.method} learns without labels: the {len(data.names)} identities of "
                        "the data are not used in training (posecli eval uses them)")
    except BaseException:
        if created:  # a run that could not start leaves no work folder (this run made it: only its cache)
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
        raise

    loss = ReconstructionLoss(opts.loss).to(device)
    opts = replace(opts, loss=loss.kind)  # the checkpoint and the model file record the loss used
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous().to(device)  # uint8, resident
    tdata = TrainData(images, torch.from_numpy(data.labels).to(device), len(data.names),
                      key=f"{len(data)}:{len(data.names)}:{hash_of(data)}",
                      clips=torch.from_numpy(data.clips).to(device), frames=torch.from_numpy(data.frames).to(device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    trainer = Trainer(method_cls, tdata, opts, workdir, device, loss, quiet, stop_after_steps, dist)
    t0 = time.monotonic()
    trainer.run(resume=resume, restart=overwrite, init=init)
    method = trainer.method
    model = method.final_model().eval()
    last = {k: round(v, 6) for k, v in trainer.history[-1].items() if k not in ("stage", "step", "epoch")} \
        if trainer.history else {}
    summary = {
        "data": " ".join(data_specs), "images": len(data), "identities": len(data.names),
        "skipped": len(data.skipped), "loss": loss.kind, "epochs": list(trainer.stage_epochs),
        "options": opts.to_dict(), "final": last, **method.summary(), "device": str(device),
        "hardware": hardware_name(device), "world_size": dist.world,
        "precision": trainer.precision, "train_seconds": round(trainer.elapsed, 1),
        "wall_seconds_this_run": round(time.monotonic() - t0, 1),
    }
    if init is not None:  # what the run started from, recognisable on any machine
        from ..fileio import file_sha256

        summary["init"] = {"model": init.path.name, "sha256": file_sha256(init.path)}
    if dist.main:
        save_model(output, model.cpu().float(), training=summary, overwrite=overwrite, half=half)
    return {"output": str(output), "workdir": str(workdir), **summary}


def hash_of(data) -> str:
    import hashlib

    h = hashlib.sha1(data.labels.tobytes())
    h.update(data.images[:: max(1, len(data) // 64)].tobytes())
    return h.hexdigest()[:12]
