"""posecli composite: mattes, blending, paint order, scene modes, boxes files, batch mode, bad input.

Most library tests use BlobModel, a stub PoseModel whose renders are a plain
light-grey background with one ellipse (so every matte finds an object); the
CLI tests use the tiny untrained model; the synthetic-scene test uses an
oracle that renders the replacement car in the exact pose of each box's car.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from posecli.errors import InputError, MissingWeightsError, UsageError
from posecli.models.base import PoseModel
from posecli.pipelines.boxfile import boxes_for, load_boxes
from posecli.pipelines.composite import Target, composite, natural_layout, paint_order
from posecli.regions import Box
from tests.conftest import invoke

GREY = 230 / 255  # the synthetic renders' background


@dataclass(frozen=True)
class _Cfg:
    image_size: int = 32
    identity_dim: int = 3
    pose_dim: int = 3


class BlobModel(PoseModel):
    """identity = mean colour of the image; renders: an ellipse of that colour on plain grey.

    ``colour_from_pose``: the ellipse takes the colour at the centre of the pose
    crop instead (tells objects apart). ``with_alpha``: a 4th, alpha channel.
    """

    method = "blob"

    def __init__(self, size=32, colour_from_pose=False, with_alpha=False):
        super().__init__(_Cfg(image_size=size))
        self.colour_from_pose, self.with_alpha = colour_from_pose, with_alpha

    def encode_identity(self, x):
        return x.mean(dim=(2, 3))

    def encode_pose(self, x):
        s = x.shape[-1]
        return x[:, :, s // 2 - 2 : s // 2 + 2, s // 2 - 2 : s // 2 + 2].mean(dim=(2, 3))

    def generate(self, identity, pose):
        s = self.image_size
        colour = pose if self.colour_from_pose else identity
        yy, xx = torch.meshgrid(torch.arange(s) + 0.5, torch.arange(s) + 0.5, indexing="ij")
        inside = (((xx - s / 2) / (0.35 * s)) ** 2 + ((yy - s / 2) / (0.25 * s)) ** 2 <= 1).float()
        img = GREY + (colour[:, :, None, None] - GREY) * inside
        if self.with_alpha:
            img = torch.cat([img, inside.expand(len(colour), 1, s, s)], dim=1)
        return img


def _scene(h=120, w=160, seed=0, car=(90, 10, 20), grey=128):
    """Textured grey background with a (dark-red) 'car' at (30, 50, 60, 40)."""
    rng = np.random.default_rng(seed)
    img = (grey + rng.integers(-12, 13, (h, w, 3))).astype(np.uint8)
    img[50:90, 30:90] = car
    return img


RED_ID = np.full((20, 20, 3), (200, 30, 30), np.uint8)
BLUE_ID = np.full((20, 20, 3), (20, 40, 220), np.uint8)


def _outside(shape, boxes, extra=()):
    """bool mask of the pixels outside every box and every extra [x, y, w, h] region."""
    m = np.ones(shape[:2], bool)
    for b in [*boxes, *extra]:
        x, y, w, h = b.as_list() if isinstance(b, Box) else b
        m[max(y, 0) : y + h, max(x, 0) : x + w] = False
    return m


def _one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(autouse=True)
def _no_rembg_downloads(monkeypatch, tmp_path):
    """rembg finds no model and may not download: tests are offline and deterministic."""
    home = tmp_path / "u2net_empty"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setenv("POSECLI_OFFLINE", "1")


# ---------------------------------------------------------------- library

@pytest.mark.parametrize("matte", ["model", "grabcut", "auto"])
@pytest.mark.parametrize("blend", ["alpha", "poisson"])
@pytest.mark.parametrize("fit", ["frame", "box"])
def test_each_matte_and_blend_places_the_object_and_leaves_the_rest(matte, blend, fit):
    scene = _scene(car=(215, 195, 195), grey=200)  # light: Poisson keeps gradients, so a blue object stays blue on it
    box = Box(30, 50, 60, 40)
    res = composite(BlobModel(), scene, BLUE_ID, [box], matte=matte, blend=blend, fit=fit)
    out = res.pixels
    assert out.shape == scene.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[_outside(scene.shape, [box])], scene[_outside(scene.shape, [box])])
    centre = out[65:75, 52:68].reshape(-1, 3).mean(0)
    assert centre[2] > 150 and centre[0] < 80, centre  # the blue object sits in the middle of the box
    r = res.report[0]
    assert r["matte"] == ("model+grabcut" if matte == "auto" else matte) and r["blend"] == blend
    x, y, w, h = r["placement"]
    if fit == "box":  # scaled to fit (height-bound), standing on the bottom edge
        assert y + h == box.y + box.h and h == 40 and 50 <= w <= 60
    else:  # as drawn in the 60 x 60 window centred on the box: a 42 x 30 ellipse in the middle
        assert abs(x + w / 2 - 60) <= 1 and abs(y + h / 2 - 70) <= 1 and abs(w - 42) <= 3 and abs(h - 30) <= 3


def test_generator_alpha_channel_is_the_model_matte():
    scene = _scene()
    res = composite(BlobModel(with_alpha=True), scene, BLUE_ID, [Box(30, 50, 60, 40)], matte="model", debug=True)
    m = res.debug["box0_matte"]
    assert set(np.unique(m)) <= {0, 255}  # the hard alpha given, not an estimate


def test_boxes_at_image_borders():
    scene = _scene()
    boxes = [Box(-15, -10, 50, 40), Box(130, 95, 60, 40), Box(-20, 100, 200, 40)]
    for blend, remove in (("alpha", False), ("poisson", False), ("alpha", True)):
        res = composite(BlobModel(), scene, BLUE_ID, boxes, matte="model", blend=blend, remove_original=remove)
        assert res.pixels.shape == scene.shape
        keep = _outside(scene.shape, boxes, [r["inpainted"] for r in res.report if r["inpainted"]])
        np.testing.assert_array_equal(res.pixels[keep], scene[keep])
        assert all(r["placement"] is not None for r in res.report)


def test_paint_order_is_by_bottom_edge():
    boxes = [Box(0, 50, 10, 50), Box(0, 0, 10, 30), Box(0, 60, 10, 40), Box(0, 10, 10, 20)]
    assert paint_order(boxes) == [1, 3, 0, 2]  # bottoms 30, 30, 100, 100: ties keep the given order


def test_overlapping_boxes_nearer_object_on_top():
    scene = np.full((100, 140, 3), 128, np.uint8)
    scene[40:50, 45:55] = (200, 20, 20)  # the far box's centre is red, the near one's blue:
    scene[55:65, 65:75] = (20, 20, 200)  # BlobModel(colour_from_pose) paints each object that colour
    far, near = Box(20, 30, 60, 30), Box(40, 40, 60, 40)  # bottom edges 60 and 80
    model = BlobModel(colour_from_pose=True)
    for given in ([near, far], [far, near]):
        res = composite(model, scene, RED_ID, given, matte="model", fit="box")
        by_box = {tuple(r["box"]): r for r in res.report}
        assert by_box[tuple(far.as_list())]["order"] == 0 and by_box[tuple(near.as_list())]["order"] == 1
        overlap = res.pixels[48:54, 56:65].reshape(-1, 3).mean(0)  # inside both fitted ellipses
        assert overlap[2] > 150 and overlap[0] < 80, overlap  # the near (blue) object covers the far one
        far_only = res.pixels[33:37, 40:46].reshape(-1, 3).mean(0)
        assert far_only[0] > 150 and far_only[2] < 80, far_only


def test_grey_scene_stays_grey():
    scene = _scene()[:, :, 0].copy()
    box = Box(30, 50, 60, 40)
    res = composite(BlobModel(), scene, BLUE_ID, [box], matte="grabcut")
    assert res.pixels.shape == scene.shape and res.pixels.dtype == np.uint8
    keep = _outside(scene.shape, [box])
    np.testing.assert_array_equal(res.pixels[keep], scene[keep])
    assert not np.array_equal(res.pixels[~keep], scene[~keep])


def test_rgba_scene_keeps_alpha_and_new_object_is_opaque():
    rgb = _scene()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :40] = 0  # a transparent strip through the left of the box
    scene = np.dstack([rgb, alpha])
    box = Box(30, 50, 60, 40)
    res = composite(BlobModel(), scene, BLUE_ID, [box], matte="model")
    out = res.pixels
    assert out.shape == scene.shape
    keep = _outside(scene.shape, [box])
    np.testing.assert_array_equal(out[keep], scene[keep])
    assert (out[68:72, 42:48, 3] == 255).all()  # the object's pixels over the transparent strip are opaque


def test_natural_layout():
    grey = np.dstack([np.arange(12, dtype=np.uint8).reshape(3, 4)] * 3 + [np.full((3, 4), 255, np.uint8)])
    assert natural_layout(grey).shape == (3, 4)
    colour = grey.copy()
    colour[0, 0, 1] = 7
    assert natural_layout(colour).shape == (3, 4, 3)
    clear = colour.copy()
    clear[1, 1, 3] = 0
    assert natural_layout(clear).shape == (3, 4, 4)


def test_remove_original_inpaints_the_old_object():
    scene = np.full((120, 160, 3), 128, np.uint8)
    scene[50:90, 30:90] = (20, 20, 20)  # a big dark car; the new one (an ellipse) leaves its corners bare
    box = Box(30, 50, 60, 40)
    kept = composite(BlobModel(), scene, BLUE_ID, [box], matte="model", remove_original=False)
    res = composite(BlobModel(), scene, BLUE_ID, [box], matte="model", remove_original=True)
    r = res.report[0]
    assert r["removed_original"] and r["inpainted"] is not None
    corner = (slice(51, 55), slice(31, 35))
    assert kept.pixels[corner].mean() < 40  # without removal the old car shows in the corner
    assert res.pixels[corner].mean() > 100  # inpainted from the grey around it
    keep = _outside(scene.shape, [box], [r["inpainted"]])
    np.testing.assert_array_equal(res.pixels[keep], scene[keep])


def test_stretch_to_span_moves_only_trusted_sides():
    from posecli.pipelines.composite import stretch_to_span

    box = Box(0, 0, 100, 50)
    a = np.zeros((50, 100), np.float32)
    a[10:40, 30:70] = 1.0  # drawn from column 30 to 69
    obj = np.zeros((50, 100, 3), np.uint8)
    obj[:, :50], obj[:, 50:] = (255, 0, 0), (0, 0, 255)  # red left half, blue right half
    fit = (obj, a, [30, 10, 40, 30])

    _, a2, placement = stretch_to_span(fit, box, (15, 84))
    cols = np.nonzero(a2[25] > 0.5)[0]
    assert (cols.min(), cols.max()) == (15, 84) and placement == [15, 10, 70, 30]
    assert np.array_equal(np.nonzero(a2[:, 50] > 0.5)[0], np.arange(10, 40))  # only sideways
    # a side found at the box's edge (ran into a neighbour or the border) is not trusted: the drawn one stays
    _, a3, _ = stretch_to_span(fit, box, (0, 84))
    assert tuple(np.nonzero(a3[25] > 0.5)[0][[0, -1]]) == (30, 84)
    # nor one within the tolerance of the drawn side: nothing moves, the same object comes back
    assert stretch_to_span(fit, box, (27, 72), tol=0.06) is fit
    assert stretch_to_span(fit, box, (0, 99)) is fit
    assert stretch_to_span(fit, box, (45, 52)) is fit  # a fragment of the old object: 5 x shorter


@pytest.mark.parametrize("how", ["linear", "cubic", "lanczos", "sharp"])
def test_upscaled_object_edge_takes_no_background_colour(how):
    """A red disc rendered on the renders' grey, unmixed as place_object has it, blown up 2.5x and laid over
    blue: its soft edge matches the true red-over-blue far better than a plain resize of the colours, which
    mixed the render's grey into the edge (a light fringe)."""
    import cv2

    from posecli.pipelines.composite import upscale_object
    from posecli.pipelines.matting import unmix

    yy, xx = np.mgrid[:64, :64]
    alpha = cv2.GaussianBlur(((yy - 32) ** 2 + (xx - 32) ** 2 <= 20 ** 2).astype(np.float32), (0, 0), 1.0)
    red, grey, blue = np.float32([200, 20, 20]), np.float32(GREY * 255), np.float32([20, 40, 200])
    rgb = unmix(np.clip(alpha[..., None] * red + (1 - alpha[..., None]) * grey + 0.5, 0, 255).astype(np.uint8),
                alpha)
    a = cv2.resize(alpha, (160, 160), interpolation=cv2.INTER_LINEAR)[..., None]
    edge = (a[..., 0] > 0.02) & (a[..., 0] < 0.98)
    truth = a * red + (1 - a) * blue

    def edge_error(colours):
        return np.abs(a * colours + (1 - a) * blue - truth).max(2)[edge].mean()

    out, out_alpha = upscale_object(rgb, alpha, (160, 160), how, fill=(GREY * 255,) * 3)
    assert np.array_equal(out_alpha, a[..., 0])  # the matte: linear, whatever the colours' filter
    flag = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}.get(how, cv2.INTER_LANCZOS4)
    plain = cv2.resize(rgb, (160, 160), interpolation=flag).astype(np.float32)
    assert edge.sum() > 200
    assert edge_error(out) < 1.3 and edge_error(out) < 0.85 * edge_error(plain)
    assert np.abs(out[a[..., 0] < 1e-4].astype(np.float32) - grey).max() <= 1  # the fill where the matte is empty
    small, small_alpha = upscale_object(rgb, alpha, (32, 32), how)  # shrinking: area filter
    assert small.shape == (32, 32, 3) and small_alpha.shape == (32, 32)
    with pytest.raises(UsageError, match="--upscale"):
        upscale_object(rgb, alpha, (160, 160), "bilinear")


