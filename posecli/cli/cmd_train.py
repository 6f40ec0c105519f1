"""posecli train: learn an identity/pose model from folders, videos or a manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from posecli.training import METHODS
from posecli.cli.common import Crop, Debug, Device, Json, Overwrite, Quiet, Seed, Verbose, cli_errors, emit_json


ALIASES = {  # flag -> method option; kept for a release, --opt NAME=VALUE is preferred
    "--stage2-epochs": "stage2_epochs", "--lr-generator": "lr_generator", "--lr-latent": "lr_latent",
    "--lr-encoder": "lr_encoder", "--noise-std": "noise_std", "--pose-decay": "pose_decay",
    "--stage2-generator": "stage2_generator", "--width": "width", "--identity-dim": "identity_dim",
    "--pose-dim": "pose_dim",
}


def _alias(flag: str, kind=float):
    name = ALIASES[flag]
    return Annotated[Optional[kind], typer.Option(flag, help=f"Same as --opt {name}=VALUE (kept for a release; prefer --opt).",
                                                  show_default=False)]


def train(
    data: Annotated[Optional[list[str]], typer.Argument(help="Folders (a subfolder per identity), videos or folders of videos (one identity each), CSV manifests (path,identity), images (identity = their folder's name), or quoted globs of these.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="The model file to write (.safetensors).", show_default=False)] = None,
    method: Annotated[str, typer.Option("--method", help=f"Training method: {', '.join(METHODS)}.")] = "lord",
    init: Annotated[Optional[str], typer.Option("--init", metavar="MODEL", help="Start from this model (a name such as cars, or a file) instead of random weights: fine-tuning. Same method; its size and network options are this run's unless given.", show_default=False)] = None,
    opt: Annotated[Optional[list[str]], typer.Option("--opt", metavar="NAME=VALUE", help="A method option (repeatable); --list-opts shows them with their defaults.", show_default=False)] = None,
    list_opts: Annotated[bool, typer.Option("--list-opts", help="Print the options of --method with their defaults and exit.")] = False,
    size: Annotated[Optional[int], typer.Option("--size", help="Image size: 32, 64 or 128 [default: 64, or 32 when the data's images are smaller than 64 px].", show_default=False)] = None,
    crop: Crop = "center",
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs of each stage.")] = 200,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per step (over all processes under torchrun).")] = 128,
    loss: Annotated[str, typer.Option("--loss", help="auto | vgg | lap | l1 (auto: VGG perceptual when its weights can be had, else lap).")] = "auto",
    fps: Annotated[float, typer.Option("--fps", help="Frames sampled per second of video.")] = 5.0,
    clip_seconds: Annotated[float, typer.Option("--clip-seconds", help="Cut videos into clips of this length, each an identity (0: whole videos).")] = 0.0,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", help="Checkpoints, samples and loss curves (default: OUTPUT with .work).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in the work folder (with any number of processes).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on unreadable files instead of skipping them.")] = False,
    half: Annotated[bool, typer.Option("--half", help="Store the model in fp16 (half the size).")] = False,
    precision: Annotated[str, typer.Option("--precision", help="auto | fp32 | bf16 (auto: bf16 autocast on GPUs that have it, fp16 with a gradient scaler on older ones, fp32 on CPU; bf16 on a CPU with AMX is about 2x faster).")] = "auto",
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile each training objective (CUDA).")] = False,
    checkpoint_minutes: Annotated[float, typer.Option("--checkpoint-minutes", help="Also checkpoint this often within an epoch.")] = 5.0,
    stage2_epochs: _alias("--stage2-epochs", int) = None,
    lr_generator: _alias("--lr-generator") = None,
    lr_latent: _alias("--lr-latent") = None,
    lr_encoder: _alias("--lr-encoder") = None,
    noise_std: _alias("--noise-std") = None,
    pose_decay: _alias("--pose-decay") = None,
    stage2_generator: _alias("--stage2-generator", str) = None,
    width: _alias("--width") = None,
    identity_dim: _alias("--identity-dim", int) = None,
    pose_dim: _alias("--pose-dim", int) = None,
    seed: Seed = 0,
    device: Device = "auto",
    overwrite: Overwrite = False,
    json_out: Json = False,
    debug: Debug = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Learn a model that separates identity from pose (LORD by default: latent optimisation, then encoders).

    Progress, checkpoints (every epoch; Ctrl-C writes one and exits 130), sample
    grids and the loss curve go to the work folder; --resume continues there.
    Method options: --opt NAME=VALUE (see --list-opts). Several GPUs or machines:
    torchrun --nproc-per-node N -m posecli train ... (--batch-size is the global batch).

    Example: posecli synth cars data --identities 50 && posecli train data -o cars.safetensors --epochs 20 --opt noise_std=0.3
    """
    with cli_errors(debug, quiet, verbose):
        from posecli.errors import UsageError
        from posecli.regions import CROP_MODES
        from posecli.training import options_class
        from posecli.training.api import train as run_train
        from posecli.training.options import TrainOptions, describe, parse_opts

        if list_opts:
            typer.echo(f"options of --method {method} (set with --opt NAME=VALUE):\n{describe(options_class(method))}")
            return
        if not data:
            raise UsageError("missing DATA: the folders, videos, images or manifests to train on")
        if output is None:
            raise UsageError("missing -o/--output: the model file to write")
        if crop not in CROP_MODES:
            raise UsageError(f"--crop {crop}: expected one of {', '.join(CROP_MODES)}")
        given = dict(zip(ALIASES, (stage2_epochs, lr_generator, lr_latent, lr_encoder, noise_std, pose_decay,
                                   stage2_generator, width, identity_dim, pose_dim)))
        network = _network_of(init) if init else {}
        method_options = parse_opts(method, opt or [], {f: (ALIASES[f], v) for f, v in given.items()}, network)
        if size is None and "image_size" in network:
            size = int(network["image_size"])
        if size is None:  # from the data: never upscale small images (read from a few file headers)
            import logging

            from posecli.data.dataset import infer_size

            size, why = infer_size(data)
            if os.environ.get("RANK", "0") == "0":  # a notice when it is not the usual 64
                logging.getLogger("posecli").log(logging.INFO if size == 64 else logging.WARNING,
                                                 f"--size {size} ({why}; give --size to choose)")
        opts = TrainOptions(method=method, image_size=size, epochs=epochs, batch_size=batch_size, loss=loss,
                            seed=seed, precision=precision, compile=compile_, checkpoint_minutes=checkpoint_minutes,
                            method_options=method_options)
        summary = run_train(data, output, opts, workdir=workdir, resume=resume, overwrite=overwrite,
                            device=device, crop=crop, fps=fps, clip_seconds=clip_seconds, strict=strict,
                            quiet=quiet, half=half, init=init)
        if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
            return
        if json_out:
            emit_json(summary)
        elif not quiet:
            rec = summary["final"].get("recon")
            typer.echo(f"posecli: wrote {summary['output']} ({summary['images']} images, {summary['identities']} "
                       f"identities, loss {summary['loss']}, {summary['train_seconds']} s"
                       + (f", final reconstruction loss {rec:.4g}" if rec is not None else "")
                       + f"); samples in {summary['workdir']}; measure it on held-out data with "
                       f"posecli eval HELDOUT -m {summary['output']}", err=True)


def _network_of(init: str) -> dict:
    """The --init model's architecture (from its metadata alone): the run's defaults."""
    from posecli.modelfile import read_metadata, resolve_model

    return dict(read_metadata(resolve_model(init)).get("config") or {})


def register(app: typer.Typer) -> None:
    app.command("train")(train)
