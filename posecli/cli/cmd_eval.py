"""posecli eval: the papers' metrics (transfer error, leakage) on labelled images."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from posecli.cli.common import (BatchSize, Crop, Debug, Device, Json, ModelName, Overwrite, Quiet, Seed, Verbose,
                                cli_errors, emit_json)

Data = Annotated[str, typer.Argument(help="A folder with labels.csv (columns path,identity,pose), or the CSV.",
                                     show_default=False)]
Pairs = Annotated[int, typer.Option("--pairs", min=1, help="Ordered (identity image, pose image) pairs to sample.")]
Output = Annotated[Optional[str], typer.Option("-o", "--output", help="Also write the JSON report to this file.")]
NoLeakage = Annotated[bool, typer.Option("--no-leakage", help="Skip the leakage classifiers.")]

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

    Example: posecli synth cars data/ --identities 10 && posecli eval data/ -m cars
    """
    with cli_errors(debug, quiet, verbose):
        _run(data, model, pairs, crop, batch_size, seed, device, json_out, output, overwrite, no_leakage, quiet)


def _run(data, model_name, pairs, crop, batch_size, seed, device, json_out, output, overwrite, no_leakage, quiet):
    import functools
    import json
    import logging

    from posecli.errors import UsageError
    from posecli.fileio import atomic_path, check_writable
    from posecli.regions import CROP_MODES

    log = logging.getLogger("posecli")
    if crop not in CROP_MODES:
        raise UsageError(f"--crop {crop}: expected one of {', '.join(CROP_MODES)}")
    if output == "-":
        raise UsageError("-o -: use --json for the report on stdout")
    if output is not None:
        check_writable(output, overwrite)  # fail before the work

    from posecli.eval import evaluate
    from posecli.eval.transfer import read_labels
    from posecli.modelfile import load_model
    from posecli.progress import progress
    from posecli.runtime import resolve_device, seed_everything

    read_labels(data)  # bad data fails before the model loads
    dev = resolve_device(device)
    seed_everything(seed)
    net = load_model(model_name, dev)
    log.info(f"model {net.path} ({net.meta['method']}, {net.image_size}px) on {dev}")
    report = evaluate(net, data, pairs=pairs, seed=seed, device=dev, leakage=not no_leakage,
                      batch_size=batch_size, progress=functools.partial(progress, quiet=quiet), crop=crop)
    if output is not None:
        with atomic_path(output, overwrite) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        from posecli.cli.common import confirm

        confirm(f"wrote the report to {output}")
    if json_out:
        emit_json(report)
    else:
        typer.echo(format_report(report))


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
