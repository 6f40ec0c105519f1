"""posecli encode: identity and pose codes of images, to an .npz file or JSON lines."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from posecli.cli.common import (BatchSize, Crop, Debug, Device, Json, KeepGoing, ModelName, Overwrite, Quiet, Verbose,
                                cli_errors, shard_option, confirm, emit_json)

Images = Annotated[list[str], typer.Argument(help="Image files, folders, quoted globs, or '-' for stdin.",
                                             show_default=False, metavar="IMAGE")]
Output = Annotated[Optional[str], typer.Option("-o", "--output", help="The .npz file to write (optional with --json).", metavar="FILE.npz")]
ShardOpt = shard_option()


def encode(
    images: Images,
    model: ModelName,
    output: Output = None,
    crop: Crop = "center",
    batch_size: BatchSize = 64,
    device: Device = "auto",
    json_out: Json = False,
    overwrite: Overwrite = False,
    keep_going: KeepGoing = False,
    shard: ShardOpt = None,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    debug: Debug = False,
) -> None:
    """Write the identity and pose code of each image.

    The .npz holds float32 arrays `identity` (N x D_id) and `pose` (N x D_pose)
    and the image `paths`, in input order (load with numpy.load). --json prints
    one line per image: {"path", "identity", "pose"}.

    Example: posecli encode photos/ -m cars -o codes.npz
    """
    with cli_errors(debug, quiet, verbose):
        _run(images, model, output, crop, batch_size, device, json_out, overwrite, keep_going, quiet, shard)


def _run(images, model_name, output, crop, batch_size, device, json_out, overwrite, keep_going, quiet,
         shard_spec=None):
    import logging
    from pathlib import Path

    from posecli.errors import InputError, PoseCliError, UsageError
    from posecli.fileio import check_writable
    from posecli.inputs import IMAGE_EXTS, expand_inputs, is_video_only
    from posecli.regions import CROP_MODES

    log = logging.getLogger("posecli")
    if output is None and not json_out:
        raise UsageError("nothing to write: give -o CODES.npz and/or --json")
    if output == "-":
        raise UsageError("-o -: the .npz goes to a file; use --json for codes on stdout")
    if crop not in CROP_MODES:
        raise UsageError(f"--crop {crop}: expected one of {', '.join(CROP_MODES)}")
    paths = expand_inputs(images, IMAGE_EXTS)
    from posecli.batch import resolve_shard, shard_path, take_shard

    shard = resolve_shard(shard_spec)  # --shard I/N or the torchrun rank: this run's images, by file name
    paths = take_shard(paths, shard, key=lambda p: Path(p).name)
    if shard is not None and output is not None:
        output = str(shard_path(output, shard))  # each part writes its own FILE.shardIofN.npz
    if not paths:
        log.warning(f"nothing to do: no image falls to shard {shard}")
        return
    if paths.count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    if output is not None:
        check_writable(output, overwrite)  # fail before loading anything

    import numpy as np

    from posecli.media.images import read_image
    from posecli.modelfile import load_model
    from posecli.pipelines.encode import encode_prepared, prepare_pixels
    from posecli.progress import progress
    from posecli.runtime import resolve_device

    dev = resolve_device(device)
    net = load_model(model_name, dev)
    log.info(f"model {net.path} ({net.meta['method']}, {net.image_size}px) on {dev}")

    good: list[str] = []
    ids, poses, failed = [], [], []

    def flush(batch: list) -> None:
        if not batch:
            return
        i, p = encode_prepared(net, [c for _, c in batch], batch_size, dev)
        for k, (path, _) in enumerate(batch):
            good.append(path)
            if json_out:
                emit_json({"path": path, "identity": i[k].tolist(), "pose": p[k].tolist()})
        ids.append(i)
        poses.append(p)
        batch.clear()

    batch: list = []
    with progress(paths, total=len(paths), desc="encode", unit="img", quiet=quiet) as bar:
        for path in bar:
            try:
                if is_video_only(path):  # a .gif is read as its first frame (media.images)
                    raise InputError("encode takes images, not videos (extract frames first)", path)
                batch.append((path, prepare_pixels(net, read_image(path), crop, path)))
            except PoseCliError as e:
                if not keep_going:
                    raise
                failed.append(str(e))
            if len(batch) >= batch_size:
                flush(batch)
        flush(batch)

    if output is not None and good:
        _save(output, overwrite, np.concatenate(ids), np.concatenate(poses), good, str(net.path), crop)
    if failed:
        from posecli.batch import failure_summary

        raise failure_summary(failed, len(good), where=output)
    confirm(f"wrote the codes of {len(good)} image(s) to {output}" if output is not None
            else f"encoded {len(good)} image(s)")


def _save(output, overwrite, identity, pose, paths, model_path, crop) -> None:
    import numpy as np

    from posecli.fileio import atomic_path

    with atomic_path(output, overwrite) as tmp, open(tmp, "wb") as f:
        # A file object: np.savez would otherwise append .npz to the temp name.
        np.savez(f, identity=identity, pose=pose, paths=np.array(paths, dtype=str),
                 model=np.array(model_path), crop=np.array(crop))


def register(app: typer.Typer) -> None:
    app.command("encode")(encode)
