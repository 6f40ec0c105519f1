"""composite against ground truth: over many `posecli synth scene` streets, how close is the result to the truth?

    nice -n 10 .venv/bin/python benchmarks/composite_fidelity.py [--seeds 20] [--first 100] [--model cars]
        [--width 512 --height 320 --cars 4] [--figures] [--append] [--json FILE]

Each seed renders a street (``posecli.data.synth.scene.render_scene``) whose
ground truth with every car replaced by one new identity is known
(``scene_replaced.png``), together with the replacement car's true render in
each box (``replaced/car_K.png``) and its true coverage (``replaced_masks/``).
The library call behind ``posecli composite`` then runs with:

- the bundled model (``--model``) as the generator, and
- ORACLE generators that return the true renders (``replaced/car_K.png``)
  shrunk to the generator's size: ``oracle`` at the bundled model's size
  (64 px: what a perfect 64-px model would draw) and ``oracle@128``. The
  oracle isolates placement, matting, removal and blending from the
  generator's own error;

for the default options and for each option changed alone (matte, blend,
--remove-original, --harmonize, --id-colour, --fit-identity, --shadow, --upscale). Reported per row (mean
over seeds): MSE and SSIM over the whole image and inside the boxes, the
ratio of the whole-image MSE to the untouched scene's (mean, worst seed and
the number of seeds worse than untouched), and the IoU of the placed matte
(alpha > 0.5) with the replacement's true mask (> 0.5) inside each box. Two
baselines: the untouched scene and the empty background.

``--figures`` writes the worst and the median seed (by the default
composite's MSE ratio, bundled model) to benchmarks/figures/ as
scene | composite | oracle composite | truth; ``--append`` adds the table to
benchmarks/RESULTS.md with hardware, date, commit and command.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- metrics

def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (Gaussian window, sigma 1.5, as Wang et al. 2004) of uint8 RGB images, averaged over channels."""
    import cv2

    x, y = a.astype(np.float64) / 255.0, b.astype(np.float64) / 255.0
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(axis=2)


def box_mask(shape, boxes) -> np.ndarray:
    m = np.zeros(shape[:2], bool)
    for b in boxes:
        m[max(b.y, 0) : b.y + b.h, max(b.x, 0) : b.x + b.w] = True
    return m


def scores(img: np.ndarray, truth: np.ndarray, inside: np.ndarray) -> dict:
    d = (img.astype(np.float64) - truth.astype(np.float64)) / 255.0
    se = (d * d).mean(axis=2)
    s = ssim_map(img, truth)
    return {"mse": float(se.mean()), "mse_box": float(se[inside].mean()),
            "ssim": float(s.mean()), "ssim_box": float(s[inside].mean())}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def cutout_iou(matte: np.ndarray, true_alpha: np.ndarray, box, margin: float = 0.0) -> float:
    """IoU of a generated square's matte (> 0.5) with the true coverage of its box, at the square's size.

    The square covers the box's window ``box.square(margin)``; the true
    alpha (uint8, box-sized) is placed in that window and shrunk to the
    square (area filter) before thresholding.
    """
    import cv2

    win = box.square(margin)
    full = np.zeros((win.h, win.w), np.float32)
    ox, oy = box.x - win.x, box.y - win.y
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + box.h, win.h), min(ox + box.w, win.w)
    full[y0:y1, x0:x1] = true_alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox] / 255.0
    s = matte.shape[0]
    true = cv2.resize(full, (s, s), interpolation=cv2.INTER_AREA) > 0.5
    return iou(matte > 127 if matte.dtype == np.uint8 else matte > 0.5, true)


# ---------------------------------------------------------------- the oracle generator

@dataclass(frozen=True)
class _Cfg:
    image_size: int = 64
    identity_dim: int = 1
    pose_dim: int = 1


def oracle_model(pose_squares: list[np.ndarray], renders: list[np.ndarray], size: int):
    """A PoseModel that returns the true render of the box whose pose square it is given (at ``size`` px).

    The pose code is the index of the nearest of ``pose_squares`` (the squares
    the pipeline cuts from the scene, so the match is exact); the identity is
    ignored: every render already shows the replacement identity.
    """
    from posecli.media.convert import resize_pixels, to_tensor
    from posecli.models.base import PoseModel

    class Oracle(PoseModel):
        method = "oracle"

        def __init__(self):
            super().__init__(_Cfg(image_size=size))
            self.squares = to_tensor(np.stack([resize_pixels(np.ascontiguousarray(p), size) for p in pose_squares]))
            self.renders = to_tensor(np.stack([resize_pixels(np.ascontiguousarray(r), size) for r in renders]))

        def encode_identity(self, x):
            return torch.zeros(len(x), 1)

        def encode_pose(self, x):
            d = ((x[:, None] - self.squares[None]) ** 2).flatten(2).mean(2)
            return d.argmin(1).float()[:, None]

        def generate(self, identity, pose):
            return self.renders[pose[:, 0].long()]

    return Oracle().eval()


