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
    shard_option,
)


def animate(
    id_image: Annotated[str, typer.Option("--id", help="The identity: an image file (cropped like the driving region).")],
    video: Annotated[list[str], typer.Option("--video", help="Driving video file, or a folder / quoted glob of frames. Several videos (--video repeated, a quoted glob or a folder of videos) drive one output each, OUT/<video name>.mp4 in the -o folder.")],
    output: Annotated[str, typer.Option("-o", "--output", help="OUT.mp4, .webm, .gif (.mov, .mkv), or a folder for PNG frames (for several videos: the folder of their outputs).")],
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
    shard: shard_option() = None,
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

        videos = driving_videos(video)
        if videos is not None:  # several videos: one output each, in the -o folder (--shard splits them)
            _animate_many(videos, id_image, output, shard, skip_existing, json_out, quiet, dict(
                model=model, box=box, track=track, smooth=smooth, smooth_filter=smooth_filter, paste=paste,
                side_by_side=side_by_side, fps=fps, id_crop=id_crop, margin=margin, feather=feather,
                batch_size=batch_size, precision=precision, no_audio=no_audio, preset=preset, device=device,
                overwrite=overwrite))
            return
        video = video[0]
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


def driving_videos(specs: list[str]) -> list[str] | None:
    """The video files when --video names several (repeated, a quoted glob of videos or a folder
    of videos without image frames); None for one video or one folder / glob of frames."""
    from pathlib import Path

    from posecli.errors import UsageError
    from posecli.inputs import IMAGE_EXTS, VIDEO_EXTS, glob_matches, has_magic, is_video_only

    def videos_of(spec: str) -> list[str] | None:
        p = Path(spec)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if any(f.suffix.lower() in IMAGE_EXTS and f.suffix.lower() != ".gif" for f in files):
                return None  # a folder of frames
            found = [str(f) for f in files if f.suffix.lower() in VIDEO_EXTS]
            return found or None
        if not p.exists() and has_magic(spec):
            found = glob_matches(spec)
            return found if all(is_video_only(f) for f in found) else None
        return [spec]

    if len(specs) == 1:
        many = videos_of(specs[0])
        return many if many is not None and (Path(specs[0]).is_dir() or has_magic(specs[0])) else None
    out: list[str] = []
    for spec in specs:
        many = videos_of(spec)
        if many is None:
            raise UsageError(f"--video {spec}: a folder or glob of frames is one video; give it alone")
        out += many
    return out


def _animate_many(videos: list[str], id_image: str, output: str, shard_spec, skip_existing: bool, json_out: bool,
                  quiet: bool, o: dict) -> None:
    """Each video -> OUTPUT/<video stem>.mp4, the model loaded once; --shard / torchrun split the videos."""
    import logging
    from pathlib import Path

    from posecli.batch import resolve_shard, run_batch, take_shard
    from posecli.errors import UsageError
    from posecli.media.images import read_image
    from posecli.modelfile import load_model_or_default
    from posecli.pipelines.animate import animate as run_animate
    from posecli.regions import Box
    from posecli.runtime import resolve_device

    log = logging.getLogger("posecli")
    out_dir = Path(output)
    if output == "-" or out_dir.suffix or out_dir.is_file():
        raise UsageError(f"-o {output}: {len(videos)} videos give one output each; give a folder (OUT/)")
    out_of = {v: out_dir / f"{Path(v).stem}.mp4" for v in videos}
    if len(set(out_of.values())) != len(out_of):
        raise UsageError("two driving videos share a file name; their outputs would collide")
    videos = take_shard(videos, resolve_shard(shard_spec), key=lambda v: Path(v).name)
    if not videos:
        log.warning("nothing to do: no video falls to this shard")
        return
    where = Box.parse(o["box"], "--box") if o["box"] is not None else ("face" if o["track"] else "full")
    id_pixels = read_image(id_image)
    net = load_model_or_default(o["model"], "heads", resolve_device(o["device"]))

    def one(v: str):
        res = run_animate(net, id_pixels, v, out_of[v], region=where, smooth=o["smooth"],
                          smooth_filter=o["smooth_filter"], crop_only=not o["paste"], side_by_side=o["side_by_side"],
                          fps=o["fps"], id_crop=o["id_crop"], margin=o["margin"], feather=o["feather"],
                          batch_size=o["batch_size"], precision=o["precision"], audio=not o["no_audio"],
                          overwrite=o["overwrite"], preset=o["preset"], quiet=quiet)
        if json_out:
            emit_json(res.__dict__)
        return res

    res = run_batch(videos, one, output_of=lambda v: out_of[v], overwrite=o["overwrite"], skip_existing=skip_existing)
    if res.skipped:
        log.warning(f"skipped {len(res.skipped)} existing output(s) (--skip-existing)")
    if not quiet and res.done:
        typer.echo(f"posecli: wrote {len(res.done)} video(s) to {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("animate")(animate)