def test_fit_object_spans_the_object_it_replaces():
    """The blob model draws a car 0.7 x its window wide; the scene's car is longer: --fit object takes its length."""
    scene = np.full((140, 240, 3), 128, np.uint8)
    scene[60:100, 55:175] = (90, 10, 20)  # 120 px long; the box's square window makes a 98-px blob
    box = Box(45, 40, 140, 80)
    placed = {}
    for fit in ("frame", "object"):
        res = composite(BlobModel(), scene, BLUE_ID, [box], matte="model", fit=fit)
        placed[fit] = res.report[0]["placement"]
        keep = _outside(scene.shape, [box])
        np.testing.assert_array_equal(res.pixels[keep], scene[keep])
    assert abs(placed["frame"][2] - 96) <= 3, placed  # 98, less the choke
    x, _, w, _ = placed["object"]
    assert abs(x - 55) <= 2 and abs(w - 120) <= 3, placed
    assert res.report[0]["stretched"] == round(w / placed["frame"][2], 3)
    assert placed["object"][1] == placed["frame"][1] and placed["object"][3] == placed["frame"][3]  # height kept
    # an added object replaces nothing: it is drawn as the model frames it
    res = composite(BlobModel(), scene, BLUE_ID, [Target(box, pose=scene[60:100, 55:175])], matte="model",
                    fit="object")
    assert res.report[0]["placement"][2] < 110


