"""posecli animate: output matches the source (frames, rate, size, sound), regions,
frame folders, smoothing, bounded memory, and bad input that leaves nothing behind."""

from __future__ import annotations

import subprocess
import threading
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.conftest import invoke
from posecli.errors import InputError
from posecli.media.ffmpeg_bin import ffmpeg_exe, ffmpeg_version
from posecli.media.images import read_image, write_image
from posecli.media.video import VideoReader, VideoWriter, probe_video, read_video_frames
from posecli.models.base import PoseModel
from posecli.pipelines.animate import animate
from posecli.pipelines.smoothing import DEFAULT_SMOOTH, EmaFilter, JitterMeter, OneEuroFilter, make_pose_filter
from posecli.pipelines.tracking import FaceTracker, fill_nearest, smooth_track

needs_ffmpeg6 = pytest.mark.skipif(ffmpeg_version() < (6, 0), reason="ffmpeg < 6 lacks -display_rotation / -fps_mode")


def ff(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, stdin=subprocess.DEVNULL)


def draw_face(w: int, h: int, cx: int, cy: int, s: int, mouth: float) -> np.ndarray:
    """A cartoon face OpenCV's Haar detector finds (skin oval, hair, eyes, brows, nose, mouth)."""
    import cv2

    img = np.full((h, w, 3), (70, 90, 120), np.uint8)
    cv2.ellipse(img, (cx, cy), (int(s * .32), int(s * .42)), 0, 0, 360, (205, 160, 130), -1)
    cv2.ellipse(img, (cx, cy - int(s * .33)), (int(s * .34), int(s * .16)), 0, 180, 360, (60, 40, 30), -1)
    for e in (-1, 1):
        eye = (cx + e * int(s * .13), cy - int(s * .08))
        cv2.ellipse(img, eye, (int(s * .07), int(s * .035)), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, eye, int(s * .03), (40, 30, 20), -1)
        cv2.line(img, (cx + e * int(s * .06), cy - int(s * .16)), (cx + e * int(s * .2), cy - int(s * .17)), (60, 40, 30), 2)
    cv2.ellipse(img, (cx, cy + int(s * .2)), (int(s * .1), max(1, int(s * .1 * mouth))), 0, 0, 360, (140, 50, 60), -1)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    c = {k: d / v for k, v in dict(av="av.mp4", silent="silent.mkv", odd="odd.mp4", rot="rot.mp4", vfr="vfr.mp4",
                                    face="face.mp4", noface="noface.mp4", sound="sound.m4a", zero="zero.avi",
                                    corrupt="corrupt.mp4").items()}
    ff("-f", "lavfi", "-i", "testsrc=size=64x48:rate=20:duration=1", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
       "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-c:a", "aac", "-shortest", "-movflags", "+faststart", c["av"])
    ff("-f", "lavfi", "-i", "testsrc=size=48x40:rate=15:duration=1", "-c:v", "libx264", c["silent"])
    ff("-f", "lavfi", "-i", "testsrc=size=33x25:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv444p", c["odd"])
    if ffmpeg_version() >= (6, 0):
        ff("-display_rotation:v:0", "90", "-i", c["av"], "-c", "copy", c["rot"])
        # variable rate: 1 s at 10 fps, then 1 s at 30 fps, over 2 s of sound; each frame another colour
        ff("-f", "lavfi", "-i", r"nullsrc=size=32x24:rate=30:duration=2,geq=r='4*N':g='128':b='255-4*N'",
           "-f", "lavfi", "-i", "sine=duration=2",
           "-vf", r"select='gte(t\,1)+not(mod(n\,3))'", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", c["vfr"])
    faces = [draw_face(96, 72, 48 + int(12 * np.sin(t / 4)), 38, 48, abs(np.sin(t / 2))) for t in range(16)]
    for t in (6, 7):
        faces[t] = np.full_like(faces[t], 90)  # frames without a face reuse the nearest box
    with VideoWriter(c["face"], fps=10) as w:
        w.write(np.stack(faces))
    ff("-f", "lavfi", "-i", "color=c=0x5a6070:size=64x48:rate=10:duration=0.5", "-c:v", "libx264", "-pix_fmt", "yuv420p", c["noface"])
    ff("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", c["sound"])
    ff("-f", "lavfi", "-i", "testsrc=size=32x24:rate=10", "-frames:v", "0", "-c:v", "mpeg4", c["zero"])
    data = bytearray(c["av"].read_bytes())
    mid = len(data) // 2
    data[mid: mid + 1500] = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    c["corrupt"].write_bytes(bytes(data))
    c["id"] = d / "id.png"
    write_image(c["id"], draw_face(64, 64, 32, 34, 44, 0.3))
    return c


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from posecli.modelfile import load_model

    return load_model(tiny_model_path)


@pytest.fixture(autouse=True)
def one_thread():
    """The test clips are tiny: one intra-op thread is faster and fair to a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(runner, model_path, clips, video, out, *extra):
    return invoke(runner, ["animate", "--id", clips["id"], "--video", video, "-m", model_path, "-o", out, "-q", *extra])


def audio_seconds(path: Path) -> float:
    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-map", "0:a:0",
                          "-f", "s16le", "-ac", "1", "-ar", "8000", "pipe:1"], capture_output=True, check=True).stdout
    return len(raw) / 2 / 8000


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".part" in p.name]


# -- the output matches the source ---------------------------------------------


def test_same_frames_rate_size_and_sound(runner, tiny_model_path, clips, tmp_path):
    out = tmp_path / "out.mp4"
    res = run(runner, tiny_model_path, clips, clips["av"], out)
    assert res.exit_code == 0, res.output
    src, info = probe_video(clips["av"]), probe_video(out)
    assert (info.frame_count, info.fps, info.width, info.height) == (src.frame_count, 20.0, 64, 48)
    assert info.has_audio and abs(audio_seconds(out) - audio_seconds(clips["av"])) < 0.05
    assert leftovers(tmp_path) == []


def test_without_audio_and_json(runner, tiny_model_path, clips, tmp_path):
    out = tmp_path / "out.mp4"
    res = run(runner, tiny_model_path, clips, clips["silent"], out, "--json")
    assert res.exit_code == 0, res.output
    import json

    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["frames"] == 15 and rep["size"] == [48, 40] and rep["region"] == "full"
    assert set(rep["stage_s"]) >= {"decode", "model", "compose", "encode"}
    info = probe_video(out)
    assert (info.frame_count, info.fps, info.has_audio) == (15, 15.0, False)


def test_no_audio_flag_drops_sound(runner, tiny_model_path, clips, tmp_path):
    out = tmp_path / "out.mkv"
    assert run(runner, tiny_model_path, clips, clips["av"], out, "--no-audio").exit_code == 0
    assert not probe_video(out).has_audio


def test_odd_size(runner, tiny_model_path, clips, tmp_path):
    # H.264 in yuv420p needs even sizes: VideoWriter pads one edge pixel; webm, gif and frames keep 33x25
    for name, size in (("o.mp4", (34, 26)), ("o.webm", (33, 25)), ("o.gif", (33, 25))):
        assert run(runner, tiny_model_path, clips, clips["odd"], tmp_path / name).exit_code == 0
        info = probe_video(tmp_path / name)
        assert (info.width, info.height, info.frame_count) == (*size, 10), name
    assert run(runner, tiny_model_path, clips, clips["odd"], tmp_path / "frames").exit_code == 0
    pngs = sorted((tmp_path / "frames").glob("*.png"))
    assert len(pngs) == 10 and read_image(pngs[0]).shape == (25, 33, 3)


@needs_ffmpeg6
def test_rotation_applied(runner, tiny_model_path, clips, tmp_path):
    out = tmp_path / "out.mp4"
    assert probe_video(clips["rot"]).rotation == 90
    assert run(runner, tiny_model_path, clips, clips["rot"], out).exit_code == 0
    info = probe_video(out)
    assert (info.width, info.height, info.rotation, info.frame_count) == (48, 64, 0, 20)  # written upright


@needs_ffmpeg6
def test_variable_rate_resampled_in_sync(runner, tiny_model_path, clips, tmp_path):
    src = probe_video(clips["vfr"])
    out = tmp_path / "out.mp4"
    assert run(runner, tiny_model_path, clips, clips["vfr"], out, "--side-by-side").exit_code == 0
    info = probe_video(out)
    assert info.fps == src.fps and abs(info.frame_count - src.duration * src.fps) <= 1
    video_s = info.frame_count / info.fps
    assert abs(audio_seconds(out) - video_s) < 0.1 and abs(video_s - 2.0) < 0.1
    # the left half shows the driving frame shown at the same time in the source
    want = list(read_video_frames(clips["vfr"], fps=src.fps))
    got = [f[:, :32] for f in read_video_frames(out)]
    assert len(got) == len(want)
    errs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(got, want)]
    shifted = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(got[1:], want)]
    assert max(errs) < 12 and np.mean(errs) < np.mean(shifted) / 2


# -- regions -----------------------------------------------------------------------


def test_box_changes_only_the_box(runner, tiny_model_path, clips, tmp_path):
    out = tmp_path / "frames"
    assert run(runner, tiny_model_path, clips, clips["av"], out, "--box", "10,8,24,20").exit_code == 0
    src = list(read_video_frames(clips["av"], fps=20))
    got = [read_image(p) for p in sorted(out.glob("*.png"))]
    assert len(got) == len(src) == 20
    outside = np.ones((48, 64), bool)
    outside[8:28, 10:34] = False
    assert all(np.array_equal(g[outside], s[outside]) for g, s in zip(got, src))
    assert np.abs(got[0][12:24, 14:30].astype(int) - src[0][12:24, 14:30]).mean() > 5


def test_track_face_pastes_at_the_face(runner, tiny_model_path, clips, tmp_path):
    out = tmp_path / "frames"
    assert run(runner, tiny_model_path, clips, clips["face"], out, "--track", "face", "--margin", "0.2").exit_code == 0
    src = list(read_video_frames(clips["face"]))
    got = [read_image(p) for p in sorted(out.glob("*.png"))]
    assert len(got) == 16
    for g, s in zip(got, src):
        diff = np.abs(g.astype(int) - s).sum(2)
        assert diff[:, :6].max() == 0 and diff[:, -6:].max() == 0  # the sides are untouched
        assert diff[30:46, 36:60].mean() > 5  # the face is replaced


def test_face_track_fills_gaps_and_smooths(clips):
    from posecli.pipelines.sources import open_source

    src = open_source(str(clips["face"]))
    tracker = FaceTracker(src.open, (96, 72), src.info.fps, margin=0.0).start()
    try:
        boxes = [tracker.box(t) for t in range(16)]
    finally:
        tracker.close()
    centres = [b.x + b.w / 2 for b in boxes]
    truth = [48 + int(12 * np.sin(t / 4)) for t in range(16)]
    assert np.abs(np.subtract(centres, truth)).max() < 6  # including frames 6 and 7 without a face
    raw = np.array([[1, 1, 1], [np.nan] * 3, [np.nan] * 3, [np.nan] * 3, [5, 5, 5.0]])
    assert fill_nearest(raw)[:, 0].tolist() == [1, 1, 1, 5, 5]
    steps = smooth_track(np.array([[0.0, 0, 1]] * 10 + [[10.0, 0, 1]] * 10), 1.5)[:, 0]
    assert np.all(np.diff(steps) > -1e-9) and 0 < steps[9] < steps[10] < 10  # a ramp, not a jump


def test_crop_only_and_side_by_side(runner, tiny_model_path, clips, tmp_path):
    for extra, size in ((["--box", "8,8,32,32", "--crop-only"], (32, 32)), (["--side-by-side"], (128, 48)),
                        (["--box", "8,8,32,32", "--crop-only", "--side-by-side"], (64, 32))):
        out = tmp_path / f"{len(extra)}.mp4"
        res = run(runner, tiny_model_path, clips, clips["av"], out, *extra)
        assert res.exit_code == 0, res.output
        info = probe_video(out)
        assert (info.width, info.height, info.frame_count) == (*size, 20), extra
    sbs = next(read_video_frames(tmp_path / "1.mp4"))
    first = next(read_video_frames(clips["av"]))
    assert np.abs(sbs[:, :64].astype(int) - first).mean() < 6  # driving on the left


def test_frame_folders_in_and_out(runner, tiny_model_path, clips, tmp_path):
    frames = tmp_path / "in"
    frames.mkdir()
    for i in range(6):
        write_image(frames / f"f{i:02d}.png", np.full((20, 30, 3), 40 * i, np.uint8))
    (frames / "notes.txt").write_text("not a frame")
    out = tmp_path / "out.mp4"
    assert run(runner, tiny_model_path, clips, frames, out, "--fps", "12").exit_code == 0
    info = probe_video(out)
    assert (info.frame_count, info.fps, info.width, info.height, info.has_audio) == (6, 12.0, 30, 20, False)
    outdir = tmp_path / "outdir"
    assert run(runner, tiny_model_path, clips, str(frames / "f0[0-3].png"), outdir).exit_code == 0
    assert [p.name for p in sorted(outdir.iterdir())] == [f"{i:06d}.png" for i in range(4)]
    assert probe_video(out).fps == 12.0
    assert run(runner, tiny_model_path, clips, frames, tmp_path / "o25.mp4").exit_code == 0
    assert probe_video(tmp_path / "o25.mp4").fps == 25.0  # the default rate for frames
    res = run(runner, tiny_model_path, clips, frames, outdir)  # not empty: needs --overwrite
    assert res.exit_code == 1 and "--overwrite" in res.stderr
    assert run(runner, tiny_model_path, clips, frames, outdir, "--skip-existing").exit_code == 0
    assert run(runner, tiny_model_path, clips, frames, outdir, "--overwrite").exit_code == 0
    assert len(list(outdir.iterdir())) == 6 and leftovers(tmp_path) == []


# -- smoothing -----------------------------------------------------------------------


class PixelModel(PoseModel):
    """A model whose output follows its pose code closely: pose = a random projection of the
    pixels, image = the code projected back. Untrained conv nets barely react to the pose."""

    def __init__(self, size: int = 16, pose_dim: int = 8):
        super().__init__(SimpleNamespace(image_size=size, identity_dim=2, pose_dim=pose_dim))
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(3 * size * size, pose_dim, generator=g) / (3 * size * size) ** 0.5)
        self.scale = torch.nn.Parameter(torch.tensor(4.0))

    def encode_identity(self, x):
        return torch.zeros(len(x), 2)

    def encode_pose(self, x):
        return (x.flatten(1) - 0.5) @ self.proj

    def generate(self, identity, pose):
        s = self.config.image_size
        return torch.sigmoid(self.scale * pose @ self.proj.T).view(-1, 3, s, s)


def test_smoothing_lowers_jitter(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(60, 200, (16, 16, 3))
    frames = [np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8) for _ in range(50)]
    model = PixelModel().eval()
    ident = np.zeros((16, 16, 3), np.uint8)
    jit = {s: animate(model, ident, frames, tmp_path / f"s{i}", smooth=s, fps=25, precision="fp32").jitter
           for i, s in enumerate((0, DEFAULT_SMOOTH, 1.0))}
    assert jit[0] > 0.05
    assert jit[DEFAULT_SMOOTH] < 0.6 * jit[0] and jit[1.0] < jit[DEFAULT_SMOOTH]
    ema = animate(model, ident, frames, tmp_path / "ema", smooth=DEFAULT_SMOOTH, smooth_filter="ema", fps=25,
                  precision="fp32").jitter
    assert ema < 0.6 * jit[0]


def test_flicker_tells_shake_from_following_motion():
    """An output that follows a smooth motion exactly has jitter 1 and flicker 1;
    the same motion with frame-to-frame noise on top flickers several times more,
    while its jitter rises far less."""
    t = np.arange(60)
    ramp = (40 + 2 * t)[:, None, None, None] * np.ones((1, 8, 8, 3))  # brightening by 2 levels a frame
    driving = (ramp + np.random.default_rng(0).normal(0, 0.5, ramp.shape)).clip(0, 255).astype(np.uint8)
    noisy = (ramp + np.random.default_rng(1).normal(0, 3, ramp.shape)).clip(0, 255).astype(np.uint8)
    follow, shake = JitterMeter(), JitterMeter()
    for i in range(0, 60, 7):  # batches of uneven length, in frame order
        follow.update(driving[i:i + 7], driving[i:i + 7])
        shake.update(driving[i:i + 7], noisy[i:i + 7])
    assert follow.value == pytest.approx(1.0) and follow.flicker == pytest.approx(1.0)
    assert shake.flicker > 3 * follow.flicker
    assert shake.flicker / follow.flicker > 1.5 * shake.value / follow.value
    assert JitterMeter().flicker is None


def test_one_euro_follows_motion_and_damps_noise():
    t = np.arange(100) / 25
    rng = np.random.default_rng(1)
    still = 1 + rng.normal(0, 0.05, (100, 4))
    out = OneEuroFilter(25, 1 / DEFAULT_SMOOTH)(still)
    assert out[20:].std(0).mean() < 0.7 * still[20:].std(0).mean()
    wave = np.stack([np.sin(2 * np.pi * 2 * t + p) for p in range(4)], 1)  # 2 Hz motion
    fast = OneEuroFilter(25, 1 / DEFAULT_SMOOTH)(wave + rng.normal(0, 0.05, wave.shape))
    slow = EmaFilter(25, 1 / DEFAULT_SMOOTH)(wave + rng.normal(0, 0.05, wave.shape))
    assert np.abs(fast - wave)[25:].mean() < 0.6 * np.abs(slow - wave)[25:].mean()  # less lag than an EMA
    assert make_pose_filter(0, 25) is None
    split = OneEuroFilter(25, 2.0)
    assert np.allclose(np.concatenate([split(still[:37]), split(still[37:])]), OneEuroFilter(25, 2.0)(still))


# -- streaming -----------------------------------------------------------------------


def test_memory_does_not_grow_with_length(tiny, tmp_path):
    short, long = tmp_path / "short.mkv", tmp_path / "long.mkv"
    for path, n in ((short, 100), (long, 3000)):
        ff("-f", "lavfi", "-i", f"testsrc=size=64x64:rate=100,trim=end_frame={n}", "-c:v", "libx264",
           "-preset", "ultrafast", path)
    ident = np.zeros((32, 32, 3), np.uint8)
    peaks = []
    tracemalloc.start()
    try:
        for path in (short, long):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            res = animate(tiny, ident, path, tmp_path / f"out_{path.stem}.mkv", region="8,8,48,48", batch_size=64)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    assert res.frames == 3000
    # all 3000 decoded 64x64 frames alone would be 37 MB
    assert peaks[1] < peaks[0] + 6e6, peaks


@pytest.mark.parametrize("region", ["full", "face"])
def test_interrupt_leaves_nothing_and_stops_threads(tiny, clips, tmp_path, region):
    calls = []
    real = tiny.generate

    def fail(identity, pose):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(identity, pose)

    before = threading.active_count()
    tiny.generate = fail
    try:
        with pytest.raises(KeyboardInterrupt):
            animate(tiny, read_image(clips["id"]), clips["face" if region == "face" else "av"], tmp_path / "out.mp4",
                    region=region, batch_size=4)
    finally:
        del tiny.generate
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() <= before + 1  # ffmpeg stderr readers may take a moment


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("case,code,message", [
    ("sound", 1, "no video stream"),
    ("zero", 1, "no frames"),
    ("corrupt", 1, "decoding failed"),
    ("badid", 1, "not an image"),
    ("outside", 2, "outside"),
    ("noface", 1, "no face found"),
    ("both", 2, "one way"),
    ("exists", 1, "--overwrite"),
    ("precision", 2, "--precision"),
    ("smooth", 2, "--smooth"),
    ("suffix", 2, "not a video type"),
])
def test_bad_input(runner, tiny_model_path, clips, tmp_path, case, code, message):
    out = tmp_path / "out.mp4"
    video, extra = clips["av"], []
    if case in ("sound", "zero", "corrupt", "noface"):
        video = clips[case]
    if case == "noface":
        extra = ["--track", "face"]
    if case == "outside":
        extra = ["--box", "100,10,20,20"]
    if case == "both":
        extra = ["--box", "1,1,8,8", "--track", "face"]
    if case == "exists":
        out.write_bytes(b"keep me")
    extra += {"precision": ["--precision", "fp8"], "smooth": ["--smooth", "-1"]}.get(case, [])
    if case == "suffix":
        out = tmp_path / "out.png"
    args = ["animate", "--id", clips["id"], "--video", video, "-m", tiny_model_path, "-o", out, *extra]
    if case == "badid":
        bad = tmp_path / "id.png"
        bad.write_text("not a png")
        args[2] = bad
    res = invoke(runner, args)
    assert res.exit_code == code, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.output
    if case == "exists":
        assert out.read_bytes() == b"keep me"
    else:
        assert not out.exists()
    assert leftovers(tmp_path) == []


def test_library_errors_name_the_file(tiny, clips, tmp_path):
    with pytest.raises(InputError, match="no face found") as exc:
        animate(tiny, read_image(clips["id"]), clips["noface"], tmp_path / "o.gif", region="face")
    assert str(clips["noface"]) in str(exc.value)
    assert not (tmp_path / "o.gif").exists() and leftovers(tmp_path) == []


def test_failed_run_leaves_no_frame_folder(runner, tiny_model_path, clips, tmp_path):
    out = tmp_path / "frames"
    res = run(runner, tiny_model_path, clips, clips["corrupt"], out)
    assert res.exit_code == 1 and "decoding failed" in res.stderr
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its hidden .part twin