def cached(model):
    """The model behind a memo: the variants of one scene encode and generate the same squares once."""
    import hashlib

    from posecli.models.base import PoseModel

    class Cached(PoseModel):
        method = model.method

        def __init__(self):
            super().__init__(model.config)
            self.inner, self.memo = model, {}

        def _call(self, name, *xs):
            if torch.is_grad_enabled() and any(x.requires_grad for x in xs):  # --fit-identity's steps
                return getattr(self.inner, name)(*xs)
            key = (name, *(hashlib.sha1(x.detach().cpu().numpy().tobytes()).hexdigest() for x in xs))
            if key not in self.memo:
                self.memo[key] = getattr(self.inner, name)(*xs)
            return self.memo[key]

        def encode_identity(self, x):
            return self._call("encode_identity", x)

        def encode_pose(self, x):
            return self._call("encode_pose", x)

        def generate(self, identity, pose):
            return self._call("generate", identity, pose)

    return Cached().eval()


# ---------------------------------------------------------------- one seed

def composite_defaults() -> dict:
    from posecli.pipelines.composite import composite

    sig = inspect.signature(composite)
    return {k: p.default for k, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY and k not in ("debug", "id_code")}


CORE = ("matte", "blend", "remove_original", "harmonize_strength", "id_colour", "fit_identity", "fit")  # the issue's, and the identity's


def variants(which: str = "all") -> list[tuple[str, dict]]:
    """("default", {}) and each option changed alone from the library's defaults (``which``: core | extra | all)."""
    from posecli.pipelines.blending import BLENDS
    from posecli.pipelines.matting import MATTES

    d = composite_defaults()
    out = [("default", {})]
    choices = {"matte": [m for m in MATTES if m != "rembg"], "blend": list(BLENDS),
               "remove_original": [False, True], "harmonize_strength": [0.0, 0.5]}
    if d.get("fit") == "object":
        choices["fit"] = ["object", "frame"]
    if "shadow" in d:
        choices["shadow"] = [0.0, 0.35]
    if "id_colour" in d:
        choices["id_colour"] = [0.0, 0.5, 1.0]
    if "fit_identity" in d:
        choices["fit_identity"] = [0, 100, 200]
    if "upscale" in d:
        from posecli.pipelines.composite import INPAINTS, UPSCALES

        choices["upscale"] = list(UPSCALES)
        choices["choke"] = [False, True]
        choices["inpaint_with"] = list(INPAINTS)
    for key, values in choices.items():
        if (which == "core" and key not in CORE) or (which == "extra" and key in CORE):
            continue
        for v in values:
            if v != d.get(key):
                over = {key: v}
                if key == "inpaint_with" and not d["remove_original"]:  # a fill only matters with removal
                    over["remove_original"] = True
                out.append((", ".join(f"{k}={x}" for k, x in over.items()), over))
    return out


