"""posecli swap: the identity of one image in the pose of another, for every pair."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from posecli.cli.common import (BatchSize, Crop, Debug, Device, Json, KeepGoing, Overwrite, Quiet, SkipExisting, Verbose,
                                cli_errors, shard_option, confirm, default_model_option, emit_json)

DEFAULT_MODEL = "cars"

Ids = Annotated[list[str], typer.Option("--id", help="Identity image(s): a file, folder, quoted glob or '-' "
                                        "(repeatable).", show_default=False, metavar="IMG")]
Poses = Annotated[list[str], typer.Option("--pose", help="Pose image(s): a file, folder, quoted glob or '-' "
                                          "(repeatable).", show_default=False, metavar="IMG")]
ModelOpt = default_model_option(DEFAULT_MODEL)
ShardOpt = shard_option()
Output = Annotated[Optional[str], typer.Option(
    "-o", "--output", help="One pair: the image file ('-' = PNG on stdout). Several pairs: a folder, "
    "each result named <idstem>__<posestem>.png.", metavar="OUT")]
Grid = Annotated[Optional[str], typer.Option("--grid", help="Also draw the identity x pose matrix to this image "
                                             "(pose inputs on top, identity inputs on the left).",
                                             metavar="FILE.png")]
Size = Annotated[Optional[int], typer.Option("--size", help="Resize results to PX x PX [default: the model's size].",
                                             metavar="PX")]


def swap(
    ids: Ids,
    poses: Poses,
    model: ModelOpt = None,
    output: Output = None,
    grid: Grid = None,
    crop: Crop = "center",
    size: Size = None,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    overwrite: Overwrite = False,
    skip_existing: SkipExisting = False,
    keep_going: KeepGoing = False,
    shard: ShardOpt = None,
    json_out: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    debug: Debug = False,
) -> None:
    """Put the identity of each --id image into the pose of each --pose image.

    One --id and one --pose image give one image at -o. Several give every
    pair, written into the -o folder as <idstem>__<posestem>.png (identity
    first). --json prints {"id", "pose", "output"} per written file.

    Example: posecli swap --id car.png --pose views/ -m cars -o out/ --grid grid.png
    """
    with cli_errors(debug, quiet, verbose):
        _run(ids, poses, model, output, grid, crop, size, batch_size, device, overwrite, skip_existing, keep_going,
             json_out, quiet, shard)


def _stem(path: str) -> str:
    from pathlib import Path

    return "stdin" if path == "-" else Path(path).stem


def _expand(specs: list[str], flag: str) -> list[str]:
    from pathlib import Path

    from posecli.errors import InputError
    from posecli.inputs import IMAGE_EXTS, expand_inputs, is_video_only

    paths = expand_inputs(specs, IMAGE_EXTS)
    for p in paths:
        if is_video_only(p):  # a .gif is read as its first frame (media.images)
            raise InputError(f"{flag} is a video; swap takes images (to drive an image with a video use "
                             f"`posecli animate`)", p)
    return paths


def _outputs(id_paths, pose_paths, output) -> dict:
    """(id index, pose index) -> output Path, or None for stdout / no per-pair output."""
    import os
    from pathlib import Path

    from posecli.errors import UsageError

    pairs = [(a, b) for a in range(len(id_paths)) for b in range(len(pose_paths))]
    if output is None or output == "-":
        if output == "-" and len(pairs) > 1:
            raise UsageError(f"-o -: stdout takes one image, not {len(pairs)} pairs; give a folder")
        return {p: None for p in pairs}
    out = Path(output)
    as_folder = len(pairs) > 1 or out.is_dir() or output.endswith(("/", os.sep))
    if not as_folder:
        return {pairs[0]: out}
    if out.exists() and not out.is_dir():
        raise UsageError(f"is a file; {len(pairs)} pairs are written into a folder", out)
    names: dict = {}
    for a, b in pairs:
        name = f"{_stem(id_paths[a])}__{_stem(pose_paths[b])}.png"
        if name in names:
            raise UsageError(f"two pairs would both be written to {name} (inputs with the same file name); "
                             f"rename one or swap them in separate runs", out)
        names[name] = (a, b)
    return {pair: out / name for name, pair in names.items()}


def _shard_pairs(out_of: dict, id_paths, pose_paths, grid, shard_spec) -> dict:
    """The pairs of this run's --shard (or torchrun rank), each named by its output file name."""
    from posecli.batch import resolve_shard, take_shard
    from posecli.errors import UsageError

    shard = resolve_shard(shard_spec)
    if shard is None:
        return out_of
    if grid is not None:
        raise UsageError(f"--grid draws every pair, and this run does part {shard} of them ({shard.source}); "
                         f"draw the grid in a run without --shard (or --shard 0/1)")
    mine = take_shard(out_of, shard, key=lambda pair: f"{_stem(id_paths[pair[0]])}__{_stem(pose_paths[pair[1]])}.png")
    return {pair: out_of[pair] for pair in mine}


