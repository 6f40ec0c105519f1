"""animate against ground truth: does the result follow the head and the mouth?

    .venv/bin/python benchmarks/animate_fidelity.py [--model heads] [--pairs 4] [--seconds 6] [--append]

The synthetic renderer knows every frame's pose, so the ideal output exists:
for each pair, identity B's talking clip (posecli.data.synth.talking: a smooth
head path and syllables) drives a face A that no model saw, and A is rendered
in B's pose of every frame. ``animate`` (the library call behind the command,
``--region full``) then runs at several ``--smooth`` strengths. Reported:

- MSE and SSIM of the output against the ground truth, and of two baselines:
  the --id image itself (no motion) and the driving frame (no identity). The
  clips stay near frontal, so the --id image is already close in MSE, which
  also rewards blur: a sharp face drawn a pixel off costs more than a blurred one;
- mouth: over frames, the correlation between the clip's mouth opening and the
  output's, where the output's opening is the projection of (output - A closed)
  on (A open - A closed), both rendered in that frame's head pose. 1: the
  output opens and closes with the clip; 0: no mouth motion;
- jitter and flicker (posecli.pipelines.smoothing.JitterMeter).

``--append`` adds the table to benchmarks/RESULTS.md with hardware, date, commit
and command.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

SEEDS = (1234, 4321)  # identities drawn for A and B: not the bundled model's training seed (13)


def clip_path(seconds: float, fps: float, index: int, yaw_range=(-40.0, 40.0), pitch_range=(-20.0, 20.0)):
    """(yaw, pitch, mouth) per frame of a talking clip, as posecli.data.synth.talking draws it."""
    from posecli.data.synth import output as ds
    from posecli.data.synth.talking import envelope, pose_path, syllables

    rng = ds.rng_for(SEEDS[1], index, 0x7A1C, 0)
    times = np.arange(int(round(seconds * fps))) / fps
    yaw, pitch = pose_path(rng, times, yaw_range, pitch_range)
    mouth, _ = envelope(syllables(rng, seconds), times)
    return yaw, pitch, mouth


def run_pair(model, index: int, seconds: float, fps: float, smooths, workdir: Path) -> dict:
    from posecli.data.synth.heads import head_params, render_head
    from posecli.eval.metrics import ssim
    from posecli.media.convert import to_tensor
    from posecli.media.images import read_image
    from posecli.pipelines.animate import animate

    s = model.image_size
    a, b = head_params(SEEDS[0], index), head_params(SEEDS[1], index)
    yaw, pitch, mouth = clip_path(seconds, fps, index)
    driving = [render_head(b, y, p, m, s) for y, p, m in zip(yaw, pitch, mouth)]
    truth = to_tensor(np.stack([render_head(a, y, p, m, s) for y, p, m in zip(yaw, pitch, mouth)]))
    closed = to_tensor(np.stack([render_head(a, y, p, 0.0, s) for y, p in zip(yaw, pitch)]))
    opened = to_tensor(np.stack([render_head(a, y, p, 1.0, s) for y, p in zip(yaw, pitch)]))
    id_image = render_head(a, 0.0, 0.0, 0.0, s)
    direction = (opened - closed).flatten(1)

    def score(x):
        return {"mse": float((x - truth).pow(2).mean()), "ssim": float(ssim(x, truth).mean())}

    rows = {"copy identity": score(to_tensor(id_image).expand_as(truth)), "copy driving": score(to_tensor(np.stack(driving)))}
    for smooth in smooths:
        out_dir = workdir / f"pair{index}_smooth{round(smooth * 1000)}ms"
        res = animate(model, id_image, driving, out_dir, smooth=smooth, fps=fps, quiet=True)
        frames = sorted(out_dir.glob("*.png"))
        out = to_tensor(np.stack([read_image(f) for f in frames]))
        opening = ((out - closed).flatten(1) * direction).sum(1) / direction.pow(2).sum(1).clamp_min(1e-8)
        corr = float(np.corrcoef(opening.numpy(), mouth)[0, 1])
        rows[f"animate --smooth {smooth:g}"] = {**score(out), "mouth": corr, "jitter": res.jitter,
                                                "flicker": res.flicker}
    return rows


def main() -> None:
    from posecli.modelfile import load_model
    from posecli.pipelines.smoothing import DEFAULT_SMOOTH

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="heads", help="model name or file (default: the bundled heads)")
    ap.add_argument("--pairs", type=int, default=4, help="(identity, driving clip) pairs")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    a = ap.parse_args()
    model = load_model(a.model).eval()
    smooths = sorted({0.0, DEFAULT_SMOOTH, 0.5})
    with tempfile.TemporaryDirectory() as tmp:
        per_pair = [run_pair(model, i, a.seconds, a.fps, smooths, Path(tmp)) for i in range(a.pairs)]
    names = list(per_pair[0])

    def mean(name, key):
        vals = [p[name].get(key) for p in per_pair]
        return None if any(v is None for v in vals) else float(np.mean(vals))

    fmt = lambda v, f=".4f": "-" if v is None else format(v, f)  # noqa: E731
    lines = [f"model: {a.model}; {a.pairs} pairs of unseen faces (seed {SEEDS[0]}) driven by talking clips of "
             f"others (seed {SEEDS[1]}), {a.seconds:g} s at {a.fps:g} fps, --region full, {model.image_size}px",
             "", "| output | MSE to ground truth | SSIM | mouth correlation | jitter | flicker |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        lines.append(f"| {name} | {fmt(mean(name, 'mse'))} | {fmt(mean(name, 'ssim'), '.3f')} | {fmt(mean(name, 'mouth'), '.3f')} | "
                     f"{fmt(mean(name, 'jitter'), '.3f')} | {fmt(mean(name, 'flicker'), '.3f')} |")
    text = "\n".join(lines)
    print(text)
    if a.append:
        from report import append_section

        append_section("animate fidelity", torch.device("cpu"), text)


if __name__ == "__main__":
    main()
