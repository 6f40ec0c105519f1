"""posecli.media.video and ffmpeg_bin: probing without ffprobe, reading, writing, failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from posecli.errors import InputError, OutputExistsError, PoseCliError, UsageError
from posecli.media import video as video_mod
from posecli.media.ffmpeg_bin import (
    ffmpeg_exe,
    ffmpeg_version,
    has_encoder,
    last_message,
    parse_input_dump,
)
from posecli.media.video import (
    VideoReader,
    VideoWriter,
    inspect_media,
    probe_video,
    read_video_frames,
    write_video,
)


# -display_rotation (input option) and -fps_mode need ffmpeg >= 6 / 5.1; a system
# ffmpeg on PATH may be older than imageio-ffmpeg's.
needs_ffmpeg6 = pytest.mark.skipif(ffmpeg_version() < (6, 0), reason="ffmpeg < 6 lacks -display_rotation")


def ff(*args) -> None:
    """Run the same ffmpeg binary posecli uses (tests need no system ffmpeg)."""
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, stdin=subprocess.DEVNULL)


def colour_frames(n=12, w=32, h=24) -> list[np.ndarray]:
    """Flat frames with distinct grey levels, so order and count can be checked."""
    return [np.full((h, w, 3), 20 + (i * 15) % 225, np.uint8) for i in range(n)]


def tone(seconds=1.0, rate=16000, channels=1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    a = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return a if channels == 1 else np.stack([a] * channels, axis=1)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Source files made by ffmpeg itself: a clip with aac sound, a rotated copy, sound only."""
    d = tmp_path_factory.mktemp("media")
    src = d / "src.mp4"
    ff("-f", "lavfi", "-i", "testsrc=size=64x48:rate=20:duration=1", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
       "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "5", "-c:a", "aac", "-shortest", "-movflags", "+faststart", src)
    rot = d / "rot.mp4"
    if ffmpeg_version() >= (6, 0):
        ff("-display_rotation:v:0", "90", "-i", src, "-c", "copy", rot)
    m4a = d / "sound.m4a"
    ff("-i", src, "-vn", "-c:a", "copy", m4a)
    wav = d / "sound.wav"
    ff("-i", src, "-vn", wav)
    return {"src": src, "rot": rot, "m4a": m4a, "wav": wav}


def test_ffmpeg_found():
    exe = ffmpeg_exe()
    assert Path(exe).is_file()
    assert ffmpeg_version() >= (4, 0)
    assert has_encoder("libx264") and not has_encoder("no-such-encoder")


# -- parsing ffmpeg's dump ------------------------------------------------------

NEW_DUMP = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'a.mp4':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 113 kb/s
  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 1920x1080 [SAR 1:1 DAR 16:9], 19 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)
    Metadata:
      handler_name    : VideoHandler
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 70 kb/s (default)
At least one output file must be specified
"""

OLD_DUMP = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mp4':
  Duration: N/A, bitrate: N/A
    Stream #0:0(eng): Video: h264 (avc1 / 0x31637661), yuv420p, 640x480, 1k tbr, 90k tbn, 180k tbc
    Metadata:
      rotate          : 90
    Stream #0:1: Video: mjpeg, yuvj420p(pc), 300x300 [SAR 1:1 DAR 1:1], 90k tbr (attached pic)
Output #0, null, to 'pipe:':
    Stream #0:0(eng): Video: h264 (avc1 / 0x31637661), yuv420p, 320x200, 1k tbr
"""


def test_parse_new_style_dump():
    d = parse_input_dump(NEW_DUMP)
    assert d.duration == pytest.approx(62.5)
    (v,) = d.video
    assert (v.width, v.height, v.fps, v.rotation, v.codec) == (1920, 1080, 29.97, -90.0, "h264")
    assert [a.codec for a in d.audio] == ["aac"]


def test_parse_old_style_dump_rotate_tag_and_cover_art():
    d = parse_input_dump(OLD_DUMP)
    assert d.duration is None
    assert len(d.streams) == 2  # the Output section is ignored
    (v,) = d.video  # the attached picture is not a video stream
    assert (v.width, v.height, v.fps) == (640, 480, 1000.0)
    assert v.rotation == -90.0  # rotate tag counts clockwise, the display matrix counter-clockwise
    assert d.audio == []


