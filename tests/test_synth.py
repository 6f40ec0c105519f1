"""Synthetic ground truth: determinism, labels that match the pixels, framing, poses, scene, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from posecli.data.synth import (BACKGROUND, car_params, head_params, render_car, render_car_rgba, render_cars,
                                render_head, render_head_rgba, render_heads, render_scene)
from posecli.media.images import read_image

SMALL = dict(identities=3, size=32, azimuths=4, elevations=2)


def files(root: Path, skip=("synth.json",)) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cars_ds(tmp_path_factory):
    out = tmp_path_factory.mktemp("cars") / "ds"
    summary = render_cars(out, seed=1, workers=1, **SMALL)
    return out, summary


def test_cars_are_deterministic_whatever_the_workers(cars_ds, tmp_path):
    out, summary = cars_ds
    assert summary["images"] == 3 * 4 * 2 and summary["complete"]
    again = tmp_path / "again"
    render_cars(again, seed=1, workers=2, **SMALL)
    assert files(out) == files(again)  # every PNG and labels.csv byte-identical
    other = tmp_path / "other"
    render_cars(other, seed=2, workers=1, **SMALL)
    a, b = files(out), files(other)
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".png"))


def test_labels_match_files_and_rerender(cars_ds):
    out, _ = cars_ds
    table = rows(out / "labels.csv")
    assert list(table[0])[:5] == ["path", "identity", "pose", "azimuth", "elevation"]
    assert {"body", "body_color", "taxi", "stripes"} <= set(table[0])
    assert sorted(r["path"] for r in table) == sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert [r["path"] for r in table] == sorted(r["path"] for r in table)  # sortable names
    assert {r["identity"] for r in table} == {"car_0000", "car_0001", "car_0002"}
    assert sorted({float(r["azimuth"]) for r in table}) == [0, 90, 180, 270]
    assert sorted({float(r["elevation"]) for r in table}) == [0, 30]
    for r in table[::5]:
        p = car_params(1, int(r["identity"].split("_")[1]))
        assert r["body"] == p["body"] and r["body_color"] == p["body_color"]
        img = render_car(p, float(r["azimuth"]), float(r["elevation"]), 32)
        assert np.array_equal(read_image(out / r["path"]), img)
    assert json.loads((out / "synth.json").read_text())["kind"] == "cars"


def _coverage_box(alpha):
    ys, xs = np.nonzero(alpha > 0)
    return xs.min(), ys.min(), xs.max(), ys.max()


@pytest.mark.parametrize("kind", ["car", "head"])
def test_objects_centred_and_wholly_in_frame(kind):
    size = 40
    for i in range(4):
        for a, b in ((0, 0), (45, 30), (135, 10), (-60, -30), (270, 20)):
            if kind == "car":
                _, alpha = render_car_rgba(car_params(7, i), a, abs(b), size)
                img = render_car(car_params(7, i), a, abs(b), size)
            else:
                _, alpha = render_head_rgba(head_params(7, i), a % 120 - 60, b, 1.0, size)
                img = render_head(head_params(7, i), a % 120 - 60, b, 1.0, size)
            border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
            assert (border == BACKGROUND).all()
            assert alpha[0].max() == alpha[-1].max() == alpha[:, 0].max() == alpha[:, -1].max() == 0
            x0, y0, x1, y1 = _coverage_box(alpha)
            assert abs((x0 + x1 + 1) / 2 - size / 2) < 0.1 * size
            assert abs((y0 + y1 + 1) / 2 - size / 2) < 0.1 * size
            assert max(x1 - x0, y1 - y0) > 0.3 * size  # not a speck


def test_identities_differ_at_the_same_pose():
    cars = [render_car(car_params(0, i), 45, 20, 32).astype(float) for i in range(6)]
    heads = [render_head(head_params(0, i), 20, 0, 0.5, 32).astype(float) for i in range(6)]
    for imgs in (cars, heads):
        for i in range(len(imgs)):
            for j in range(i):
                assert np.abs(imgs[i] - imgs[j]).mean() > 3.0


def test_pose_is_unambiguous():
    for i in range(5):
        p = car_params(3, i)
        front, back = render_car(p, 0, 10, 32).astype(float), render_car(p, 180, 10, 32).astype(float)
        left, right = render_car(p, 90, 10, 32).astype(float), render_car(p, 270, 10, 32).astype(float)
        assert np.abs(front - back).mean() > 2.0
        assert np.abs(left - right).mean() > 2.0
        # red tail lights at the back only (on a grey car, so the paint cannot be red)
        grey = {**p, "body_color": "#8c8c8c", "tone_color": "#8c8c8c", "taxi": False, "stripes": False}
        redness = lambda im: ((im[..., 0].astype(int) - im[..., 1:].max(-1)) > 60).sum()  # noqa: E731
        assert redness(render_car(grey, 180, 10, 64)) > 4
        assert redness(render_car(grey, 0, 10, 64)) == 0


def test_mouth_opening_changes_only_the_mouth():
    p = head_params(0, 2)
    closed, opened = render_head(p, 0, 0, 0.0, 64), render_head(p, 0, 0, 1.0, 64)
    diff = np.abs(closed.astype(int) - opened.astype(int)).sum(-1)
    assert diff.sum() > 0
    ys, xs = np.nonzero(diff)
    assert ys.min() > 32 and abs(xs.mean() - 32) < 6  # below the centre, in the middle
    assert (diff[ys.min():ys.max() + 1, xs.min():xs.max() + 1] > 0).mean() > 0.3


def test_near_frontal_heads_are_found_by_haar():
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "CascadeClassifier"):
        pytest.skip("this OpenCV has no Haar cascades")
    casc = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = 0
    for i in range(6):
        img = render_head(head_params(0, i), 0, 0, 0.0, 128)
        found += len(casc.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 1.1, 3, minSize=(25, 25))) > 0
    assert found >= 5


def test_heads_dataset_layout(tmp_path):
    out = tmp_path / "heads"
    s = render_heads(out, identities=2, size=32, yaws=3, pitches=2, mouths=2, seed=4, workers=2)
    assert s["images"] == 2 * 3 * 2 * 2
    table = rows(out / "labels.csv")
    assert list(table[0])[:6] == ["path", "identity", "pose", "yaw", "pitch", "mouth"]
    assert {"hair_style", "skin_color", "glasses"} <= set(table[0])
    assert sorted({float(r["yaw"]) for r in table}) == [-60, 0, 60]
    assert sorted({float(r["mouth"]) for r in table}) == [0, 1]
    r = table[7]
    img = render_head(head_params(4, int(r["identity"].split("_")[1])), float(r["yaw"]), float(r["pitch"]),
                      float(r["mouth"]), 32)
    assert np.array_equal(read_image(out / r["path"]), img)


def test_talking_head_clip_with_audio(tmp_path):
    video = pytest.importorskip("posecli.media.video")
    out = tmp_path / "talk"
    render_heads(out, identities=1, size=32, yaws=1, pitches=1, mouths=1, video=True, clip_seconds=1.2, fps=10,
                 workers=1)
    clip = out / "videos" / "head_0000_0.mp4"
    assert clip.is_file()
    info = video.probe_video(clip)
    assert (info.frame_count, info.fps, info.has_audio, info.width) == (12, 10.0, True, 32)
    table = rows(out / "videos.csv")
    assert len(table) == 12 and list(table[0])[:8] == ["video", "identity", "clip", "frame", "time", "yaw", "pitch", "mouth"]
    mouth = [float(r["mouth"]) for r in table]
    assert all(0 <= m <= 1 for m in mouth) and max(mouth) > 0.2
    assert all(abs(float(r["yaw"])) <= 30 and abs(float(r["pitch"])) <= 15 for r in table)
    first = next(iter(video.read_video_frames(clip)))
    r = table[0]
    truth = render_head(head_params(0, 0), float(r["yaw"]), float(r["pitch"]), float(r["mouth"]), 32)
    assert np.abs(first.astype(float) - truth).mean() < 6  # H.264 is lossy


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene") / "s"
    summary = render_scene(out, cars=3, width=256, height=160, seed=5, pool=20)
    return out, summary


def test_scene_boxes_and_replacement(scene):
    out, summary = scene
    img, swapped = read_image(out / "scene.png"), read_image(out / "scene_replaced.png")
    assert img.shape == swapped.shape == (160, 256, 3)
    boxes = json.loads((out / "boxes.json").read_text())
    assert len(boxes) == 3
    inside = np.zeros((160, 256), bool)
    for k, b in enumerate(boxes):
        x, y, w, h = b["box"]
        assert w == h >= 24 and 0 <= x and x + w <= 256 and 0 <= y and y + h <= 160
        bx, by, bw, bh = b["bbox"]
        assert x <= bx and bx + bw <= x + w and y <= by and by + bh <= y + h
        assert 0 <= b["elevation"] <= 10 and b["car_params"] == car_params(5, b["index"])
        assert b["identity"] != summary["replacement"]["identity"]
        mask = read_image(out / "masks" / f"car_{k}.png")[..., 0]
        ys, xs = np.nonzero(mask)
        assert len(ys) and x <= xs.min() and xs.max() < x + w and y <= ys.min() and ys.max() < y + h
        inside[y:y + h, x:x + w] = True
    diff = np.abs(img.astype(int) - swapped.astype(int)).sum(-1)
    assert diff[~inside].max() == 0  # only the boxes change
    assert (diff[inside] > 0).mean() > 0.05
    assert read_image(out / "replacement.png").shape == (64, 64, 3)


def test_scene_cars_are_composited_with_their_coverage(scene):
    out, _ = scene
    img, bg = read_image(out / "scene.png").astype(float), read_image(out / "background.png").astype(float) / 255
    boxes = json.loads((out / "boxes.json").read_text())
    for k, b in enumerate(boxes):
        x, y, s, _ = b["box"]
        others = np.zeros(img.shape[:2], bool)
        for j, o in enumerate(boxes):
            if j != k:
                ox, oy, os_, _ = o["box"]
                others[oy:oy + os_, ox:ox + os_] = True
        premult, alpha = render_car_rgba(b["car_params"], b["azimuth"], b["elevation"], s)
        expect = (premult + (1 - alpha[..., None]) * bg[y:y + s, x:x + s]) * 255
        free = ~others[y:y + s, x:x + s]
        edge = free & (alpha > 0.05) & (alpha < 0.95)  # anti-aliased rim: mixes car and street
        assert edge.any()
        assert np.abs(img[y:y + s, x:x + s][free] - expect[free]).max() <= 1.01


# ---- CLI ------------------------------------------------------------------------------------------


def invoke(args):
    from typer.testing import CliRunner

    from posecli.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_cars_end_to_end(tmp_path):
    out = tmp_path / "cars"
    r = invoke(["synth", "cars", out, "-n", 2, "--size", 24, "--azimuths", 3, "--elevations", 1, "--json", "-q",
                "--workers", 1])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["images"] == 6 and (out / "labels.csv").is_file() and (out / "car_0001" / "az02_el0.png").is_file()

    # the elevation grid's top (the bundled cars saw 0 and 20 degrees; the default top is 30)
    low = tmp_path / "low"
    r = invoke(["synth", "cars", low, "-n", 1, "--size", 24, "--azimuths", 1, "--elevations", 2, "--max-elevation", 20,
                "-q", "--workers", 1])
    assert r.exit_code == 0, r.output
    assert [float(row["elevation"]) for row in csv.DictReader((low / "labels.csv").open())] == [0.0, 20.0]

    again = invoke(["synth", "cars", out, "-n", 2])
    assert again.exit_code == 1
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "--overwrite" in lines[0] and str(out) in lines[0]

    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    refused = invoke(["synth", "heads", user, "-n", 1, "--size", 24, "--yaws", 1, "--pitches", 1, "--mouths", 1])
    assert refused.exit_code == 1 and "not a posecli synth output" in refused.stderr
    ok = invoke(["synth", "heads", user, "-n", 1, "--size", 24, "--yaws", 1, "--pitches", 1, "--mouths", 1,
                 "--overwrite", "-q"])
    assert ok.exit_code == 0, ok.output
    assert (user / "notes.txt").read_text() == "keep me" and (user / "head_0000" / "y00_p0_m0.png").is_file()


@pytest.mark.parametrize("args", [["cars", "-n", 0], ["cars", "--size", 8], ["cars", "--max-elevation", 95],
                                  ["heads", "--size", 2000],
                                  ["scene", "--cars", 0], ["scene", "--width", 10]])
def test_cli_usage_errors(tmp_path, args):
    r = invoke(["synth", args[0], tmp_path / "x", *args[1:]])
    assert r.exit_code == 2
    assert r.stderr.startswith("posecli: error:") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_cli_scene(tmp_path):
    out = tmp_path / "scene"
    r = invoke(["synth", "scene", out, "--cars", 2, "--width", 160, "--height", 112, "--identity", 3, "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["replacement"]["identity"] == "car_0003"
    assert "2 cars" not in r.stderr and "images" in r.stderr  # the summary line
    for name in ("scene.png", "scene_replaced.png", "replacement.png", "boxes.json", "masks/car_1.png"):
        assert (out / name).is_file()
