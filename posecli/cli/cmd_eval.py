"""posecli eval: the papers' metrics (transfer error, leakage) on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from posecli.cli.common import (BatchSize, Crop, Debug, Device, Json, ModelName, Overwrite, Quiet, Seed,
                                SkipExisting, Verbose, cli_errors, emit_json, shard_option)

Data = Annotated[str, typer.Argument(help="A folder with labels.csv (columns path,identity,pose), or the CSV.",
                                     show_default=False)]
Pairs = Annotated[int, typer.Option("--pairs", min=1, help="Ordered (identity image, pose image) pairs to sample.")]
Output = Annotated[Optional[str], typer.Option("-o", "--output", help="Also write the JSON report to this file.")]
NoLeakage = Annotated[bool, typer.Option("--no-leakage", help="Skip the leakage classifiers.")]
ShardOpt = shard_option()
Merge = Annotated[bool, typer.Option("--merge", help="Join the parts written by --shard I/N -o REPORT (same -o) "
                                                     "into the report, as one run would give it.")]

_FMT = {"mse": "{:.5f}", "psnr": "{:.2f}", "ssim": "{:.4f}", "lpips": "{:.4f}"}
_NAMES = {"mse": "MSE", "psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS"}


def eval_cmd(
    data: Data,
    model: ModelName,
    pairs: Pairs = 1000,
    crop: Crop = "center",
    batch_size: BatchSize = 128,
    seed: Seed = 0,
    device: Device = "auto",
    json_out: Json = False,
    output: Output = None,
    overwrite: Overwrite = False,
    no_leakage: NoLeakage = False,
    shard: ShardOpt = None,
    merge: Merge = False,
    skip_existing: SkipExisting = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    debug: Debug = False,
) -> None:
    """Measure pose transfer against ground truth, and leakage between the codes.

    For sampled pairs (x_i, x_j) of different identities whose ground truth (x_i's
    identity in x_j's pose) is in the data, the swap G(E_id(x_i), E_pose(x_j)) is
    compared with it by MSE, PSNR, SSIM and LPIPS (lower LPIPS is better; LORD
    reports 0.078 on Cars3D), beside two baselines that copy x_j or x_i.
    Leakage: test accuracy of a small classifier predicting identity from pose
    codes and pose from identity codes (ideal: chance).

    LPIPS needs torchvision's ImageNet AlexNet weights; offline it is reported
    as null, with a warning saying which file to place where.

    Big evaluations split: N runs with --shard I/N -o report.json (any machines,
    any order) each write report.shardIofN.npz; then --merge -o report.json
    joins them into the report one run gives. Under torchrun the ranks split
    the work and rank 0 writes the report.

    Example: posecli synth cars data/ --identities 10 && posecli eval data/ -m cars
    """
    with cli_errors(debug, quiet, verbose):
        _run(data, model, pairs, crop, batch_size, seed, device, json_out, output, overwrite, no_leakage, quiet,
             shard, merge, skip_existing)


def _run(data, model_name, pairs, crop, batch_size, seed, device, json_out, output, overwrite, no_leakage, quiet,
         shard_spec=None, merge=False, skip_existing=False):
    import functools

    from posecli.batch import resolve_shard, shard_path
    from posecli.cli.common import confirm
    from posecli.errors import UsageError
    from posecli.eval.parts import part_base
    from posecli.fileio import check_writable
    from posecli.regions import CROP_MODES

    if crop not in CROP_MODES:
        raise UsageError(f"--crop {crop}: expected one of {', '.join(CROP_MODES)}")
    if output == "-":
        raise UsageError("-o -: use --json for the report on stdout")
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing contradict each other; give one")
    shard = resolve_shard(shard_spec)
    if merge and shard_spec is not None:
        raise UsageError("--merge joins the parts of every shard; give it without --shard")
    if merge and output is None:
        raise UsageError("--merge: give -o REPORT.json, the -o of the --shard runs (their parts lie beside it)")
    if merge:
        shard = None
    part_only = shard is not None and shard.source == "--shard"  # this run writes one part
    if part_only and output is None:
        raise UsageError(f"--shard {shard}: give -o REPORT.json; this part is written to REPORT.shard{shard.index}"
                         f"of{shard.count}.npz, and --merge -o REPORT.json joins the parts")
    target = shard_path(part_base(output), shard) if part_only else output
    if target is not None:
        if skip_existing and Path(target).exists():
            confirm(f"{target} exists; skipped (--skip-existing)")
            return
        check_writable(target, overwrite)  # fail before the work

    from posecli.eval.transfer import read_labels
    from posecli.progress import progress

    labels = read_labels(data)  # bad data fails before the model loads
    if merge:
        report = _merge(labels, model_name, output, not no_leakage)
    else:
        report = _evaluate(labels, model_name, pairs, crop, batch_size, seed, device, not no_leakage,
                           functools.partial(progress, quiet=quiet), shard, target if part_only else None,
                           overwrite, json_out)
        if report is None:  # this run wrote a part, or is a torchrun rank other than 0
            return
    if output is not None:
        write_report(report, output, overwrite)
    if json_out:
        emit_json(report)
    else:
        typer.echo(format_report(report))


def write_report(report: dict, output, overwrite: bool) -> None:
    import json

    from posecli.cli.common import confirm
    from posecli.fileio import atomic_path

    with atomic_path(output, overwrite) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    confirm(f"wrote the report to {output}")


def _evaluate(labels, model_name, pairs, crop, batch_size, seed, device, leakage, progress, shard, part_path,
              overwrite, json_out):
    """One run's evaluation: the report; or, for --shard I/N, its part written to ``part_path``
    (None returned); or under torchrun this rank's part, gathered on rank 0 (the report there)."""
    import logging

    from posecli.cli.common import confirm
    from posecli.eval import evaluate_part, report_from_parts
    from posecli.eval.parts import check_parts, gather, save_part
    from posecli.modelfile import load_model
    from posecli.runtime import resolve_device, seed_everything
    from posecli.training import distributed as D

    log = logging.getLogger("posecli")
    dev = resolve_device(device)
    ranks = None
    if shard is not None and shard.source == "torchrun":
        ranks, dev = D.setup(dev)
    try:
        seed_everything(seed)
        net = load_model(model_name, dev)
        log.info(f"model {net.path} ({net.meta['method']}, {net.image_size}px) on {dev}")
        part = evaluate_part(net, labels, pairs, seed, dev, batch_size, progress, crop, shard)
        if part_path is not None:
            save_part(part, part_path, overwrite)
            confirm(f"wrote part {shard} ({part.transfer.n} of {part.meta['pairs']} pairs, {len(part.index)} of "
                    f"{part.meta['images']} images) to {part_path}; when all {shard.count} parts are written, "
                    f"--merge joins them")
            if json_out:
                emit_json({"part": str(part_path), "shard": str(shard), "pairs": part.transfer.n,
                           "images": len(part.index)})
            return None
        parts = [part] if ranks is None else gather(part, ranks)
    finally:
        if ranks is not None:
            D.teardown()
    if parts is None:
        return None
    if len(parts) > 1:
        check_parts(parts, [f"rank {p.meta['shard'][0]}" for p in parts])
    return report_from_parts(parts, labels, leakage)


def _merge(labels, model_name, output, leakage: bool) -> dict:
    """The report of the parts beside ``output``, checked against this data and model."""
    import logging

    from posecli.eval import report_from_parts
    from posecli.eval.parts import check_parts, find_parts, load_part
    from posecli.fileio import file_sha256
    from posecli.modelfile import resolve_model

    paths = find_parts(output)
    parts = [load_part(p) for p in paths]
    check_parts(parts, paths, file_sha256(labels.csv_path), file_sha256(resolve_model(model_name)))
    logging.getLogger("posecli").info(f"merging {len(parts)} parts: {', '.join(p.name for p in paths)}")
    return report_from_parts(parts, labels, leakage)


def _num(metric: str, value) -> str:
    return "n/a" if value is None else _FMT[metric].format(value)


def format_report(r: dict) -> str:
    """The human-readable report: a metric table, then leakage with chance."""
    lines = [f"data   {r['data']}: {r['images']} images, {r['identities']} identities, {r['poses']} poses",
             f"model  {r['model']} ({r['method'] or '?'}, {r['image_size']}px, crop {r['crop']}); "
             f"{r['pairs']} pairs, seed {r['seed']}",
             "",
             f"{'transfer':<11}{'swap':>10}{'copy pose':>12}{'copy identity':>15}{'reconstruction':>16}"]
    for m in ("mse", "psnr", "ssim", "lpips"):
        t = r["transfer"][m]
        lines.append(f"{_NAMES[m]:<11}{_num(m, t['swap']):>10}{_num(m, t['copy_pose']):>12}"
                     f"{_num(m, t['copy_identity']):>15}{_num(m, r['reconstruction'][m]):>16}")
    ratio = r["transfer_mse_over_best_copy"]
    lines.append(f"swap MSE / best copy MSE: {'n/a' if ratio is None else f'{ratio:.3f}'} (below 1: better than copying)")
    to_pose = r["transfer"]["mse"].get("swap_to_pose")
    if to_pose is not None:
        lines.append(f"swap MSE to the pose image: {to_pose:.4f} (the truth's: {r['transfer']['mse']['copy_pose']:.4f}; "
                     "far below it: the model copies the pose image)")
    if not r["lpips_available"]:
        lines.append("LPIPS n/a: its ImageNet backbone weights are unavailable (see the warning on stderr)")
    leak = r.get("leakage")
    if leak:
        lines += ["", f"{'leakage (test accuracy)':<28}{'accuracy':>9}{'chance':>9}{'classes':>9}"]
        for key, name in (("identity_from_pose", "identity from pose codes"), ("pose_from_identity", "pose from identity codes")):
            d = leak[key]
            acc = "n/a" if d["accuracy"] is None else f"{d['accuracy']:.3f}"
            chance = "n/a" if d["chance"] is None else f"{d['chance']:.3f}"
            lines.append(f"{name:<28}{acc:>9}{chance:>9}{d['classes']:>9}")
        lines.append(f"chance = {leak['chance_kind']}; lower accuracy = less leakage")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
