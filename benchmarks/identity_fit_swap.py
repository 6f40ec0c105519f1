"""Does fitting the identity code to its image (``--fit-identity``) help a plain swap?

    nice -n 10 .venv/bin/python benchmarks/identity_fit_swap.py DATA [--model cars] [--pairs 30] [--steps 0,50,100,200]

DATA is a labels CSV (or a folder with labels.csv) of identities the model never saw,
with every identity in the same poses, as ``posecli synth cars`` writes. The bundled
``cars`` model was trained on identities 0-59 of
``posecli synth cars cars72 --identities 72 --azimuths 12 --elevations 2 --max-elevation 20 --seed 7``
(elevations 0 and 20; the first RESULTS figure of 2026-11-29 used 0 and 30, which the model never saw;
the second uses 0 and 20), and then fine-tuned on 188 identities that leave 60-71 out (last at 24
azimuths x elevations 0/10: ``--azimuths 24 --elevations 2 --max-elevation 10``), so use the rows of
identities 60-71 as held-out data.

For ``--pairs`` pairs (x_i, x_j, truth), drawn as ``posecli eval`` draws them, it
reports the mean MSE of G(fit(x_i), E_pose(x_j)) against the truth for each number
of fitting steps (0: the encoder's code, what ``swap`` uses), beside the copy-pose
baseline. Each pair fits its own identity image, so it costs ``sum(steps)`` generator
steps per pair.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv=None) -> None:
    from posecli.eval.transfer import load_images, read_labels, sample_pairs
    from posecli.media.convert import to_tensor
    from posecli.modelfile import load_model
    from posecli.training.invert import fit_identity

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--model", default="cars")
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--steps", default="0,50,100,200", help="comma-separated numbers of fitting steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    labels = read_labels(args.data)
    ids, poses, _, _ = labels.codes()
    images = load_images(labels, model.image_size)
    pairs = sample_pairs(ids, poses, args.pairs, seed=args.seed)
    steps = [int(s) for s in args.steps.split(",")]
    err = {s: [] for s in steps}
    copy = []
    t0 = time.perf_counter()
    for i, j, g in pairs:
        xi, xj, xg = (to_tensor(images[k]) for k in (i, j, g))
        with torch.no_grad():
            pose = model.encode_pose(xj)
        for s in steps:
            z = fit_identity(model, xi, s)
            with torch.no_grad():
                out = model.generate(z, pose).float().clamp(0, 1)
            err[s].append(float(((out - xg) ** 2).mean()))
        copy.append(float(((xj - xg) ** 2).mean()))
    print(f"{len(pairs)} pairs of {labels.csv_path} ({len(set(ids.tolist()))} identities), model {args.model}, "
          f"{time.perf_counter() - t0:.0f} s")
    print("| fitting steps | swap MSE to the truth |\n|---:|---:|")
    for s in steps:
        print(f"| {s} | {np.mean(err[s]):.5f} |")
    print(f"| copy pose | {np.mean(copy):.5f} |")


if __name__ == "__main__":
    main()
