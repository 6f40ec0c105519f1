"""How good are --method xiao's training triplets? Neighbours by pose, against known poses.

    .venv/bin/python benchmarks/xiao_mining.py [--data DIR] [--identities 24] [--size 32] [--fps 5] [--append]

Xiao et al. find each target frame's pose image as its nearest neighbour among the
frames of other clips, in some feature space; the paper blames its main failure mode
(front/back confusions) on wrong neighbours. On `posecli synth heads --video` clips
every frame's yaw, pitch and mouth opening are known (videos.csv), so each feature
space can be scored: for every frame, its nearest other-clip neighbour, and

- within one step: the share of neighbours within one pose step of the still grid
  (|d yaw| <= 20 degrees and |d pitch| <= 15 degrees);
- the mean |d yaw| and |d pitch| in degrees;

beside a random other-clip frame (what no mining gives) and the best any neighbour
could do (the other-clip frame closest in true pose). Feature spaces: ``edges``,
``rotnet`` (rotation prediction learned on these frames: posecli's default) and,
with ``--model``, a posecli model's pose encoder.

Without ``--data`` it renders the clips into a temporary folder first.
``--append`` adds the table to benchmarks/RESULTS.md with hardware, date and commit.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def frame_poses(data_dir: Path, image_set, fps: float) -> np.ndarray:
    """(N, 3) yaw, pitch, mouth of each decoded frame, from videos.csv (nearest time)."""
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    with open(data_dir / "videos.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(Path(r["video"]).name, []).append(
                (float(r["time"]), float(r["yaw"]), float(r["pitch"]), float(r["mouth"])))
    out = np.zeros((len(image_set.paths), 3))
    for i, (path, frame) in enumerate(zip(image_set.paths, image_set.frames)):
        table = np.array(rows[Path(path.split("#")[0]).name])
        j = int(np.argmin(np.abs(table[:, 0] - frame / fps)))
        out[i] = table[j, 1:]
    return out


def score(pose: np.ndarray, groups: np.ndarray, nb: np.ndarray) -> dict:
    d = np.abs(pose[nb] - pose)
    return {"within_step": float(((d[:, 0] <= 20) & (d[:, 1] <= 15)).mean()),
            "yaw": float(d[:, 0].mean()), "pitch": float(d[:, 1].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a `posecli synth heads --video` folder (default: render one)")
    ap.add_argument("--identities", type=int, default=24)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--rotnet-epochs", type=int, default=3)
    ap.add_argument("--features", default="edges,rotnet", help="feature spaces to score (comma-separated)")
    ap.add_argument("--model", help="also score this posecli model's pose encoder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    from posecli.data.dataset import load_image_set
    from posecli.training.method import TrainData, clip_groups
    from posecli.training.mining import nearest_other_group, pose_features, pretrain_rotnet

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data
        if data_dir is None:
            from posecli.data.synth.heads import render_heads

            data_dir = Path(tmp) / "heads"
            render_heads(data_dir, identities=args.identities, size=64, yaws=1, pitches=1, mouths=1, video=True,
                         clip_seconds=4.0, fps=25.0, seed=args.seed)
        s = load_image_set([str(data_dir / "videos")], size=args.size, fps=args.fps, quiet=True)
    pose = frame_poses(data_dir, s, args.fps)
    images = torch.from_numpy(s.images).permute(0, 3, 1, 2).contiguous()
    data = TrainData(images, torch.from_numpy(s.labels), len(s.names), key="bench",
                     clips=torch.from_numpy(s.clips), frames=torch.from_numpy(s.frames))
    groups = clip_groups(data)
    g = groups.numpy()
    rng = np.random.default_rng(args.seed)
    results = {}
    results["random other-clip frame"] = score(pose, g, np.array([rng.choice(np.flatnonzero(g != c)) for c in g]))
    d = np.abs(pose[:, None, :2] - pose[None, :, :2]) / np.array([20.0, 15.0])
    d = d.max(2) + 1e9 * (g[:, None] == g[None])
    results["best possible (true pose)"] = score(pose, g, d.argmin(1))
    timings = {}
    kinds = [("edges", None), ("rotnet", None)] + ([("model", args.model)] if args.model else [])
    kinds = [k for k in kinds if k[0] in args.features or k[0] == "model"]
    for kind, arg in kinds:
        t0 = time.process_time()
        net = None
        if kind == "rotnet":
            net = pretrain_rotnet(images, args.rotnet_epochs, args.seed, quiet=True)
        elif kind == "model":
            from posecli.modelfile import load_model

            net = load_model(arg).eval()
        feats = pose_features(images, kind, net)
        nb = nearest_other_group(feats, groups, 1)[:, 0].numpy()
        timings[kind] = time.process_time() - t0
        results[f"{kind}" + (f" ({Path(arg).name})" if arg else "")] = score(pose, g, nb)
    lines = [f"{len(s)} frames of {int(groups.max()) + 1} clips (`synth heads --video`, {args.size} px, "
             f"{args.fps:g} fps); the nearest other-clip frame of each by each feature space.", "",
             "| features | within one pose step | mean abs. d yaw (deg) | mean abs. d pitch (deg) | CPU time (s) |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        t = next((f"{v:.1f}" for k, v in timings.items() if name.startswith(k)), "")
        lines.append(f"| {name} | {r['within_step']:.2f} | {r['yaw']:.1f} | {r['pitch']:.1f} | {t} |")
    text = "\n".join(lines)
    print(text)
    if args.append:
        from report import append_section

        append_section("xiao triplet mining against known poses", torch.device("cpu"), text)


if __name__ == "__main__":
    main()
