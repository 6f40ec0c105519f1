"""posecli animate: one image's identity, driven by a video's poses, frame by frame."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from posecli.cli.common import (
    default_model_option,
    Debug,
    Device,
    Json,
    Overwrite,
    Quiet,
    SkipExisting,
    Verbose,
    cli_errors,
    emit_json,
)


def animate(
    id_image: Annotated[str, typer.Option("--id", help="The identity: an image file (cropped like the driving region).")],
    video: Annotated[str, typer.Option("--video", help="Driving video file, or a folder / quoted glob of frames.")],
    output: Annotated[str, typer.Option("-o", "--output", help="OUT.mp4, .webm, .gif (.mov, .mkv), or a folder for PNG frames.")],
    model: default_model_option("heads") = None,
    region: Annotated[Optional[str], typer.Option("--region", help="full: the whole frame is the object (default).")] = None,
    box: Annotated[Optional[str], typer.Option("--box", help="A fixed region x,y,w,h in pixels.")] = None,
    track: Annotated[Optional[str], typer.Option("--track", help="face: find the face in every frame (OpenCV), smoothed over time.")] = None,
    paste: Annotated[bool, typer.Option("--paste/--crop-only", help="Paste the generated crop back with a feathered edge, or write the crop alone (model size).")] = True,
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="Write driving | result next to each other.")] = False,
    smooth: Annotated[float, typer.Option("--smooth", help="Pose smoothing over time in seconds (one-euro filter, lowest cutoff 1/S Hz); 0 = off.")] = 0.25,
    smooth_filter: Annotated[str, typer.Option("--smooth-filter", help="euro (adapts to speed) or ema (fixed cutoff).")] = "euro",
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frame rate for a folder/glob of frames (default 25); for a video, resample to it.")] = None,
    id_crop: Annotated[str, typer.Option("--id-crop", help="auto (face with --track face, else center) | center | face | none.")] = "auto",
    margin: Annotated[float, typer.Option("--margin", help="With --track face: grow the detected face square by this fraction.")] = 0.6,
    feather: Annotated[float, typer.Option("--feather", help="Width of the soft paste edge, as a fraction of the box.")] = 0.15,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Do not carry the source's sound over.")] = False,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Frames per model call (default 16 on CPU, 64 on GPU).")] = None,
    precision: Annotated[str, typer.Option("--precision", help="auto (bf16 on CUDA and on CPUs with native bf16, AMX/AVX512-BF16; else fp32) | fp32 | bf16.")] = "auto",
    preset: Annotated[str, typer.Option("--preset", help="x264 speed preset for .mp4/.mov/.mkv output.")] = "veryfast",
    device: Device = "auto",
    overwrite: Overwrite = False,
    skip_existing: SkipExisting = False,
    json_out: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    debug: Debug = False,
) -> None:
    """Retarget a driving video onto the identity of one image.

    Each frame's region (--region full, --box or --track face) is encoded for
    its pose; the model generates the --id identity in that pose, which is put
    back into the frame. The output keeps the source's frame rate, length and
    sound; it appears only when complete.

    Example: posecli animate --id face.png --video talk.mp4 --track face -o out.mp4
    """
    with cli_errors(debug, quiet, verbose):
        from posecli.errors import OutputExistsError, UsageError

        chosen = [name for name, v in (("--region", region), ("--box", box), ("--track", track)) if v is not None]
        if len(chosen) > 1:
            raise UsageError(f"{' and '.join(chosen)}: give one way to find the object")
        if region is not None and region != "full":
            raise UsageError(f"--region {region}: only 'full' (use --box x,y,w,h or --track face for a part)")
        if track is not None and track != "face":
            raise UsageError(f"--track {track}: only 'face' can be tracked")
        if id_crop not in ("auto", "center", "face", "none"):
            raise UsageError(f"--id-crop {id_crop}: expected auto, center, face or none")

        from posecli.media.images import read_image
        from posecli.modelfile import load_model_or_default
        from posecli.pipelines.animate import animate as run_animate
        from posecli.pipelines.sources import check_output
        from posecli.regions import Box
        from posecli.runtime import resolve_device

        try:
            check_output(output, overwrite)  # before loading anything
        except OutputExistsError:
            if not skip_existing:
                raise
            if not quiet:
                typer.echo(f"posecli: {output} exists; skipped", err=True)
            if json_out:
                emit_json({"output": output, "skipped": True})
            return

        where = Box.parse(box, "--box") if box is not None else ("face" if track else "full")
        id_pixels = read_image(id_image)
        net = load_model_or_default(model, "heads", resolve_device(device))
        res = run_animate(net, id_pixels, video, output, region=where, smooth=smooth, smooth_filter=smooth_filter,
                          crop_only=not paste, side_by_side=side_by_side, fps=fps, id_crop=id_crop, margin=margin,
                          feather=feather, batch_size=batch_size, precision=precision, audio=not no_audio,
                          overwrite=overwrite, preset=preset, quiet=quiet)
        if json_out:
            emit_json(res.__dict__)
        elif not quiet:
            typer.echo(f"posecli: wrote {res.output}: {res.frames} frames at {res.fps:g} fps, {res.size[0]}x{res.size[1]}, "
                       f"in {res.seconds:.1f} s ({res.frames_per_s:.1f} frames/s)", err=True)


def register(app: typer.Typer) -> None:
    app.command("animate")(animate)