def _check_image_suffix(path) -> None:
    """Refuse an output type we cannot write before any work is done."""
    from pathlib import Path

    from posecli.errors import UsageError
    from posecli.media.images import WRITE_EXTS  # the types posecli writes (it also reads gif)

    if Path(path).suffix.lower() not in WRITE_EXTS:
        raise UsageError(f"cannot write images as '{Path(path).suffix or '(no extension)'}' "
                         f"(use {', '.join(e[1:] for e in WRITE_EXTS)})", path)




def _run(ids, poses, model_name, output, grid, crop, size, batch_size, device, overwrite, skip_existing, keep_going,
         json_out, quiet, shard_spec=None):
    import logging
    from pathlib import Path

    from posecli.errors import OutputExistsError, PoseCliError, UsageError
    from posecli.regions import CROP_MODES

    log = logging.getLogger("posecli")
    if output is None and grid is None:
        raise UsageError("nothing to write: give -o OUT and/or --grid FILE.png")
    if crop not in CROP_MODES:
        raise UsageError(f"--crop {crop}: expected one of {', '.join(CROP_MODES)}")
    if size is not None and size < 1:
        raise UsageError(f"--size {size}: expected a positive number of pixels")
    stdout_users = [n for n, on in (("-o -", output == "-"), ("--grid -", grid == "-"), ("--json", json_out)) if on]
    if len(stdout_users) > 1:
        raise UsageError(f"{' and '.join(stdout_users)} would all write to stdout; pick one")
    id_paths, pose_paths = _expand(ids, "--id"), _expand(poses, "--pose")
    if (id_paths + pose_paths).count("-") > 1:
        raise UsageError("'-' (stdin) can be read only once")
    out_of = _outputs(id_paths, pose_paths, output)
    out_of = _shard_pairs(out_of, id_paths, pose_paths, grid, shard_spec)
    if not out_of:
        log.warning("nothing to do: no pair falls to this shard")
        return
    for target in [p for p in out_of.values() if p is not None] + ([grid] if grid not in (None, "-") else []):
        _check_image_suffix(target)
    from posecli.fileio import check_folder_writable

    for target in {Path(p).parent: p for p in [*out_of.values(), grid] if p not in (None, "-")}.values():
        check_folder_writable(Path(target).parent, target)  # read-only or full: before any work

    # Existing outputs: refuse (before any work), skip, or let --keep-going report them.
    def exists(p) -> bool:
        return p is not None and p != "-" and Path(p).exists() and not overwrite

    skipped = {pair for pair, p in out_of.items() if exists(p) and skip_existing}
    clash = [p for pair, p in out_of.items() if exists(p) and not skip_existing]
    if clash and not keep_going:
        raise OutputExistsError(clash[0])
    draw_grid = grid is not None and not (exists(grid) and skip_existing)
    if grid is not None and exists(grid) and not skip_existing:
        raise OutputExistsError(grid)
    need = list(out_of) if draw_grid else [pair for pair in out_of if pair not in skipped]
    if skipped:
        log.info(f"skipping {len(skipped)} existing output(s)")
    if not need:
        log.warning("nothing to do: every output exists (--skip-existing)")
        return

    import numpy as np

    from posecli.batch import run_batch
    from posecli.grid import make_grid
    from posecli.media.images import read_image, write_image
    from posecli.pipelines.encode import prepare_pixels
    from posecli.pipelines.swap import encode_identities, encode_poses, generate_pairs
    from posecli.progress import progress
    from posecli.modelfile import load_model_or_default
    from posecli.runtime import resolve_device

    dev = resolve_device(device)
    net = load_model_or_default(model_name, DEFAULT_MODEL, dev)
    log.info(f"model {net.path} ({net.meta['method']}, {net.image_size}px) on {dev}")

    # Read each input once (a file may be both an identity and a pose input).
    crops: dict[str, np.ndarray] = {}
    failed: list[str] = []

    def load(path: str) -> bool:
        if path not in crops:
            try:
                crops[path] = prepare_pixels(net, read_image(path), crop, path)
            except PoseCliError as e:
                if not keep_going:
                    raise
                crops[path] = None
                failed.append(str(e))
        return crops[path] is not None

    good_a = [a for a in sorted({a for a, _ in need}) if load(id_paths[a])]
    good_b = [b for b in sorted({b for _, b in need}) if load(pose_paths[b])]
    row, col = {a: r for r, a in enumerate(good_a)}, {b: c for c, b in enumerate(good_b)}
    todo = [(row[a], col[b]) for a, b in need if a in row and b in col]

    cells, n_written = None, 0
    if draw_grid and todo:
        side = size or net.image_size
        cells = np.zeros((len(good_a), len(good_b), side, side, 3), np.uint8)
    if todo:
        identity = encode_identities(net, [crops[id_paths[a]] for a in good_a], batch_size, dev)
        pose = encode_poses(net, [crops[pose_paths[b]] for b in good_b], batch_size, dev)

        def results():
            for (r, c), img in generate_pairs(net, identity, pose, todo, batch_size, size):
                if cells is not None:
                    cells[r, c] = img
                yield (good_a[r], good_b[c]), img

        def write(item):
            (a, b), img = item
            target = out_of[(a, b)]
            if (a, b) in skipped:
                return None
            write_image("-" if target is None else target, img, overwrite=overwrite)
            if json_out:
                emit_json({"id": id_paths[a], "pose": pose_paths[b], "output": str(target or "-")})
            return target

        with progress(total=len(todo), desc="swap", unit="pair", quiet=quiet) as bar:
            if output is None:  # grid only
                for _ in results():
                    bar.update(1)
            else:
                res = run_batch(results(), write, output_of=lambda it: None if it[0] in skipped else out_of[it[0]],
                                name_of=lambda it: f"{id_paths[it[0][0]]} x {pose_paths[it[0][1]]}",
                                overwrite=overwrite, skip_existing=skip_existing, keep_going=keep_going, bar=bar)
                failed += [msg for _, msg in res.failed]
                n_written = sum(1 for t in res.done if t is not None)
    wrote = [f"{n_written} image(s)" + (f" to {output}" if output != "-" else " to stdout")] if n_written else []

    if cells is not None:
        image = make_grid([crops[id_paths[a]] for a in good_a], [crops[pose_paths[b]] for b in good_b], cells)
        write_image(grid, image, overwrite=overwrite)
        wrote.append(f"the {len(good_a)} x {len(good_b)} grid to {grid if grid != '-' else 'stdout'}")
        if json_out:
            emit_json({"grid": grid, "id": [id_paths[a] for a in good_a], "pose": [pose_paths[b] for b in good_b]})

    if failed:
        from posecli.batch import failure_summary

        raise failure_summary(failed, n_written, len(skipped), where=output)
    if wrote:
        confirm("wrote " + " and ".join(wrote))


def register(app: typer.Typer) -> None:
    app.command("swap")(swap)