def run_seed(seed: int, model, work: Path, width: int, height: int, cars: int, matters: dict,
             oracle_sizes=(64, 128), keep_images: bool = False, which: str = "all") -> dict:
    """Scores of the baselines and of every (generator, variant) on one street."""
    from posecli.data.synth.scene import render_scene
    from posecli.media.images import read_image
    from posecli.pipelines.boxfile import load_boxes
    from posecli.pipelines.composite import composite, identity_code, square_of, whole_square

    out = work / f"seed{seed}"
    render_scene(out, cars=cars, width=width, height=height, seed=seed, overwrite=True)
    scene, truth = read_image(out / "scene.png"), read_image(out / "scene_replaced.png")
    ident = read_image(out / "replacement.png")
    boxes = load_boxes(out / "boxes.json")
    renders = [read_image(out / "replaced" / f"car_{k}.png") for k in range(len(boxes))]
    true_alphas = [np.atleast_3d(read_image(out / "replaced_masks" / f"car_{k}.png"))[:, :, 0]
                   for k in range(len(boxes))]
    inside = box_mask(scene.shape, boxes)
    rows = {"untouched": scores(scene, truth, inside), "background": scores(read_image(out / "background.png"),
                                                                          truth, inside)}
    images = {"scene": scene, "truth": truth}
    gens = {"model": cached(model)}
    for s in oracle_sizes:
        name = "oracle" if s == model.image_size else f"oracle@{s}"
        gens[name] = (s, None)
    defaults = composite_defaults()
    codes = {}  # fitting steps -> the model's code of the --id image
    for gname, gen in gens.items():
        for vname, over in variants(which):
            if gname.startswith("oracle@") and vname not in ("default", "remove_original=False",
                                                             "remove_original=True", "choke=False", "fit=frame"):
                continue  # the larger oracle: only what a sharper generator changes
            if gname.startswith("oracle") and vname.startswith("fit_identity"):
                continue  # the oracle has no identity code to fit
            kw = {**defaults, **over}
            if isinstance(gen, tuple):  # the oracle needs the pose squares this variant's margin cuts
                size = gen[0]
                gen_model = oracle_model([square_of(scene, b, size, kw["margin"]) for b in boxes], renders, size)
            else:
                gen_model = gen
            matter = matters[kw["matte"]]
            t0 = time.perf_counter()
            if not isinstance(gen, tuple):  # the --id code once per seed and setting, as the CLI does per run
                steps = kw.get("fit_identity", 0)
                if steps not in codes:
                    codes[steps] = identity_code(gen_model, whole_square(ident, gen_model.image_size), steps)
                kw["id_code"] = codes[steps]
            res = composite(gen_model, scene, ident, boxes, **{**kw, "matte": matter}, debug=True)
            secs = time.perf_counter() - t0
            r = scores(res.pixels, truth, inside)
            ious, placed_ious = [], []
            for k, b in enumerate(boxes):
                true = true_alphas[k][b.y : b.y + b.h, b.x : b.x + b.w]
                ious.append(cutout_iou(res.debug[f"box{k}_matte"], true, b, kw["margin"]))
                placed = res.debug.get(f"box{k}_placed")
                got = placed[:, :, 3] > 127 if placed is not None else np.zeros(true.shape, bool)
                placed_ious.append(iou(got, true > 127))
            r.update(iou=float(np.mean(ious)), iou_placed=float(np.mean(placed_ious)), seconds=secs)
            rows[f"{gname} | {vname}"] = r
            if keep_images and vname == "default":
                images[gname] = res.pixels
    return {"seed": seed, "rows": rows, "sizes": [b.w for b in boxes], "images": images if keep_images else None}


# ---------------------------------------------------------------- the table

