"""composite against the ground truth of `synth scene`: oracle close to the truth, removal that never hurts, no halo.

The oracle generator (benchmarks/composite_fidelity.py) returns the replacement
car's true render for each box, so these bounds check placement, matting,
removal and blending, not a model's quality. Measured values are in
benchmarks/RESULTS.md; the bounds here are loose and fail on regressions.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from posecli.data.synth import BACKGROUND, car_params, render_car_rgba
from posecli.data.synth.raycast import compose
from posecli.data.synth.scene import render_scene
from posecli.media.images import read_image
from posecli.pipelines.boxfile import load_boxes
from posecli.pipelines.composite import composite, square_of
from posecli.pipelines.matting import Matter

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    if "composite_fidelity" in sys.modules:
        return sys.modules["composite_fidelity"]
    spec = importlib.util.spec_from_file_location("composite_fidelity", ROOT / "benchmarks" / "composite_fidelity.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["composite_fidelity"] = mod  # its dataclass looks its module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    out = tmp_path_factory.mktemp("street") / "s"
    render_scene(out, cars=3, width=320, height=200, seed=3)
    boxes = load_boxes(out / "boxes.json")
    grey = lambda p: np.atleast_3d(read_image(p))[:, :, 0]  # noqa: E731
    return {"scene": read_image(out / "scene.png"), "truth": read_image(out / "scene_replaced.png"),
            "id": read_image(out / "replacement.png"), "boxes": boxes,
            "renders": [read_image(out / "replaced" / f"car_{k}.png") for k in range(len(boxes))],
            "alphas": [grey(out / "replaced_masks" / f"car_{k}.png") for k in range(len(boxes))],
            "masks": [grey(out / "replaced_masks" / f"car_{k}.png") > 127 for k in range(len(boxes))]}


def _mse(a, b):
    return float((((a.astype(np.float64) - b) / 255.0) ** 2).mean())


def _oracle(bench, s, size=64):
    return bench.oracle_model([square_of(s["scene"], b, size, 0.0) for b in s["boxes"]], s["renders"], size)


def test_synth_scene_writes_each_replacement_render_and_mask(street):
    s = street
    for b, r, m, a in zip(s["boxes"], s["renders"], s["masks"], s["alphas"]):
        assert r.shape == (b.h, b.w, 3) and m.shape == s["scene"].shape[:2]
        inside = m[b.y : b.y + b.h, b.x : b.x + b.w]
        assert inside.sum() == m.sum() > 0.05 * b.w * b.h  # the car, inside its box
        clear = a[b.y : b.y + b.h, b.x : b.x + b.w] == 0
        assert np.abs(r[clear].astype(int) - BACKGROUND).max() <= 1  # the plain background elsewhere
    # where the nearest car covers its box fully, the truth shows its render
    b, r, m = s["boxes"][-1], s["renders"][-1], s["masks"][-1]
    solid = cv2.erode(m[b.y : b.y + b.h, b.x : b.x + b.w].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert np.abs(s["truth"][b.y : b.y + b.h, b.x : b.x + b.w][solid].astype(int) - r[solid]).max() <= 2


def test_oracle_composite_is_close_to_the_truth(street):
    """Defaults with --remove-original: measured 0.05-0.10 of the untouched scene's MSE; fails above 0.25."""
    bench, s = _bench(), street
    base = _mse(s["scene"], s["truth"])
    res = composite(_oracle(bench, s), s["scene"], s["id"], s["boxes"], matte="auto", remove_original=True,
                    debug=True)
    assert _mse(res.pixels, s["truth"]) < 0.25 * base
    for k, b in enumerate(s["boxes"]):  # the cut-out matches the true mask (measured 0.95-0.99)
        true = s["alphas"][k][b.y : b.y + b.h, b.x : b.x + b.w]
        assert bench.cutout_iou(res.debug[f"box{k}_matte"], true, b) > 0.9, k
        placed = res.debug[f"box{k}_placed"][:, :, 3] > 127  # pulled in by a pixel (choke) but in place
        assert bench.iou(placed, true > 127) > 0.7, k


def test_removal_never_increases_the_error(street):
    bench, s = _bench(), street
    oracle = _oracle(bench, s)
    for kw in ({"matte": "auto"}, {"matte": "grabcut", "blend": "poisson"}):
        off = composite(oracle, s["scene"], s["id"], s["boxes"], **kw)
        on = composite(oracle, s["scene"], s["id"], s["boxes"], remove_original=True, **kw)
        assert _mse(on.pixels, s["truth"]) <= _mse(off.pixels, s["truth"]), kw
        assert all(r["removed_original"] for r in on.report)


def test_row_fill_continues_the_road():
    """An object on a striped road is filled from its own rows: the stripes continue, no grey smear."""
    from posecli.pipelines.blending import inpaint_rows

    rng = np.random.default_rng(0)
    road = np.full((60, 320, 3), 72, np.uint8) + rng.integers(0, 3, (60, 320, 1)).astype(np.uint8)
    road[30:32] = 235  # a solid lane line
    road[10:12, [x for x in range(320) if x % 40 < 22]] = 235  # a dashed one
    scene = road.copy()
    hole = np.zeros((60, 320), bool)
    hole[5:45, 130:180] = True
    scene[hole] = (200, 30, 30)
    inpaint_rows(scene, hole)
    err = np.abs(scene.astype(int) - road.astype(int))
    assert err[hole].mean() < 3 and err[10:12, 130:180].max() < 20 and err[30:32, 130:180].max() < 20
    assert (scene[~hole] == road[~hole]).all()