def test_last_message_strips_prefixes():
    lines = ["[vist#0:0/h264 @ 0x55] [dec:h264 @ 0x56] Error submitting packet: Invalid data", "Last message repeated 2 times"]
    assert last_message(lines) == "Error submitting packet: Invalid data"


# -- probing -----------------------------------------------------------------


def test_probe_source(media):
    info = probe_video(media["src"])
    assert (info.width, info.height, info.fps, info.frame_count) == (64, 48, 20.0, 20)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert info.has_audio and info.rotation == 0


@needs_ffmpeg6
def test_rotation_metadata(media):
    info = probe_video(media["rot"])
    assert info.rotation == 90.0
    assert (info.width, info.height) == (48, 64)  # displayed size: swapped
    with VideoReader(media["rot"]) as reader:
        frames = list(reader)
    assert len(frames) == 20
    assert frames[0].shape == (64, 48, 3)


@needs_ffmpeg6
def test_rotated_content_is_upright(tmp_path):
    f = np.zeros((24, 32, 3), np.uint8)
    f[:, :16] = (255, 0, 0)  # left red, right blue
    f[:, 16:] = (0, 0, 255)
    write_video(tmp_path / "lr.mp4", [f] * 4, fps=10)
    ff("-display_rotation:v:0", "90", "-i", tmp_path / "lr.mp4", "-c", "copy", tmp_path / "lr90.mp4")
    frame = next(iter(read_video_frames(tmp_path / "lr90.mp4")))
    assert frame.shape == (32, 24, 3)
    assert frame[4, 12, 2] > 200 and frame[-4, 12, 0] > 200  # turned 90 degrees counter-clockwise


@pytest.mark.parametrize("key", ["m4a", "wav"])
def test_audio_only_has_no_video_stream(media, key):
    with pytest.raises(InputError, match="no video stream") as exc:
        probe_video(media[key])
    assert str(media[key]) in str(exc.value)
    assert inspect_media(media[key]).audio


def test_cover_art_is_not_a_video(media, tmp_path):
    cover = tmp_path / "cover.png"
    ff("-f", "lavfi", "-i", "color=c=red:size=16x16", "-frames:v", "1", cover)
    out = tmp_path / "song.m4a"
    ff("-i", media["m4a"], "-i", cover, "-map", "0", "-map", "1", "-c", "copy", "-disposition:v", "attached_pic", out)
    with pytest.raises(InputError, match="no video stream"):
        probe_video(out)


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 50, bytes(range(256)) * 20])
def test_not_a_video(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError, match="not a media file") as exc:
        probe_video(path)
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg


def test_missing_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        probe_video(tmp_path / "none.mp4")
    with pytest.raises(InputError, match="folder"):
        VideoReader(tmp_path)


def test_corrupt_middle_raises(media, tmp_path):
    data = bytearray(media["src"].read_bytes())  # faststart: the index is at the front, frames after
    mid = len(data) // 2
    data[mid : mid + 1500] = np.random.default_rng(0).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    assert probe_video(bad).frame_count == 20  # the header is fine
    with pytest.raises(InputError, match="decoding failed after") as exc:
        list(read_video_frames(bad))
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)


# -- writing and reading back ------------------------------------------------


def test_mp4_round_trip_without_audio(tmp_path):
    frames = colour_frames(12)
    path = write_video(tmp_path / "a.mp4", frames, fps=12)
    assert path == tmp_path / "a.mp4"
    info = probe_video(path)
    assert (info.width, info.height, info.frame_count, info.fps) == (32, 24, 12, 12.0)
    assert info.duration == pytest.approx(1.0, abs=0.05) and not info.has_audio
    got = list(read_video_frames(path))
    assert len(got) == 12 and got[0].shape == (24, 32, 3) and got[0].dtype == np.uint8
    assert [abs(int(g.mean()) - int(f.mean())) <= 3 for g, f in zip(got, frames)] == [True] * 12