def test_harmonize_moves_colour_towards_the_surroundings():
    scene = np.full((120, 160, 3), (40, 150, 40), np.uint8)  # a green field
    box = Box(30, 50, 60, 40)
    plain = composite(BlobModel(), scene, BLUE_ID, [box], matte="model")
    harm = composite(BlobModel(), scene, BLUE_ID, [box], matte="model", harmonize_strength=1.0)
    centre = (slice(65, 75), slice(52, 68))
    green = np.array([40, 150, 40])
    d_plain = np.abs(plain.pixels[centre].reshape(-1, 3).mean(0) - green).sum()
    d_harm = np.abs(harm.pixels[centre].reshape(-1, 3).mean(0) - green).sum()
    assert d_harm < 0.5 * d_plain
    keep = _outside(scene.shape, [box])
    np.testing.assert_array_equal(harm.pixels[keep], scene[keep])


class DriftModel(BlobModel):
    """BlobModel drawing every object in a washed-out colour: a generator's drift on an unseen identity."""

    def generate(self, identity, pose):
        return super().generate(0.5 * identity + 0.3, pose)


def test_id_colour_takes_the_identity_images_colours():
    ident = np.full((40, 40, 3), 230, np.uint8)
    ident[12:28, 6:34] = (20, 40, 220)  # a blue object on the renders' plain grey
    scene = _scene()
    box = Box(30, 50, 60, 40)
    centre = (slice(65, 75), slice(52, 68))
    blue = np.array([20, 40, 220])
    far = {}
    for s in (0.0, 0.5, 1.0):
        res = composite(DriftModel(), scene, ident, [box], matte="model", id_colour=s, fit_identity=0)
        far[s] = np.abs(res.pixels[centre].reshape(-1, 3).astype(float).mean(0) - blue).sum()
        np.testing.assert_array_equal(res.pixels[_outside(scene.shape, [box])], scene[_outside(scene.shape, [box])])
    assert far[1.0] < 0.25 * far[0.0] and far[1.0] < far[0.5] < far[0.0], far
    with pytest.raises(UsageError, match="--id-colour 1.5"):
        composite(DriftModel(), scene, ident, [box], id_colour=1.5)
    # fitting the identity code to the --id image corrects the drift too (the default)
    fitted = composite(DriftModel(), scene, ident, [box], matte="model", fit_identity=200)
    assert np.abs(fitted.pixels[centre].reshape(-1, 3).astype(float).mean(0) - blue).sum() < 0.5 * far[0.0]


