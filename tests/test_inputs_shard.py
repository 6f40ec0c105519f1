"""Issue 16's input cases: boxes (one rule), GIF stills (first frame), folders naming what
they skip, and --shard I/N (a stable partition of a batch, also under torchrun)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import invoke
from posecli.batch import Shard, parse_shard, resolve_shard, shard_index, shard_path, take_shard
from posecli.errors import InputError, UsageError
from posecli.regions import MAX_BOX, Box

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_posecli_logger(monkeypatch):
    """caplog sees posecli's notices; no handler left bound to an earlier CliRunner's closed stderr."""
    import logging

    lg = logging.getLogger("posecli")
    monkeypatch.setattr(lg, "handlers", [])
    monkeypatch.setattr(lg, "propagate", True)


def _err_lines(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.startswith("posecli: error:")]


def _png(path: Path, colour=(200, 40, 40), size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((size[1], size[0], 3), colour, np.uint8)
    a[size[1] // 4 : 3 * size[1] // 4, size[0] // 4 : 3 * size[0] // 4] = (30, 30, 220)
    Image.fromarray(a).save(path)
    return path


def _gif(path: Path, frames: int = 3, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ims = [Image.fromarray(np.full((size[1], size[0], 3), (60 * i + 20, 90, 160), np.uint8)) for i in range(frames)]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=40, loop=0)
    return path


# ------------------------------------------------------------------------------- boxes

@pytest.mark.parametrize("text, words", [
    ("inf,0,50,50", "not a finite number"),
    ("0,0,nan,5", "not a finite number"),
    ("0,0,99999999,99999999", f"beyond the {MAX_BOX}-pixel limit"),
    ("1e400,0,5,5", "not a finite number"),
    ("0,0,0,5", "positive"),
    ("0,0,5", "four numbers"),
    ("a,b,c,d", "must be numbers"),
])
def test_box_parse_refuses_before_any_work(text, words):
    with pytest.raises(UsageError, match=words):
        Box.parse(text)


def test_box_clip_rule(caplog):
    assert Box(10, 10, 20, 20).clip_to(100, 80) == Box(10, 10, 20, 20) and not caplog.records
    with caplog.at_level("WARNING", logger="posecli"):
        assert Box(-5, 0, 10, 10).clip_to(100, 80) == Box(0, 0, 5, 10)
    assert "[-5, 0, 10, 10] reaches past the 100x80 image; clipped to [0, 0, 5, 10]" in caplog.text
    assert Box(90, 70, 50, 50).clip_to(100, 80) == Box(90, 70, 10, 10)
    for outside in (Box(100, 0, 5, 5), Box(-10, 0, 10, 5), Box(0, 80, 5, 5)):
        with pytest.raises(UsageError, match="lies outside the 100x80 image"):
            outside.clip_to(100, 80)


def test_boxes_files_share_the_rule(tmp_path):
    from posecli.pipelines.boxfile import load_boxes

    j = tmp_path / "b.json"
    j.write_text('[[0, 0, 1e400, 5]]')  # JSON reads 1e400 as infinity
    with pytest.raises(InputError, match=r"top level\[0\]: .*not a finite number"):
        load_boxes(j)
    j.write_text(json.dumps({"s.png": [{"box": [0, 0, 99999999, 10]}]}))
    with pytest.raises(InputError, match=r"s.png\[0\]: .*beyond the"):
        load_boxes(j)
    c = tmp_path / "b.csv"
    c.write_text("x,y,w,h\n1,2,3,4\ninf,0,5,5\n")
    with pytest.raises(InputError, match="line 3: .*not a finite number") as e:
        load_boxes(c)
    assert str(e.value).startswith(f"{c}: ")
    c.write_text("x,y,w,h\n-5,0,10,10\n")
    assert load_boxes(c) == [Box(-5, 0, 10, 10)]  # negative is allowed here: clipped where it meets a scene


@pytest.fixture
def scene_files(tmp_path):
    scene = _png(tmp_path / "scene.png", (120, 120, 120), (160, 120))
    ident = _png(tmp_path / "id.png", (200, 40, 40), (64, 64))
    return tmp_path, scene, ident


@pytest.mark.parametrize("box, code, words", [
    ("inf,0,50,50", 2, "not a finite number"),
    ("0,0,99999999,99999999", 2, "beyond the"),
    ("500,10,20,20", 2, "outside the 160x120 image"),
])
def test_composite_box_refusals_are_one_line(runner, tiny_model_path, scene_files, box, code, words):
    tmp, scene, ident = scene_files
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", box, "-m", tiny_model_path,
                        "-o", tmp / "o.png"])
    assert r.exit_code == code, r.output
    errs = _err_lines(r)
    assert len(errs) == 1 and words in errs[0] and "internal error" not in r.stderr
    assert not (tmp / "o.png").exists()


def test_composite_negative_box_is_clipped_with_a_notice(runner, tiny_model_path, scene_files):
    tmp, scene, ident = scene_files
    boxes = tmp / "boxes.json"
    boxes.write_text("[[-5, 0, 60, 60]]")
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--boxes", boxes, "-m", tiny_model_path,
                        "--matte", "grabcut", "--json", "-o", tmp / "o.png"])
    assert r.exit_code == 0, r.output
    assert "[-5, 0, 60, 60] reaches past the 160x120 image; clipped to [0, 0, 55, 60]" in r.stderr
    assert json.loads(r.stdout)["boxes"][0]["box"] == [0, 0, 55, 60]


def test_composite_placing_nothing_is_an_error_unless_asked(runner, tiny_model_path, scene_files):
    tmp, scene, ident = scene_files
    boxes = tmp / "boxes.json"
    boxes.write_text(json.dumps({"scene.png": [], "other.png": [[0, 0, 9, 9]]}))
    args = ["composite", "--scene", scene, "--id", ident, "--boxes", boxes, "-m", tiny_model_path, "-o", tmp / "o.png"]
    r = invoke(runner, args)
    assert r.exit_code == 1 and "nothing to place" in _err_lines(r)[0] and not (tmp / "o.png").exists()
    r = invoke(runner, [*args, "--allow-empty"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp / "o.png")), np.asarray(Image.open(scene)))


def test_animate_box_shares_the_rule(runner, tiny_model_path, tmp_path):
    frames = tmp_path / "frames"
    for i in range(3):
        _png(frames / f"f{i}.png", (100 + 20 * i, 90, 80), (48, 40))
    ident = _png(tmp_path / "id.png")
    base = ["animate", "--id", ident, "--video", frames, "-m", tiny_model_path, "--smooth", "0"]
    r = invoke(runner, [*base, "--box", "inf,0,10,10", "-o", tmp_path / "a"])
    assert r.exit_code == 2 and "--box 'inf,0,10,10': inf is not a finite number" in _err_lines(r)[0]
    r = invoke(runner, [*base, "--box", "0,0,99999999,99999999", "-o", tmp_path / "a"])
    assert r.exit_code == 2 and "beyond the" in _err_lines(r)[0]
    r = invoke(runner, [*base, "--box", "-8,-8,32,32", "-o", tmp_path / "a"])
    assert r.exit_code == 0, r.output
    assert "clipped to [0, 0, 24, 24]" in r.stderr and len(list((tmp_path / "a").iterdir())) == 3


# -------------------------------------------------------------------------- GIF stills

def test_read_image_takes_the_first_frame_with_one_notice(tmp_path, caplog):
    from posecli.media import images

    g = _gif(tmp_path / "anim.gif")
    images._noticed.discard(str(g))
    with caplog.at_level("WARNING", logger="posecli"):
        a = images.read_image(g)
        b = images.read_image(g)  # announced once per file
    assert a.shape == (30, 40, 3) and tuple(a[0, 0]) == (20, 90, 160) and np.array_equal(a, b)
    notes = [r.getMessage() for r in caplog.records]
    assert notes == [f"{g}: an animated image (3 frames) where one image is expected; using its first frame"]
    still = tmp_path / "still.gif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(still)
    caplog.clear()
    with caplog.at_level("WARNING", logger="posecli"):
        assert images.read_image(still).shape == (8, 8, 3)
    assert not caplog.records  # one frame: nothing to say


NOTICE = "an animated image (3 frames) where one image is expected; using its first frame"


def test_every_image_path_takes_a_gif(runner, tiny_model_path, tmp_path):
    from posecli.media import images

    images._noticed.clear()
    gif = _gif(tmp_path / "g.gif")
    png = _png(tmp_path / "p.png")
    m = ["-m", tiny_model_path]
    runs = {
        "swap --id": ["swap", "--id", gif, "--pose", png, *m, "-o", tmp_path / "s.png"],
        "swap --pose": ["swap", "--id", png, "--pose", gif, *m, "-o", tmp_path / "s2.png"],
        "encode": ["encode", gif, png, *m, "-o", tmp_path / "c.npz"],
        "composite --id": ["composite", "--scene", _png(tmp_path / "sc.png", size=(96, 80)), "--id", gif,
                           "--box", "10,10,40,40", "--allow-empty", *m, "-o", tmp_path / "co.png"],
        "composite --scene": ["composite", "--scene", gif, "--id", png, "--box", "5,5,20,20", "--allow-empty", *m,
                              "-o", tmp_path / "co2.png"],
        "animate --id": ["animate", "--id", gif, "--video", tmp_path / "fr", *m, "-o", tmp_path / "an"],
    }
    _png(tmp_path / "fr" / "f0.png", size=(32, 32))
    for what, args in runs.items():
        images._noticed.clear()
        r = invoke(runner, args)
        assert r.exit_code == 0, (what, r.output)
        assert sum(NOTICE in ln for ln in r.stderr.splitlines()) == 1, (what, r.stderr)
    assert list(np.load(tmp_path / "c.npz")["paths"]) == [str(gif), str(png)]


def test_eval_reads_gif_stills(runner, tiny_model_path, tiny_cars, tmp_path):
    from posecli.media import images

    data = tmp_path / "cars"
    shutil.copytree(tiny_cars, data)
    first = sorted((data / "car_0000").glob("*.png"))[0]
    px = np.asarray(Image.open(first).convert("RGB"))
    gif = first.with_suffix(".gif")
    Image.fromarray(px).save(gif, save_all=True, append_images=[Image.fromarray(255 - px)], duration=40)
    first.unlink()
    labels = (data / "labels.csv").read_text().replace(f"car_0000/{first.name}", f"car_0000/{gif.name}")
    (data / "labels.csv").write_text(labels)
    images._noticed.clear()
    r = invoke(runner, ["eval", data, "-m", tiny_model_path, "--pairs", "8", "--no-leakage", "--json"])
    assert r.exit_code == 0, r.output
    assert sum(NOTICE.replace("3 frames", "2 frames") in ln for ln in r.stderr.splitlines()) == 1


def test_gif_is_still_a_video_for_animate_and_not_writable(tmp_path):
    from posecli.pipelines.sources import VideoSource, open_source

    assert isinstance(open_source(str(_gif(tmp_path / "clip.gif", size=(32, 32)))), VideoSource)
    with pytest.raises(UsageError, match="is one image"):
        open_source(str(tmp_path / "one.png"))


def test_swap_refuses_writing_gif_before_work(runner, tiny_model_path, tmp_path):
    png = _png(tmp_path / "p.png")
    r = invoke(runner, ["swap", "--id", png, "--pose", png, "-m", tiny_model_path, "-o", tmp_path / "o.gif"])
    assert r.exit_code == 2 and "cannot write images as '.gif'" in _err_lines(r)[0]


def test_folders_name_what_they_skip(tmp_path, caplog):
    from posecli.inputs import expand_inputs

    d = tmp_path / "in"
    _png(d / "a.png")
    _gif(d / "b.gif")
    (d / "notes.txt").write_text("x")
    (d / "clip.mp4").write_bytes(b"")
    (d / ".DS_Store").write_bytes(b"")
    with caplog.at_level("WARNING", logger="posecli"):
        got = expand_inputs([str(d)])
    assert [Path(p).name for p in got] == ["a.png", "b.gif"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{d}: skipped 2 file(s) not of type png, jpg, jpeg, webp, bmp, tif, tiff, gif: clip.mp4, notes.txt"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="posecli"):
        expand_inputs([str(d / "a.png")])
    assert not caplog.records


# ------------------------------------------------------------------------------ --shard

def test_shard_index_is_stable_and_partitions():
    # fixed values: the same on every machine and Python (sha1, not the salted hash())
    assert [shard_index(n, 4) for n in ("a.png", "b.png", "car_0001__car_0002.png")] == \
        [shard_index(n, 4) for n in ("a.png", "b.png", "car_0001__car_0002.png")]
    assert shard_index("a.png", 1000003) == int.from_bytes(__import__("hashlib").sha1(b"a.png").digest()[:8], "big") % 1000003
    names = [f"img_{i:04d}.png" for i in range(500)]
    parts = [take_shard(names, Shard(i, 3), key=str) for i in range(3)]
    assert sorted(sum(parts, [])) == names and all(len(p) > 100 for p in parts)  # exactly once, balanced
    code = "from posecli.batch import shard_index; print([shard_index(f'n{i}', 7) for i in range(20)])"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1


@pytest.mark.parametrize("text", ["2/2", "1/0", "-1/2", "a/b", "3", "1/2/3"])
def test_parse_shard_refuses(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def test_resolve_shard_under_torchrun():
    assert resolve_shard(None, {}) is None
    assert resolve_shard(None, {"RANK": "1", "WORLD_SIZE": "3"}) == Shard(1, 3, "torchrun")
    assert resolve_shard(None, {"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert resolve_shard("0/2", {"RANK": "1", "WORLD_SIZE": "3"}) == Shard(0, 2)  # explicit wins
    assert resolve_shard("0/1", {"RANK": "1", "WORLD_SIZE": "3"}) is None  # 0/1: everything
    assert shard_path("out/codes.npz", Shard(1, 4)) == Path("out/codes.shard1of4.npz")
    assert shard_path("codes.npz", None) == Path("codes.npz")


@pytest.fixture(scope="module")
def shard_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("shard")
    for i in range(5):
        _png(d / "ids" / f"id{i}.png", (40 * i + 30, 60, 90))
    for i in range(3):
        _png(d / "poses" / f"pose{i}.png", (90, 40 * i + 30, 60))
    return d


def _posecli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "posecli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


def test_swap_two_processes_cover_every_pair_once(shard_inputs, tiny_model_path, tmp_path):
    out = tmp_path / "out"
    args = ["swap", "--id", shard_inputs / "ids", "--pose", shard_inputs / "poses", "-m", tiny_model_path, "-o", out,
            "-v", "--skip-existing"]
    procs = [subprocess.Popen([sys.executable, "-m", "posecli", *map(str, args), "--shard", f"{i}/2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    counts = [int(err.split(f"shard {i}/2 (--shard): ")[1].split(" of ")[0]) for i, (_, err, _) in enumerate(results)]
    expected = sorted(f"id{a}__pose{b}.png" for a in range(5) for b in range(3))
    assert sorted(p.name for p in out.iterdir()) == expected and sum(counts) == 15 and min(counts) > 0
    mine0 = {n for n in expected if shard_index(n, 2) == 0}
    assert f"wrote {len(mine0)} image(s)" in results[0][1]
    # a re-run of part 1 with --skip-existing does nothing; --grid cannot be split
    r = _posecli(*args, "--shard", "1/2")
    assert r.returncode == 0 and "nothing to do" in r.stderr
    r = _posecli(*args, "--shard", "1/2", "--grid", tmp_path / "g.png")
    assert r.returncode == 2 and "--grid draws every pair" in r.stderr


def test_swap_under_torchrun_shards_by_rank(shard_inputs, tiny_model_path, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("no torchrun beside this Python")
    out = tmp_path / "out"
    r = subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", "posecli", "swap", "--id",
                        str(shard_inputs / "ids" / "id0.png"), "--id", str(shard_inputs / "ids" / "id1.png"), "--pose",
                        str(shard_inputs / "poses"), "-m", str(tiny_model_path), "-o", str(out), "-v"],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "shard 0/2 (torchrun)" in r.stderr and "shard 1/2 (torchrun)" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(f"id{a}__pose{b}.png" for a in range(2) for b in range(3))


def test_encode_shards_write_their_own_files(runner, shard_inputs, tiny_model_path, tmp_path):
    got = []
    for i in range(2):
        r = invoke(runner, ["encode", shard_inputs / "ids", "-m", tiny_model_path, "-o", tmp_path / "codes.npz",
                            "--shard", f"{i}/2"])
        assert r.exit_code == 0, r.output
        f = tmp_path / f"codes.shard{i}of2.npz"
        if f.exists():
            got += [Path(p).name for p in np.load(f)["paths"]]
    assert not (tmp_path / "codes.npz").exists()
    assert sorted(got) == [f"id{i}.png" for i in range(5)]
    r = invoke(runner, ["encode", shard_inputs / "ids", "-m", tiny_model_path, "-o", tmp_path / "c.npz",
                        "--shard", "2/2"])
    assert r.exit_code == 2 and "--shard 2/2" in _err_lines(r)[0]


def test_composite_shards_cover_every_scene_once(runner, shard_inputs, tiny_model_path, tmp_path):
    out = tmp_path / "out"
    for i in range(2):
        r = invoke(runner, ["composite", "--scene", shard_inputs / "ids", "--id", shard_inputs / "poses" / "pose0.png",
                            "--box", "8,8,30,30", "--allow-empty", "-m", tiny_model_path, "-o", out, "--shard",
                            f"{i}/2", "--skip-existing"])
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [f"id{i}.png" for i in range(5)]


# ------------------------------------------------------------------ train --size from the data

@pytest.mark.parametrize("side, size", [(20, 32), (32, 32), (48, 32), (64, 64), (100, 64), (256, 64)])
def test_train_size_comes_from_the_data(tmp_path, side, size):
    from posecli.data.dataset import infer_size

    for ident in ("a", "b"):
        for k in range(3):
            _png(tmp_path / "data" / ident / f"{k}.png", size=(side + 10 * k, side))  # the smallest side counts
    got, why = infer_size([str(tmp_path / "data")])
    assert got == size and f"{side} px" in why


def test_animate_several_videos_split_by_shard(runner, tiny_model_path, tmp_path):
    from posecli.media.video import write_video

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(4):
        frames = [np.full((32, 32, 3), (40 * i + 20, 10 * k, 90), np.uint8) for k in range(4)]
        write_video(clips / f"c{i}.mp4", frames, fps=8)
    ident = _png(tmp_path / "id.png", size=(32, 32))
    out = tmp_path / "out"
    base = ["animate", "--id", ident, "-m", tiny_model_path, "--smooth", "0", "-o", out, "--skip-existing"]
    r0 = invoke(runner, [*base, "--video", clips, "--shard", "0/2"])  # a folder of videos
    r1 = invoke(runner, [*base, "--video", str(clips / "*.mp4"), "--shard", "1/2"])  # a quoted glob
    assert r0.exit_code == 0 and r1.exit_code == 0, r0.output + r1.output
    assert sorted(p.name for p in out.iterdir()) == [f"c{i}.mp4" for i in range(4)]
    mine = sum(shard_index(f"c{i}.mp4", 2) == 0 for i in range(4))
    assert (f"wrote {mine} video(s)" in r0.stderr) if mine else "nothing to do" in r0.stderr
    r = invoke(runner, [*base, "--video", clips / "c0.mp4", "--video", clips / "c1.mp4"])  # repeated: both exist
    assert r.exit_code == 0 and "skipped 2 existing" in r.stderr
    r = invoke(runner, ["animate", "--id", ident, "-m", tiny_model_path, "--video", clips, "-o", tmp_path / "o.mp4"])
    assert r.exit_code == 2 and "give a folder" in _err_lines(r)[0]


# ------------------------------------------------------------------ eval --shard / --merge

def _eval_args(data, model, *extra):
    return ["eval", data, "-m", model, "--pairs", "60", "--seed", "3", *extra, "-q"]


def _close_reports(a: dict, b: dict) -> None:
    """Two reports of one evaluation: equal counts and leakage, metrics up to float summation order."""
    for key in ("images", "identities", "poses", "pairs", "method", "image_size", "leakage"):
        assert a[key] == b[key], key
    for m, row in a["transfer"].items():
        for name, v in row.items():
            assert (v is None and b["transfer"][m][name] is None) or v == pytest.approx(b["transfer"][m][name],
                                                                                       rel=1e-6), (m, name)
    for m, v in a["reconstruction"].items():
        assert (v is None and b["reconstruction"][m] is None) or v == pytest.approx(b["reconstruction"][m], rel=1e-6)


def test_eval_two_processes_then_merge_equal_one_run(tiny_cars, tiny_model_path, tmp_path):
    whole = _posecli(*_eval_args(tiny_cars, tiny_model_path, "-o", tmp_path / "whole.json"))
    assert whole.returncode == 0, whole.stderr
    report = tmp_path / "parts" / "report.json"
    procs = [subprocess.Popen([sys.executable, "-m", "posecli",
                               *map(str, _eval_args(tiny_cars, tiny_model_path, "--shard", f"{i}/2", "-o", report))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    parts = sorted(p.name for p in report.parent.iterdir())
    assert parts == ["report.shard0of2.npz", "report.shard1of2.npz"]  # no report yet, no temporary files
    from posecli.eval.parts import load_part

    parts = [load_part(report.parent / f"report.shard{i}of2.npz") for i in range(2)]
    pairs, images = [p.transfer.n for p in parts], [len(p.index) for p in parts]
    assert sum(pairs) == 60 and min(pairs) > 0  # each part did a share of the pairs, together all of them
    assert sum(images) == 64 and min(images) > 0 and not set(parts[0].index) & set(parts[1].index)
    # a re-run of a written part with --skip-existing does nothing
    before = (report.parent / "report.shard1of2.npz").stat().st_mtime_ns
    again = _posecli(*_eval_args(tiny_cars, tiny_model_path, "--shard", "1/2", "-o", report, "--skip-existing")[:-1])
    assert again.returncode == 0 and "report.shard1of2.npz exists; skipped" in again.stderr
    assert (report.parent / "report.shard1of2.npz").stat().st_mtime_ns == before
    r = _posecli(*_eval_args(tiny_cars, tiny_model_path, "--merge", "-o", report, "--json"))
    assert r.returncode == 0, r.stderr
    merged = json.loads(r.stdout)
    assert merged == json.loads(report.read_text()) and merged["shards"] == 2
    _close_reports(merged, json.loads((tmp_path / "whole.json").read_text()))


@pytest.fixture(scope="module")
def eval_parts(tiny_cars, tiny_model_path, tmp_path_factory):
    """Both parts of a 2-part evaluation of tiny_cars (read-only: copy before changing)."""
    from typer.testing import CliRunner

    d = tmp_path_factory.mktemp("evalparts")
    for i in range(2):
        r = invoke(CliRunner(), _eval_args(tiny_cars, tiny_model_path, "--shard", f"{i}/2", "-o", d / "r.json",
                                           "--no-leakage"))
        assert r.exit_code == 0, r.output
    return d


def _parts_copy(eval_parts, tmp_path, which=(0, 1)) -> Path:
    tmp_path.mkdir(parents=True)
    for i in which:
        shutil.copy(eval_parts / f"r.shard{i}of2.npz", tmp_path)
    return tmp_path / "r.json"


def test_eval_merge_refuses_incomplete_or_foreign_parts(runner, eval_parts, tiny_cars, tiny_model_path, tmp_path):
    def merge(report, model=tiny_model_path, data=tiny_cars):
        return invoke(runner, ["eval", data, "-m", model, "--merge", "-o", report, "--no-leakage"])

    r = merge(_parts_copy(eval_parts, tmp_path / "one", which=(1,)))
    assert r.exit_code == 2 and "1 of 2 parts missing" in _err_lines(r)[0] and "--shard 0/2" in _err_lines(r)[0]
    r = merge(tmp_path / "none" / "r.json")
    assert r.exit_code == 2 and "no parts r.shardIofN.npz" in _err_lines(r)[0]
    mixed = _parts_copy(eval_parts, tmp_path / "mixed")
    shutil.copy(eval_parts / "r.shard0of2.npz", mixed.parent / "r.shard0of3.npz")
    r = merge(mixed)
    assert r.exit_code == 2 and "parts of 2 and 3 shards are mixed" in _err_lines(r)[0]
    # another model (same architecture, other weights) or other labels: named, refused
    import torch

    from posecli.modelfile import load_model, save_model

    other = load_model(tiny_model_path)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    save_model(tmp_path / "other.safetensors", other, training={"data": "none"})
    r = merge(_parts_copy(eval_parts, tmp_path / "m"), model=tmp_path / "other.safetensors")
    assert r.exit_code == 1 and "evaluated another model" in _err_lines(r)[0]
    data2 = tmp_path / "data2"
    shutil.copytree(tiny_cars, data2)
    (data2 / "labels.csv").write_text((data2 / "labels.csv").read_text() + "\n", encoding="utf-8")
    r = merge(_parts_copy(eval_parts, tmp_path / "l"), data=data2)
    assert r.exit_code == 1 and "evaluated another labels file" in _err_lines(r)[0]
    # a damaged part: one line naming it; no report written
    bad = _parts_copy(eval_parts, tmp_path / "bad")
    (bad.parent / "r.shard1of2.npz").write_bytes(b"PK\x03\x04 not really")
    r = merge(bad)
    assert r.exit_code == 1 and "r.shard1of2.npz" in _err_lines(r)[0] and "not a posecli eval part" in r.stderr
    assert not bad.exists()
    # the parts merge when whole
    good = _parts_copy(eval_parts, tmp_path / "good")
    r = merge(good)
    assert r.exit_code == 0, r.output
    assert json.loads(good.read_text())["pairs"] == 60


def test_check_parts_names_each_part_by_file_or_rank(eval_parts):
    """A part of another evaluation is named by its file, or under torchrun by its rank."""
    import dataclasses

    from posecli.eval.parts import check_parts, load_part

    files = [eval_parts / f"r.shard{i}of2.npz" for i in range(2)]
    parts = [load_part(f) for f in files]
    check_parts(parts, files)  # one evaluation, whole
    check_parts(parts, ["rank 0", "rank 1"])
    foreign = [parts[0], dataclasses.replace(parts[1], meta={**parts[1].meta, "seed": 99})]
    with pytest.raises(InputError, match=r"^rank 1: a part of another evaluation: its seed is 99, rank 0's is 3$"):
        check_parts(foreign, ["rank 0", "rank 1"])
    with pytest.raises(InputError, match=r"r\.shard1of2\.npz: a part of another evaluation: .*r\.shard0of2\.npz's is 3"):
        check_parts(foreign, files)


def test_eval_shard_and_merge_option_errors(runner, tiny_cars, tiny_model_path, tmp_path):
    for extra, words in ((["--shard", "0/2"], "give -o REPORT.json"),
                         (["--merge"], "--merge: give -o REPORT.json"),
                         (["--merge", "--shard", "0/2", "-o", tmp_path / "r.json"], "without --shard"),
                         (["--shard", "0/2", "-o", tmp_path / "r.json", "--overwrite", "--skip-existing"],
                          "contradict")):
        r = invoke(runner, _eval_args(tiny_cars, tiny_model_path, *extra))
        assert r.exit_code == 2 and words in _err_lines(r)[0], (extra, r.output)


def test_eval_under_torchrun_gathers_on_rank_zero(tiny_cars, tiny_model_path, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("no torchrun beside this Python")
    whole = _posecli(*_eval_args(tiny_cars, tiny_model_path, "--json"))
    assert whole.returncode == 0, whole.stderr
    r = subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", "posecli",
                        *map(str, _eval_args(tiny_cars, tiny_model_path, "--json", "-v"))],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count('"transfer"') == 1  # one report, from rank 0
    got = json.loads(r.stdout)
    assert got["shards"] == 2
    _close_reports(got, json.loads(whole.stdout))