def test_batch_write_and_reader_iteration(tmp_path):
    batch = np.stack(colour_frames(10))
    with VideoWriter(tmp_path / "b.mkv", fps=10) as w:
        w.write(batch[:4])
        w.write(batch[4:])
        assert w.frames_written == 10
    with VideoReader(tmp_path / "b.mkv") as r:
        assert r.info.frame_count == 10
        n = sum(1 for _ in r)
    assert n == 10 and r.frames_read == 10


@pytest.mark.parametrize("ext", [".mp4", ".webm"])
def test_audio_from_array(tmp_path, ext):
    path = write_video(tmp_path / f"s{ext}", colour_frames(10), fps=10, audio=(tone(0.5, channels=2), 16000))
    info = probe_video(path)
    assert info.has_audio and info.frame_count == 10  # shorter sound does not cut the picture
    want = {".mp4": "aac", ".webm": "opus"}[ext] if has_encoder("libopus") or ext == ".mp4" else "vorbis"
    assert inspect_media(path).audio[0].codec == want


def test_longer_audio_is_cut_and_wav_removed(tmp_path, monkeypatch):
    made = []
    real = video_mod._write_wav
    monkeypatch.setattr(video_mod, "_write_wav", lambda *a: made.append(real(*a)) or made[-1])
    path = write_video(tmp_path / "s.mp4", colour_frames(10), fps=10, audio=(tone(3.0), 16000))
    info = probe_video(path)
    assert info.frame_count == 10 and info.duration == pytest.approx(1.0, abs=0.05)
    assert len(made) == 1 and not made[0].exists()  # the temporary WAV is gone


def test_audio_copied_from_source(media, tmp_path):
    path = write_video(tmp_path / "c.mp4", colour_frames(20, 64, 48), fps=20, audio_from=media["src"])
    info = probe_video(path)
    assert info.has_audio and info.frame_count == 20
    assert inspect_media(path).audio[0].codec == "aac"
    # a copied track longer than the picture is cut where the picture ends
    path = write_video(tmp_path / "short.mp4", colour_frames(6, 64, 48), fps=20, audio_from=media["src"])
    assert probe_video(path).duration == pytest.approx(0.3, abs=0.05)
    # webm cannot hold aac: re-encoded
    path = write_video(tmp_path / "c.webm", colour_frames(20, 64, 48), fps=20, audio_from=media["src"])
    assert inspect_media(path).audio[0].codec in ("opus", "vorbis")


def test_audio_from_silent_source(tmp_path):
    silent = write_video(tmp_path / "silent.mp4", colour_frames(5), fps=10)
    path = write_video(tmp_path / "o.mp4", colour_frames(5), fps=10, audio_from=silent)
    assert not probe_video(path).has_audio