def test_added_object_in_the_pose_of_another_image():
    scene = _scene()
    pose_img = np.full((50, 70, 3), 230, np.uint8)
    pose_img[20:30, 30:40] = (250, 200, 0)  # yellow centre: BlobModel(colour_from_pose) paints it yellow
    at = Box(100, 10, 50, 30)
    res = composite(BlobModel(colour_from_pose=True), scene, RED_ID, [Target(at, pose_img, "pose.png")],
                    matte="model")
    assert res.report[0]["pose_source"] == "pose.png"
    centre = res.pixels[22:30, 118:132].reshape(-1, 3).mean(0)
    assert centre[0] > 200 and centre[1] > 150 and centre[2] < 80, centre


def test_bad_boxes_and_options():
    scene = _scene()
    with pytest.raises(UsageError, match="outside"):
        composite(BlobModel(), scene, RED_ID, [Box(500, 10, 20, 20)])
    with pytest.raises(UsageError, match="positive"):
        composite(BlobModel(), scene, RED_ID, ["10,10,0,5"])
    with pytest.raises(UsageError, match="--blend"):
        composite(BlobModel(), scene, RED_ID, [Box(1, 1, 5, 5)], blend="magic")
    with pytest.raises(UsageError, match="--matte"):
        composite(BlobModel(), scene, RED_ID, [Box(1, 1, 5, 5)], matte="magic")