def summarise(results: list[dict]) -> tuple[list[str], dict]:
    names = list(results[0]["rows"])
    base = np.array([r["rows"]["untouched"]["mse"] for r in results])
    stats = {}
    for n in names:
        get = lambda k: np.array([r["rows"][n].get(k, np.nan) for r in results])  # noqa: E731
        nanmean = lambda k: float(np.mean(get(k))) if not np.isnan(get(k)).all() else np.nan  # noqa: E731
        ratio = get("mse") / base
        stats[n] = {"mse": get("mse").mean(), "mse_box": get("mse_box").mean(), "ssim": get("ssim").mean(),
                    "ssim_box": get("ssim_box").mean(), "ratio": ratio.mean(), "worst": ratio.max(),
                    "worse": int((ratio > 1).sum()), "iou": nanmean("iou"),
                    "iou_placed": nanmean("iou_placed"), "seconds": nanmean("seconds")}
    lines = ["| generator | options | MSE | MSE in boxes | SSIM | SSIM in boxes | MSE / untouched (mean, worst) | "
             "seeds worse than untouched | matte IoU (cut-out, placed) | s / scene |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in names:
        s = stats[n]
        gen, _, opt = n.partition(" | ")
        iou_s = "" if np.isnan(s["iou"]) else f"{s['iou']:.3f}, {s['iou_placed']:.3f}"
        secs = "" if np.isnan(s["seconds"]) else f"{s['seconds']:.2f}"
        lines.append(f"| {gen} | {opt or '-'} | {s['mse']:.5f} | {s['mse_box']:.5f} | {s['ssim']:.4f} | "
                     f"{s['ssim_box']:.4f} | {s['ratio']:.3f}, {s['worst']:.3f} | {s['worse']}/{len(results)} | "
                     f"{iou_s} | {secs} |")
    return lines, stats


def removal_check(results: list[dict]) -> list[str]:
    """Per generator: seeds where --remove-original made the whole-image MSE worse than without it."""
    d = composite_defaults()
    other = f"remove_original={not d['remove_original']}"  # the variant with only removal changed
    lines = []
    gens = sorted({n.split(" | ")[0] for n in results[0]["rows"] if " | " in n})
    for g in gens:
        on, off = (f"{g} | default", f"{g} | {other}") if d["remove_original"] else (f"{g} | {other}", f"{g} | default")
        if off not in results[0]["rows"] or on not in results[0]["rows"]:
            continue
        diff = np.array([r["rows"][on]["mse"] - r["rows"][off]["mse"] for r in results])
        worse = [r["seed"] for r, x in zip(results, diff) if x > 0]
        lines.append(f"- {g}: with --remove-original the MSE is lower on {int((diff < 0).sum())} of {len(results)} "
                     f"seeds, higher on {len(worse)}{' (seeds ' + ', '.join(map(str, worse)) + ')' if worse else ''}; "
                     f"mean change {diff.mean():+.5f}, largest increase {max(diff.max(), 0):.5f}")
    return lines


def figure(res: dict, path: Path) -> None:
    from posecli.media.images import write_image

    im = res["images"]
    tiles = [im["scene"], im["model"], im.get("oracle", im["truth"]), im["truth"]]
    sep = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    row = np.hstack([x for t in tiles for x in (t, sep)][:-1])
    write_image(path, row, overwrite=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first", type=int, default=100, help="first scene seed")
    ap.add_argument("--model", default="cars")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--cars", type=int, default=4)
    ap.add_argument("--oracle-sizes", default="64,128", help="comma-separated generator sizes of the oracle")
    ap.add_argument("--variants", default="all", choices=("core", "extra", "all"),
                    help="core: matte, blend, --remove-original, --harmonize; extra: the other options")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the figures are not timings)")
    ap.add_argument("--figures", action="store_true", help="write the worst and median seed to benchmarks/figures")
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    ap.add_argument("--json", help="write every seed's scores to this file")
    a = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from posecli.modelfile import load_model_or_default
    from posecli.pipelines.matting import MATTES, Matter

    torch.set_num_threads(a.threads)
    model = load_model_or_default(a.model, "cars", torch.device("cpu"))
    matters = {k: Matter(k) for k in MATTES if k != "rembg"}
    for m in matters.values():
        m.notice = ""  # said in the table instead
    sizes = tuple(int(s) for s in a.oracle_sizes.split(",") if s)
    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.seeds):
            seed = a.first + i
            results.append(run_seed(seed, model, Path(tmp), a.width, a.height, a.cars, matters, sizes,
                                    keep_images=a.figures, which=a.variants))
            r = results[-1]["rows"]
            print(f"seed {seed}: untouched {r['untouched']['mse']:.5f}, model {r['model | default']['mse']:.5f}, "
                  f"oracle {r['oracle | default']['mse']:.5f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    lines, stats = summarise(results)
    d = composite_defaults()
    head = (f"{a.seeds} streets (`synth scene` seeds {a.first}-{a.first + a.seeds - 1}, {a.width}x{a.height}, "
            f"{a.cars} cars, boxes {min(min(r['sizes']) for r in results)}-"
            f"{max(max(r['sizes']) for r in results)} px), `{a.model}` model "
            f"({model.image_size} px) and oracle generators, {a.variants} variants; defaults: "
            + ", ".join(f"{k}={v}" for k, v in d.items()) + "; rembg's model file absent (auto = model matte + GrabCut).")
    text = "\n".join([head, "", *lines, "", *removal_check(results)])
    print(text)
    if a.figures:
        ratio = [r["rows"]["model | default"]["mse"] / r["rows"]["untouched"]["mse"] for r in results]
        order = np.argsort(ratio)
        for tag, k in (("worst", order[-1]), ("median", order[len(order) // 2])):
            path = ROOT / "benchmarks" / "figures" / f"composite_{tag}.png"
            figure(results[k], path)
            print(f"{path.relative_to(ROOT)}: seed {results[k]['seed']} (ratio {ratio[k]:.3f})", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps([{"seed": r["seed"], "rows": r["rows"]} for r in results], indent=1))
    if a.append:
        from report import append_section

        append_section("composite fidelity", torch.device("cpu"), text)


if __name__ == "__main__":
    main()
