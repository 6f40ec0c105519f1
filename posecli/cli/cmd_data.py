"""posecli data: the papers' datasets (already downloaded) into posecli's training layout."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from posecli.cli.common import Debug, Json, Overwrite, Quiet, Seed, SkipExisting, Verbose, cli_errors, emit_json

NAMES = ("cars3d", "smallnorb", "shapes3d", "chairs", "celeba", "kth")  # posecli.data.datasets.DATASETS


def _opt(flag: str, help: str, kind=str, metavar: str | None = None):
    return Annotated[Optional[kind], typer.Option(flag, help=help, metavar=metavar, show_default=False)]


def data_cmd(
    name: Annotated[str, typer.Argument(help=f"The dataset: {', '.join(NAMES)}.", metavar="NAME", show_default=False)],
    src: Annotated[str, typer.Argument(help="The dataset as downloaded and unpacked (a folder, or the file for "
                                       "cars3d.npz / 3dshapes.h5). Only read.", metavar="SRC", show_default=False)],
    out: Annotated[str, typer.Argument(help="Output folder (created; must be empty unless resuming or --overwrite).",
                                       metavar="OUT", show_default=False)],
    size: Annotated[int, typer.Option("--size", help="Image side in pixels (the papers: 64).", metavar="PX")] = 64,
    variant: _opt("--variant", "What identity and pose are: smallnorb lord | lord-poses | plain; shapes3d lord | "
                  "objects; kth frames | clips (default: the first).", metavar="NAME") = None,
    test_ids: _opt("--test-ids", "Comma-separated identities to hold out, instead of the paper's random draw "
                   "(smallnorb: toys, e.g. car3; kth clips: people, e.g. person02).", metavar="A,B,...") = None,
    test_count: _opt("--test-count", "Hold out this many identities, drawn with --seed (default: the paper's).",
                     int, "N") = None,
    test_fraction: _opt("--test-fraction", "Share of images held out, for splits by image (default: the paper's, 0.1).",
                        float, "F") = None,
    camera: _opt("--camera", "smallnorb: left | right | both stereo cameras (default left).", metavar="CAM") = None,
    crop: _opt("--crop", "Centre square of this many source pixels before resizing (celeba default 128, as LORD; "
               "chairs default none; kth default the largest square).", int, "PX") = None,
    fps: _opt("--fps", "kth: frames sampled per second (default: every frame, 25).", float, "F") = None,
    actions: _opt("--actions", "kth: comma-separated actions (default all six; LORD's code: handwaving).",
                  metavar="A,B") = None,
    scenarios: _opt("--scenarios", "kth: comma-separated scenarios d1..d4 (default all; LORD's code: d4).",
                    metavar="D,D") = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    skip_existing: SkipExisting = False,
    json_out: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    debug: Debug = False,
) -> None:
    """Turn a dataset of the papers, as its owners distribute it, into posecli's layout.

    Writes OUT/train/<identity>/<pose>.png and OUT/test/<identity>/<pose>.png
    (kth --variant clips: OUT/train/<clip>.mp4), OUT/labels.csv (path, identity,
    pose, split and the dataset's factors), OUT/train/labels.csv and
    OUT/test/labels.csv (paths from their folder) and OUT/dataset.json (options,
    split, counts). The split is by identity as in the papers (cars3d: 20 cars,
    chairs: 100, celeba: 1,000 identities, smallnorb: the official 25 toys) or by
    image where the paper splits so (smallnorb lord-poses, kth frames: 10%);
    seeded and the same on every run. Then: posecli train OUT/train ... and
    posecli eval OUT/test -m MODEL. Interrupted? Run again with --skip-existing.
    posecli never downloads a dataset: README "Datasets of the papers" says
    where to get each.

    Example: posecli data cars3d ~/datasets/cars data/cars3d && posecli train data/cars3d/train -o cars3d.safetensors
    """
    with cli_errors(debug, quiet, verbose):
        import functools

        from posecli.data.datasets import convert
        from posecli.progress import progress

        summary = convert(name, src, out, overwrite=overwrite, skip_existing=skip_existing,
                          progress=functools.partial(progress, quiet=quiet), size=size, seed=seed,
                          variant=variant, test_ids=test_ids, test_count=test_count, test_fraction=test_fraction,
                          camera=camera, crop=crop, fps=fps, actions=actions, scenarios=scenarios)
        if not quiet:
            tr, te = summary["splits"]["train"], summary["splits"]["test"]
            kept = f", {summary['kept']} kept from before" if summary["kept"] else ""
            typer.echo(f"posecli: data {name}: {summary['files']} files, {summary['identities']} identities "
                       f"(train {tr['files']} / {tr['identities']}, test {te['files']} / {te['identities']}){kept} "
                       f"in {summary['seconds']:.1f} s -> {summary['out']}", err=True)
        if json_out:
            emit_json(summary)


def register(app: typer.Typer) -> None:
    app.command("data")(data_cmd)