def test_rembg_unavailable_is_fast_and_names_the_file(tmp_path):
    from posecli.pipelines.matting import Matter

    with pytest.raises(MissingWeightsError) as e:
        Matter("rembg")
    msg = str(e.value)
    assert "u2net.onnx" in msg and str(tmp_path / "u2net_empty") in msg and "\n" not in msg


def test_rembg_paths_follow_rembg_and_a_broken_model_file_falls_back(tmp_path, caplog):
    """Our copy of rembg's path rules agrees with rembg; auto survives a file onnxruntime cannot load."""
    import posecli.pipelines.matting as mt

    if mt.rembg_paths()[2]:
        pytest.skip(f"rembg not usable here: {mt.rembg_paths()[2]}")
    from rembg.sessions.u2net import U2netSession

    found, target, _ = mt.rembg_paths()
    assert found is None and target == Path(U2netSession.model_dir()) / "u2net.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not an onnx model")
    assert mt.rembg_paths()[0] == target
    with pytest.raises(MissingWeightsError, match="could not load"):
        mt.Matter("rembg")
    matter = mt.Matter("auto")
    assert matter.used == "model+grabcut" and "could not load" in matter.notice


def test_rembg_matte_reuses_one_session(monkeypatch):
    """The rembg path with its network stubbed: one session for every crop."""
    import posecli.pipelines.matting as mt

    if mt.rembg_paths()[2]:
        pytest.skip(f"rembg not importable here: {mt.rembg_paths()[2]}")
    import rembg

    made, seen = [], []
    monkeypatch.setattr(mt, "rembg_session", lambda: made.append(1) or "SESSION")

    def fake_remove(rgb, session=None, only_mask=False):
        seen.append(session)
        return (mt.background_matte(rgb) * 255).astype(np.uint8)

    monkeypatch.setattr(rembg, "remove", fake_remove)
    res = composite(BlobModel(), _scene(), BLUE_ID, [Box(30, 50, 60, 40), Box(100, 10, 40, 30)], matte="rembg",
                    remove_original=True)
    # one session for the 4 mattes: 2 renders, 2 original objects (and the --id image with --id-colour)
    assert made == [1] and seen == ["SESSION"] * 4
    assert [r["matte"] for r in res.report] == ["rembg", "rembg"]


# ---------------------------------------------------------------- boxes files