def test_odd_size_is_padded_for_h264(tmp_path):
    frames = [np.zeros((25, 33, 3), np.uint8) for _ in range(6)]
    for f in frames:
        f[:, -1] = 250  # last column bright: the added column repeats it
        f[-1, :] = 250
    with VideoWriter(tmp_path / "odd.mp4", fps=10) as w:
        for f in frames:
            w.write(f)
        assert w.output_size == (34, 26)
    info = probe_video(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (34, 26)
    got = next(iter(read_video_frames(tmp_path / "odd.mp4")))
    assert got.shape == (26, 34, 3)
    assert got[5:20, -1].mean() > 200 and got[-1, 5:28].mean() > 200 and got[5:20, 5:28].mean() < 30


def test_odd_size_kept_for_webm_and_gif(tmp_path):
    for ext in (".webm", ".gif"):
        path = write_video(tmp_path / f"odd{ext}", colour_frames(6, 33, 25), fps=10)
        info = probe_video(path)
        assert (info.width, info.height, info.frame_count) == (33, 25, 6)


def test_webm_and_gif(tmp_path):
    webm = write_video(tmp_path / "a.webm", colour_frames(8), fps=8)
    assert inspect_media(webm).video[0].codec == ("vp9" if has_encoder("libvpx-vp9") else "vp8")
    gif = write_video(tmp_path / "a.gif", colour_frames(8), fps=8, audio=(tone(1.0), 16000))
    info = probe_video(gif)
    assert inspect_media(gif).video[0].codec == "gif"
    assert info.frame_count == 8 and not info.has_audio  # gif holds no sound
    got = list(read_video_frames(gif))
    assert len(got) == 8 and abs(int(got[3].mean()) - (20 + 3 * 15)) <= 3


def test_read_with_size_and_fps(media):
    with VideoReader(media["src"], size=(16, 12)) as r:
        frames = list(r)
    assert len(frames) == 20 and frames[0].shape == (12, 16, 3)
    frames = list(read_video_frames(media["src"], fps=5))
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    frames = list(read_video_frames(media["src"], fps=40, size=(20, 10)))
    assert len(frames) == 40 and frames[0].shape == (10, 20, 3)


@needs_ffmpeg6
def test_variable_rate_resampled_to_constant(tmp_path):
    vfr = tmp_path / "vfr.mkv"
    # 10 frames: five 0.2 s apart, then five 0.1 s apart (1.5 s in all)
    ff("-f", "lavfi", "-i", "testsrc=size=32x24:rate=10", "-frames:v", "10",
       "-vf", "setpts='if(lt(N,5),N*2,10+(N-5))'", "-fps_mode", "vfr", "-c:v", "libx264", vfr)
    assert probe_video(vfr).frame_count == 10
    assert len(list(read_video_frames(vfr))) == 10  # every decoded frame once
    frames = list(read_video_frames(vfr, fps=10))
    assert len(frames) == 15  # constant 10 fps over 1.5 s
    assert np.array_equal(frames[0], frames[1])  # a 0.2 s frame is shown twice
    assert not np.array_equal(frames[11], frames[12])  # 0.1 s frames once each


def test_early_close_stops_ffmpeg(media):
    reader = VideoReader(media["src"])
    next(reader)
    reader.close()
    assert reader._proc.poll() is not None
    assert list(reader) == []


# -- writer failures -----------------------------------------------------------


def test_exception_inside_with_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, fps=10) as w:
            w.write(colour_frames(3)[0])
            proc = w._proc
            raise RuntimeError("boom")
    assert proc.poll() is not None  # ffmpeg was stopped
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file


def test_keyboard_interrupt_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "out.webm", fps=10, audio=(tone(0.5), 16000)) as w:
            w.write(colour_frames(2)[0])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused(tmp_path):
    path = write_video(tmp_path / "a.mp4", colour_frames(3), fps=10)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        VideoWriter(path, fps=10)
    assert path.read_bytes() == before
    write_video(path, colour_frames(5), fps=10, overwrite=True)
    assert probe_video(path).frame_count == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_writer_usage_errors(tmp_path, media):
    with pytest.raises(UsageError, match="cannot write video as '.avi'"):
        VideoWriter(tmp_path / "a.avi", fps=10)
    with pytest.raises(UsageError, match="not both"):
        VideoWriter(tmp_path / "a.mp4", fps=10, audio_from=media["src"], audio=(tone(), 16000))
    with pytest.raises(InputError, match="no such file"):
        VideoWriter(tmp_path / "a.mp4", fps=10, audio_from=tmp_path / "none.mp4")
    with pytest.raises(UsageError, match="audio must be"):
        write_video(tmp_path / "a.mp4", colour_frames(2), fps=10, audio=(np.zeros((5, 3), np.float32), 16000))
    assert list(tmp_path.iterdir()) == []


def test_no_frames_and_bad_frames(tmp_path):
    with pytest.raises(PoseCliError, match="no frames"):
        write_video(tmp_path / "a.mp4", [], fps=10)
    with pytest.raises(ValueError, match="differs"):
        write_video(tmp_path / "a.mp4", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], fps=10)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.mp4", [np.zeros((8, 8, 3), np.float32)], fps=10)
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_is_reported(tmp_path):
    # libx264 refuses a preset that does not exist: the error carries ffmpeg's reason
    with pytest.raises(PoseCliError, match="ffmpeg (failed|stopped)") as exc:
        write_video(tmp_path / "a.mp4", colour_frames(40), fps=10, preset="no-such-preset")
    assert str(tmp_path / "a.mp4") in str(exc.value) and "\n" not in str(exc.value)
    assert list(tmp_path.iterdir()) == []
