"""posecli synth: synthetic ground-truth datasets (toy cars, toy heads, a street scene)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from posecli.cli.common import Debug, Json, Overwrite, Quiet, Seed, cli_errors, emit_json

synth_app = typer.Typer(
    help="Render synthetic datasets whose identities and poses are known (no download needed).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

Out = Annotated[str, typer.Argument(help="Output folder (created; must be empty unless --overwrite).",
                                    show_default=False, metavar="OUT")]
Identities = Annotated[int, typer.Option("-n", "--identities", help="Number of identities.", metavar="N")]
Size = Annotated[int, typer.Option("--size", help="Image side in pixels (16..1024).", metavar="PX")]
Workers = Annotated[Optional[int], typer.Option("--workers", help="Rendering processes (default: min(2, CPUs)); "
                                                "the output does not depend on it.", metavar="N", show_default=False)]


def _run(kind: str, fn, kwargs: dict, json_out: bool, quiet: bool, total: int) -> None:
    from posecli.fileio import new_folder
    from posecli.progress import progress

    with new_folder(kwargs["out"]):  # a failed run leaves no empty folder it made
        if kind == "scene":  # a handful of images: no bar
            summary = fn(**kwargs)
        else:
            with progress(total=total, desc=f"synth {kind}", unit="img", quiet=quiet) as bar:
                summary = fn(progress=bar.update, **kwargs)
    if not quiet:
        extra = f", {summary['videos']} videos" if summary.get("videos") else ""
        typer.echo(f"posecli: synth {kind}: {summary['images']} images{extra} in {summary['seconds']:.1f} s "
                   f"-> {summary['out']}", err=True)
    if json_out:
        emit_json(summary)


@synth_app.command("cars")
def cars(
    out: Out,
    identities: Identities = 100,
    size: Size = 64,
    azimuths: Annotated[int, typer.Option("--azimuths", help="Azimuth steps over 360 degrees.", metavar="N")] = 24,
    elevations: Annotated[int, typer.Option("--elevations", help="Elevation steps over 0..--max-elevation degrees (1: half of it).", metavar="N")] = 4,
    max_elevation: Annotated[float, typer.Option("--max-elevation", help="The highest elevation in degrees (synth scene's cars stand at 0..10).", metavar="DEG")] = 30.0,
    seed: Seed = 0,
    workers: Workers = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Toy cars (like Cars3D): identity = the car, pose = azimuth x elevation.

    Writes OUT/car_NNNN/azAA_elE.png for every car and pose, OUT/labels.csv
    (path, identity, pose, azimuth, elevation and the car's factors: body type,
    colours, details) and OUT/synth.json. Azimuth 0 shows the front (pale
    headlights), 180 the back (red tail lights). Background: plain RGB
    (230, 230, 230). The same seed gives byte-identical files.

    Example: posecli synth cars data/cars --identities 20 --size 64
    """
    with cli_errors(debug, quiet):
        from posecli.data.synth.cars import render_cars

        kw = dict(out=out, identities=identities, size=size, azimuths=azimuths, elevations=elevations, seed=seed,
                  elev_range=(0.0, max_elevation), workers=workers, overwrite=overwrite)
        _run("cars", render_cars, kw, json_out, quiet, max(0, identities * azimuths * elevations))


@synth_app.command("heads")
def heads(
    out: Out,
    identities: Identities = 100,
    size: Size = 64,
    yaws: Annotated[int, typer.Option("--yaws", help="Yaw steps over -60..60 degrees.", metavar="N")] = 7,
    pitches: Annotated[int, typer.Option("--pitches", help="Pitch steps over -30..30 degrees.", metavar="N")] = 5,
    mouths: Annotated[int, typer.Option("--mouths", help="Mouth openings over 0..1.", metavar="N")] = 3,
    video: Annotated[bool, typer.Option("--video", help="Also write talking-head clips with sound to OUT/videos/.")] = False,
    clips: Annotated[int, typer.Option("--clips", help="Clips per identity (with --video).", metavar="N")] = 1,
    clip_seconds: Annotated[float, typer.Option("--clip-seconds", help="Length of each clip.", metavar="S")] = 4.0,
    fps: Annotated[float, typer.Option("--fps", help="Frame rate of the clips.", metavar="F")] = 25.0,
    seed: Seed = 0,
    workers: Workers = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Toy heads: identity = the face, pose = yaw x pitch x mouth opening.

    Writes OUT/head_NNNN/yYY_pP_mM.png, OUT/labels.csv (path, identity, pose,
    yaw, pitch, mouth and the face's factors) and OUT/synth.json. Yaw > 0 turns
    the face towards the image's left, pitch > 0 tilts it up. With --video,
    also OUT/videos/head_NNNN_K.mp4 (the head talking: smooth pose drift, a
    moving mouth and a 16 kHz voice that follows it) and OUT/videos.csv with
    the per-frame yaw, pitch and mouth.

    Example: posecli synth heads data/heads --identities 10 --video --clips 2
    """
    with cli_errors(debug, quiet):
        from posecli.data.synth.heads import render_heads

        kw = dict(out=out, identities=identities, size=size, yaws=yaws, pitches=pitches, mouths=mouths, seed=seed,
                  video=video, clips_per_identity=clips, clip_seconds=clip_seconds, fps=fps, workers=workers,
                  overwrite=overwrite)
        frames = identities * clips * max(1, int(round(clip_seconds * fps))) if video else 0
        _run("heads", render_heads, kw, json_out, quiet, max(0, identities * yaws * pitches * mouths + frames))


@synth_app.command("scene")
def scene(
    out: Out,
    cars: Annotated[int, typer.Option("--cars", help="Cars in the street (1..20).", metavar="K")] = 4,
    width: Annotated[int, typer.Option("--width", help="Scene width in pixels.", metavar="W")] = 512,
    height: Annotated[int, typer.Option("--height", help="Scene height in pixels.", metavar="H")] = 320,
    identity: Annotated[Optional[int], typer.Option("--identity", help="Replacement car index (car_NNNN of "
                                                    "`synth cars` with the same seed; default: one not in the scene).",
                                                    metavar="N", show_default=False)] = None,
    pool: Annotated[int, typer.Option("--pool", help="Scene cars are drawn from car_0000 .. car_<pool-1>.", metavar="N")] = 100,
    size: Annotated[int, typer.Option("--size", help="Side of replacement.png in pixels.", metavar="PX")] = 64,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    json_out: Json = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """A street with toy cars at known boxes, and the same street with the cars replaced.

    Writes OUT/scene.png, OUT/boxes.json (per car: box [x, y, w, h] framing
    the car as in the dataset images, bbox of its pixels, identity, azimuth,
    elevation, car_params), OUT/scene_replaced.png (every car replaced by ONE
    identity, same pose and box), OUT/replacement.png (that identity at
    azimuth 45, elevation 10), OUT/background.png (the empty street) and
    OUT/masks/car_K.png (each car's anti-aliased alpha, in boxes.json order);
    for oracle checks, OUT/replaced/car_K.png (the replacement car's true
    render in box K, on the plain dataset background) and
    OUT/replaced_masks/car_K.png (its alpha in the scene).

    Example: posecli synth scene data/scene --cars 4 --identity 7
    """
    with cli_errors(debug, quiet):
        from posecli.data.synth.scene import render_scene

        kw = dict(out=out, cars=cars, width=width, height=height, seed=seed, identity=identity, pool=pool, size=size,
                  overwrite=overwrite)
        _run("scene", render_scene, kw, json_out, quiet, 0)


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")