def test_load_boxes_formats(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"box": [1, 2, 3, 4], "azimuth": 30}, {"box": [5, 6, 7, 8]}]))
    assert load_boxes(p) == [Box(1, 2, 3, 4), Box(5, 6, 7, 8)]
    p.write_text(json.dumps([[1, 2, 3, 4]]))
    assert load_boxes(p) == [Box(1, 2, 3, 4)]
    p.write_text(json.dumps({"s1.png": [[1, 2, 3, 4]], "s2": [{"box": [5, 6, 7, 8]}]}))
    d = load_boxes(p)
    assert boxes_for(d, "x/s1.png", p) == [Box(1, 2, 3, 4)] and boxes_for(d, "y/s2.jpg", p) == [Box(5, 6, 7, 8)]
    with pytest.raises(InputError, match="no entry for scene 's3.png'"):
        boxes_for(d, "s3.png", p)
    c = tmp_path / "b.csv"
    c.write_text("scene,x,y,w,h\ns1.png,1,2,3,4\ns1.png,5,6,7,8\ns2.png,0,0,9,9\n")
    assert load_boxes(c) == {"s1.png": [Box(1, 2, 3, 4), Box(5, 6, 7, 8)], "s2.png": [Box(0, 0, 9, 9)]}
    c.write_text("1,2,3,4\n5,6,7,8\n")
    assert load_boxes(c) == [Box(1, 2, 3, 4), Box(5, 6, 7, 8)]


@pytest.mark.parametrize("name, text, message", [
    ("a.json", "[[1, 2, 3]", "not valid JSON"),
    ("a.json", "[[1, 2, 3]]", "expected [x, y, w, h]"),
    ("a.json", '[{"bbox": [1, 2, 3, 4]}]', "needs a \"box\""),
    ("a.json", "[[1, 2, 0, 4]]", "positive"),
    ("a.json", '{"s.png": 5}', "expected a list"),
    ("a.csv", "x,y,w,h\n1,2,three,4\n", "must be numbers"),
    ("a.csv", "x,y,w,h\n1,2,3\n", "columns"),
    ("a.txt", "1,2,3,4", ".json or .csv"),
])
def test_malformed_boxes_files(tmp_path, name, text, message):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        load_boxes(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- CLI

def _write(path, pixels):
    from posecli.media.images import write_image

    return write_image(path, pixels)


def _read(path, alpha=False):
    from posecli.media.images import read_image

    return read_image(path, alpha=alpha)


@pytest.fixture
def files(tmp_path):
    scene = _write(tmp_path / "scene.png", _scene())
    ident = _write(tmp_path / "id.png", RED_ID)
    return tmp_path, scene, ident


def test_cli_single_scene_json_and_debug_masks(runner, tiny_model_path, files):
    tmp, scene, ident = files
    out, masks = tmp / "out.png", tmp / "masks"
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", "30,50,60,40", "--box", "-5,-5,30,30",
                        "-m", tiny_model_path, "--matte", "grabcut", "--blend", "poisson", "--remove-original",
                        "--harmonize", "--debug-masks", masks, "--json", "-o", out])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    # the box reaching past the corner is clipped to the scene, with a notice (regions.Box.clip_to)
    assert info["output"] == str(out) and [b["box"] for b in info["boxes"]] == [[30, 50, 60, 40], [0, 0, 25, 25]]
    assert "[-5, -5, 30, 30] reaches past the" in r.stderr and "clipped to [0, 0, 25, 25]" in r.stderr
    assert {b["pose_source"] for b in info["boxes"]} == {"scene"} and info["boxes"][0]["matte"] == "grabcut"
    src, res = _read(scene), _read(out)
    assert res.shape == src.shape
    extra = [b["inpainted"] for b in info["boxes"] if b["inpainted"]]
    keep = _outside(src.shape, [Box(30, 50, 60, 40), Box(-5, -5, 30, 30)], extra)
    np.testing.assert_array_equal(res[keep], src[keep])
    names = {p.name for p in masks.iterdir()}
    assert {"scene_box0_pose.png", "scene_box0_matte.png", "scene_box0_original_matte.png",
            "scene_identity.png"} <= names


def test_cli_pose_at_and_grey_scene(runner, tiny_model_path, files):
    tmp, _, ident = files
    grey = _write(tmp / "grey.png", _scene()[:, :, 1].copy())
    out = tmp / "grey_out.png"
    r = invoke(runner, ["composite", "--scene", grey, "--id", ident, "--pose", ident, "--at", "10,10,40,30",
                        "-m", tiny_model_path, "--matte", "grabcut", "-o", out])
    assert r.exit_code == 0, r.output
    from PIL import Image

    with Image.open(out) as im:
        assert im.mode == "L" and im.size == (160, 120)


