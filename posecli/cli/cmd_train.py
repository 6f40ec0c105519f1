"""posecli train: learn an identity/pose model from folders, videos or a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from posecli.cli.common import Crop, Debug, Device, Json, Overwrite, Quiet, Seed, Verbose, cli_errors, emit_json


def train(
    data: Annotated[list[str], typer.Argument(help="Folders (a subfolder per identity), videos or folders of videos (one identity each), CSV manifests (path,identity), images (identity = their folder's name), or quoted globs of these.", show_default=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="The model file to write (.safetensors).", show_default=False)],
    method: Annotated[str, typer.Option("--method", help="Training method (lord).")] = "lord",
    size: Annotated[int, typer.Option("--size", help="Image size: 32, 64 or 128.")] = 64,
    crop: Crop = "center",
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs of each stage.")] = 200,
    stage2_epochs: Annotated[Optional[int], typer.Option("--stage2-epochs", help="Epochs of stage 2 (default: --epochs).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per step.")] = 128,
    lr_generator: Annotated[float, typer.Option("--lr-generator", help="Stage-1 generator/modulation learning rate.")] = 3e-4,
    lr_latent: Annotated[float, typer.Option("--lr-latent", help="Stage-1 embedding learning rate.")] = 3e-3,
    lr_encoder: Annotated[float, typer.Option("--lr-encoder", help="Stage-2 learning rate.")] = 1e-4,
    noise_std: Annotated[float, typer.Option("--noise-std", help="Stage-1 Gaussian noise added to the pose codes (LORD's regulariser: less noise lets the pose codes carry more, and more of the identity).")] = 1.0,
    pose_decay: Annotated[float, typer.Option("--pose-decay", help="Stage-1 penalty on the pose codes' squared norm.")] = 1e-3,
    stage2_generator: Annotated[str, typer.Option("--stage2-generator", help="finetune: stage 2 trains the generator with the encoders, as the papers do; frozen: the encoders learn against the stage-1 generator.")] = "finetune",
    loss: Annotated[str, typer.Option("--loss", help="auto | vgg | lap | l1 (auto: VGG perceptual when its weights can be had, else lap).")] = "auto",
    width: Annotated[float, typer.Option("--width", help="Channel multiplier of the networks (1 = the papers' networks).")] = 1.0,
    identity_dim: Annotated[int, typer.Option("--identity-dim", help="Identity code size.")] = 256,
    pose_dim: Annotated[int, typer.Option("--pose-dim", help="Pose code size.")] = 128,
    fps: Annotated[float, typer.Option("--fps", help="Frames sampled per second of video.")] = 5.0,
    clip_seconds: Annotated[float, typer.Option("--clip-seconds", help="Cut videos into clips of this length, each an identity (0: whole videos).")] = 0.0,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", help="Checkpoints, samples and loss curves (default: OUTPUT with .work).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in the work folder.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on unreadable files instead of skipping them.")] = False,
    half: Annotated[bool, typer.Option("--half", help="Store the model in fp16 (half the size).")] = False,
    precision: Annotated[str, typer.Option("--precision", help="auto | fp32 | bf16 (auto: bf16 autocast on CUDA, fp32 on CPU; bf16 on a CPU with AMX is about 2x faster).")] = "auto",
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the generator (CUDA).")] = False,
    checkpoint_minutes: Annotated[float, typer.Option("--checkpoint-minutes", help="Also checkpoint this often within an epoch.")] = 5.0,
    seed: Seed = 0,
    device: Device = "auto",
    overwrite: Overwrite = False,
    json_out: Json = False,
    debug: Debug = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """Learn a model that separates identity from pose (LORD: latent optimisation, then encoders).

    Progress, checkpoints (every epoch; Ctrl-C writes one and exits 130), sample
    grids and the loss curve go to the work folder; --resume continues there.

    Example: posecli synth cars data --identities 50 && posecli train data -o cars.safetensors --epochs 20
    """
    with cli_errors(debug, quiet, verbose):
        from posecli.regions import CROP_MODES
        from posecli.errors import UsageError
        from posecli.training.api import train as run_train
        from posecli.training.loop import TrainOptions

        if crop not in CROP_MODES:
            raise UsageError(f"--crop {crop}: expected one of {', '.join(CROP_MODES)}")
        opts = TrainOptions(method=method, image_size=size, epochs=epochs, stage2_epochs=stage2_epochs,
                            batch_size=batch_size, lr_generator=lr_generator, lr_latent=lr_latent,
                            lr_encoder=lr_encoder, loss=loss, width=width, identity_dim=identity_dim,
                            pose_dim=pose_dim, noise_std=noise_std, pose_decay=pose_decay, seed=seed,
                            compile=compile_, stage2_generator=stage2_generator,
                            checkpoint_minutes=checkpoint_minutes)
        summary = run_train(data, output, opts, workdir=workdir, resume=resume, overwrite=overwrite,
                            device=device, crop=crop, fps=fps, clip_seconds=clip_seconds, strict=strict,
                            quiet=quiet, half=half, precision=precision)
        if json_out:
            emit_json(summary)
        elif not quiet:
            typer.echo(f"wrote {summary['output']} ({summary['images']} images, {summary['identities']} identities, "
                       f"loss {summary['loss']}, {summary['train_seconds']} s); samples in {summary['workdir']}", err=True)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