def test_hole_keeps_only_the_object_parts():
    """What GrabCut takes in apart from the object (a building's windows above it, a piece of a
    neighbouring car) is not erased: only the parts touching the cues' common core stay."""
    from posecli.pipelines.composite import object_parts

    core = np.zeros((80, 100), bool)
    core[40:70, 10:90] = True  # the car
    core[5:12, 20:28] = core[5:12, 60:68] = True  # two windows
    core[72:79, 85:99] = True  # a corner of another car
    sure = np.zeros_like(core)
    sure[50:60, 30:70] = True
    car = np.zeros_like(core)
    car[40:70, 10:90] = True
    assert (object_parts(core, sure) == car).all()
    assert (object_parts(core, np.zeros_like(core)) == car).all()  # no core: the largest part
    assert (object_parts(car, sure) == car).all()


@pytest.mark.parametrize("kind", ["auto", "model", "grabcut"])
def test_matte_of_a_rendered_car_has_no_halo(kind):
    """The matte of a car ray-cast on the plain dataset background matches its true coverage: no grey wings."""
    params = car_params(11, 3)
    premult, alpha = render_car_rgba(params, 60.0, 5.0, 64)
    rgb = compose(premult, alpha)
    m = Matter(kind)(rgb)
    true = alpha > 0.5
    got = m > 0.5
    iou = (got & true).sum() / (got | true).sum()
    assert iou > 0.9, iou
    near = cv2.dilate(true.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert m[~near].max() < 0.2  # nothing but the car's own edge: no fringe of the background


def test_cli_look_options(runner, tiny_model_path, tmp_path, street):
    """--keep-original leaves the old object, --shadow darkens under the new one, bad kinds are one-line errors."""
    from posecli.media.images import write_image
    from tests.conftest import invoke

    s = street
    scene, ident = tmp_path / "scene.png", tmp_path / "id.png"
    write_image(scene, s["scene"])
    write_image(ident, s["id"])
    b = s["boxes"][-1]
    box = f"{b.x},{b.y},{b.w},{b.h}"
    outs = {}
    for name, extra in (("default", []), ("keep", ["--keep-original", "--no-choke", "--upscale", "sharp"]),
                        ("shadow", ["--shadow", "0.8"]), ("telea", ["--inpaint", "telea", "--upscale", "linear"])):
        out = tmp_path / f"{name}.png"
        r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", box, "-m", tiny_model_path,
                            "--json", "-q", "-o", out, *extra])
        assert r.exit_code == 0, r.output
        info = json.loads(r.stdout)["boxes"][0]
        assert info["removed_original"] == (name != "keep")
        outs[name] = read_image(out)
        outside = np.ones(s["scene"].shape[:2], bool)
        outside[b.y : b.y + b.h, b.x : b.x + b.w] = False
        np.testing.assert_array_equal(outs[name][outside], s["scene"][outside])  # nothing outside the box
    win = (slice(b.y, b.y + b.h), slice(b.x, b.x + b.w))
    assert not np.array_equal(outs["default"][win], outs["keep"][win])
    assert outs["shadow"][win].mean() < outs["default"][win].mean()  # the contact shadow darkens the box
    for opt, bad in (("--upscale", "bilinear"), ("--inpaint", "patch")):
        r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", box, "-m", tiny_model_path,
                            opt, bad, "-o", tmp_path / "bad.png"])
        assert r.exit_code != 0 and f"{opt} {bad}" in r.stderr and not (tmp_path / "bad.png").exists()


def test_fidelity_benchmark_runs_and_summarises(tiny_model_path, tmp_path):
    """benchmarks/composite_fidelity.py on one small street: every row scored, the oracle far closer than untouched."""
    import torch

    from posecli.modelfile import load_model_or_default

    bench = _bench()
    model = load_model_or_default(str(tiny_model_path), "cars", torch.device("cpu"))
    matters = {k: Matter(k) for k in ("auto", "grabcut", "model")}
    res = bench.run_seed(4, model, tmp_path, 256, 160, 2, matters, oracle_sizes=(model.image_size,), which="core")
    rows = res["rows"]
    assert {"untouched", "background", "model | default", "oracle | default", "oracle | remove_original=False",
            "model | matte=grabcut", "model | blend=poisson", "model | harmonize_strength=0.5"} <= set(rows)
    for r in rows.values():
        assert 0 <= r["mse"] < 1 and -1 <= r["ssim"] <= 1 and r["mse_box"] >= r["mse"] * 0.99
    assert rows["oracle | default"]["mse"] < 0.5 * rows["untouched"]["mse"]
    assert rows["oracle | default"]["iou"] > 0.8
    lines, stats = bench.summarise([res])
    assert stats["untouched"]["ratio"] == 1.0 and len(lines) == 2 + len(rows)
    assert any(line.startswith("- oracle:") for line in bench.removal_check([res]))