def test_cli_rgba_scene_to_stdout_keeps_rgba(runner, tiny_model_path, files):
    tmp, _, ident = files
    rgba = np.dstack([_scene(), np.full((120, 160), 255, np.uint8)])
    rgba[:, :20, 3] = 0
    scene = _write(tmp / "rgba.png", rgba)
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", "30,50,60,40", "--fit", "box",
                        "-m", tiny_model_path, "--matte", "grabcut", "-q", "-o", "-"])
    assert r.exit_code == 0, r.stderr
    from posecli.media.images import decode_image_bytes

    out = decode_image_bytes(r.stdout_bytes, "stdout", alpha=True)
    assert out.shape == rgba.shape
    keep = _outside(rgba.shape, [Box(30, 50, 60, 40)])
    np.testing.assert_array_equal(out[keep], rgba[keep])


def test_cli_auto_matte_notice(runner, tiny_model_path, files, tmp_path):
    tmp, scene, ident = files
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", "30,50,60,40", "-m", tiny_model_path,
                        "-o", tmp / "o.png"])
    assert r.exit_code == 0, r.output
    notice = [ln for ln in r.stderr.splitlines() if "--matte auto" in ln]
    assert len(notice) == 1 and "u2net.onnx" in notice[0] and "(-v: how to get the file)" in notice[0]
    assert len(notice[0]) < 160  # short; where the file goes is at -v
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", "30,50,60,40", "-m", tiny_model_path,
                        "-o", tmp / "o.png", "--overwrite", "-v"])
    assert r.exit_code == 0, r.output
    full = [ln for ln in r.stderr.splitlines() if "--matte auto" in ln and "u2net.onnx" in ln]
    assert any(str(tmp_path / "u2net_empty") in ln for ln in full), r.stderr


def test_cli_batch_with_boxes_file(runner, tiny_model_path, tmp_path):
    scenes = tmp_path / "scenes"
    for i in range(3):
        _write(scenes / f"s{i}.png", _scene(seed=i))
    ident = _write(tmp_path / "id.png", RED_ID)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"s0.png": [{"box": [30, 50, 60, 40]}], "s1": [[0, 0, 40, 40], [100, 60, 50, 50]],
                                 "s2.png": []}))
    out = tmp_path / "out"
    args = ["composite", "--scene", scenes, "--id", ident, "--boxes", boxes, "-m", tiny_model_path, "--matte",
            "model", "-o", out]
    r = invoke(runner, [*args, "--json"])  # s2 has no boxes (and the tiny model's mattes may be empty): an error
    assert r.exit_code == 1 and "--allow-empty" in r.stderr.splitlines()[-1] and not out.exists()
    args.append("--allow-empty")
    r = invoke(runner, [*args, "--json"])
    assert r.exit_code == 0, r.output
    reports = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [len(x["boxes"]) for x in reports] == [1, 2, 0]
    assert sorted(p.name for p in out.iterdir()) == ["s0.png", "s1.png", "s2.png"]
    np.testing.assert_array_equal(_read(out / "s2.png"), _read(scenes / "s2.png"))  # no boxes: unchanged
    r = invoke(runner, args)
    assert r.exit_code == 1 and "exists" in _one_error_line(r)
    (out / "s1.png").unlink()
    r = invoke(runner, [*args, "--skip-existing"])
    assert r.exit_code == 0 and (out / "s1.png").exists()
    (scenes / "s3.png").write_text("not an image")  # a bad scene: --keep-going does the others, then fails
    r = invoke(runner, [*args, "--overwrite", "--keep-going"])
    assert r.exit_code == 1 and "1 of 4 items failed" in r.stderr and "not an image" in r.stderr
    assert not (out / "s3.png").exists()


def test_cli_csv_boxes_for_one_scene(runner, tiny_model_path, files):
    tmp, scene, ident = files
    csv = tmp / "boxes.csv"
    csv.write_text("x,y,w,h\n30,50,60,40\n")
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--boxes", csv, "-m", tiny_model_path,
                        "--matte", "model", "-o", tmp / "o.jpg", "--allow-empty"])  # the tiny model's matte is empty
    assert r.exit_code == 0, r.output
    assert _read(tmp / "o.jpg").shape == (120, 160, 3)


@pytest.mark.parametrize("extra, code, message", [
    (["--box", "500,10,20,20"], 2, "outside the 160x120 image"),
    (["--box", "10,10,0,20"], 2, "positive"),
    (["--box", "10,10,20"], 2, "x,y,w,h"),
    (["--pose", "id.png"], 2, "pairs"),
    (["--box", "10,10,20,20", "--blend", "magic"], 2, "--blend"),
    (["--box", "10,10,20,20", "--matte", "rembg"], 1, "u2net.onnx"),
    ([], 2, "no boxes"),
])
def test_cli_bad_input_one_line_no_output(runner, tiny_model_path, files, extra, code, message):
    tmp, scene, ident = files
    extra = [str(tmp / e) if e == "id.png" else e for e in extra]
    out = tmp / "out.png"
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "-m", tiny_model_path, *extra, "-o", out])
    assert r.exit_code == code, r.output
    assert message in _one_error_line(r)
    assert not out.exists() and not list(tmp.glob(".out*"))


def test_cli_bad_files(runner, tiny_model_path, files):
    tmp, scene, ident = files
    bad_scene = tmp / "bad.png"
    bad_scene.write_bytes(b"not a png at all")
    bad_boxes = tmp / "boxes.json"
    bad_boxes.write_text('[{"box": [1, 2, 3]}]')
    out = tmp / "out.png"
    base = ["composite", "--id", ident, "-m", tiny_model_path, "-o", out]
    r = invoke(runner, [*base, "--scene", bad_scene, "--box", "1,1,5,5"])
    assert r.exit_code == 1 and "bad.png: not an image" in _one_error_line(r)
    r = invoke(runner, [*base, "--scene", scene, "--boxes", bad_boxes])
    assert r.exit_code == 1 and "boxes.json: top level[0]: expected [x, y, w, h]" in _one_error_line(r)
    assert not out.exists()


# ---------------------------------------------------------------- the synthetic scene

class CarOracle(PoseModel):
    """Knows each box's car pose (a side table: box crop -> (azimuth, elevation)); renders the replacement car.

    encode_pose finds the nearest crop of the table, so the test measures the
    compositing, not a model's quality.
    """

    method = "oracle"

    def __init__(self, crops, poses, params, size=64):
        super().__init__(_Cfg(image_size=size, identity_dim=1, pose_dim=1))
        from posecli.media.convert import to_tensor

        self.crops = to_tensor(np.stack(crops))
        self.poses, self.params = poses, params

    def encode_identity(self, x):
        return torch.zeros(len(x), 1)

    def encode_pose(self, x):
        d = ((x[:, None] - self.crops[None]) ** 2).flatten(2).mean(2)
        return d.argmin(1).float()[:, None]

    def generate(self, identity, pose):
        from posecli.data.synth.cars import render_car
        from posecli.media.convert import to_tensor

        return torch.cat([to_tensor(render_car(self.params, *self.poses[int(i)], self.image_size)) for i in pose[:, 0]])


def test_synthetic_scene_composite_beats_untouched_scene(tmp_path):
    """With an oracle model, the composite is much closer to the ground-truth replaced scene than the scene is."""
    if importlib.util.find_spec("posecli.data.synth.scene") is None:
        pytest.skip("posecli.data.synth.scene (`posecli synth scene`) is not there yet")
    from posecli.data.synth.scene import render_scene
    from posecli.pipelines.composite import square_of

    summary = render_scene(tmp_path / "demo", cars=3, width=320, height=200, seed=1)
    demo = tmp_path / "demo"
    scene, truth, ident = _read(demo / "scene.png"), _read(demo / "scene_replaced.png"), _read(demo / "replacement.png")
    boxes = load_boxes(demo / "boxes.json")  # the synth format, read as is
    entries = json.loads((demo / "boxes.json").read_text())
    assert boxes == [Box(*e["box"]) for e in entries] and len(boxes) == 3
    oracle = CarOracle([square_of(scene, b, 64, 0.0) for b in boxes],
                       [(e["azimuth"], e["elevation"]) for e in entries], summary["replacement"]["car_params"])

    def error(img):
        return float(np.abs(img.astype(np.float32) - truth.astype(np.float32)).mean())

    base = error(scene)
    for kw in ({"matte": "model"}, {"matte": "auto", "remove_original": True}, {"matte": "model", "blend": "poisson"}):
        res = composite(oracle, scene, ident, boxes, **kw)
        assert error(res.pixels) < 0.5 * base, (kw, error(res.pixels), base)
        extra = [r["inpainted"] for r in res.report if r["inpainted"]]
        keep = _outside(scene.shape, boxes, extra)
        np.testing.assert_array_equal(res.pixels[keep], scene[keep])
