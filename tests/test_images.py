"""posecli.media.images: every format and depth, orientation, stdin/stdout, bad inputs."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from posecli.errors import InputError, OutputExistsError, UsageError
from posecli.media.images import decode_image_bytes, encode_image, read_image, write_image


def _rgb(h=24, w=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth(h=24, w=32) -> np.ndarray:
    """A gradient: lossy codecs reproduce it closely, unlike noise."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1).astype(np.uint8)


def _one_line_naming(exc: pytest.ExceptionInfo, path) -> None:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_round_trip(tmp_path, ext):
    px = _rgb()
    out = write_image(tmp_path / f"a{ext}", px)
    assert out == tmp_path / f"a{ext}"
    got = read_image(out)
    assert got.dtype == np.uint8 and got.shape == (24, 32, 3)
    assert np.array_equal(got, px)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_round_trip(tmp_path, ext):
    px = _smooth()
    got = read_image(write_image(tmp_path / f"a{ext}", px))
    assert got.shape == px.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - px).mean() < 4


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_kept_or_scaled(tmp_path, ext):
    px = np.random.default_rng(1).integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    path = write_image(tmp_path / f"d{ext}", px)
    deep = read_image(path, keep_depth=True)
    assert deep.dtype == np.uint16 and np.array_equal(deep, px)
    flat = read_image(path)
    assert flat.dtype == np.uint8
    assert np.array_equal(flat, ((px.astype(np.uint32) + 128) // 257).astype(np.uint8))


def test_16bit_rgba_and_grey(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 65536, (6, 7, 4), dtype=np.uint16)
    got = read_image(write_image(tmp_path / "a.png", rgba), alpha=True, keep_depth=True)
    assert np.array_equal(got, rgba)
    grey = np.arange(42, dtype=np.uint16).reshape(6, 7) * 1500
    got = read_image(write_image(tmp_path / "g.png", grey), keep_depth=True)
    assert got.shape == (6, 7, 3) and got.dtype == np.uint16
    assert all(np.array_equal(got[:, :, c], grey) for c in range(3))


def test_16bit_to_jpeg_is_reduced_to_8bit(tmp_path):
    px = np.full((8, 8, 3), 65535, np.uint16)
    got = read_image(write_image(tmp_path / "a.jpg", px), keep_depth=True)
    assert got.dtype == np.uint8 and got.min() >= 250


@pytest.mark.parametrize("shape", [(9, 11), (9, 11, 1)])
def test_grey_expanded(tmp_path, shape):
    grey = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    got = read_image(write_image(tmp_path / "g.png", grey))
    assert got.shape == (9, 11, 3)
    for c in range(3):
        assert np.array_equal(got[:, :, c], grey.reshape(9, 11))
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L"  # written as grey, not as 3 channels


@pytest.mark.parametrize("ext", [".png", ".tif", ".webp"])
def test_rgba(tmp_path, ext):
    px = np.zeros((4, 4, 4), np.uint8)
    px[..., 0] = 200  # red
    px[:2, :, 3] = 255  # top half opaque, bottom transparent
    path = write_image(tmp_path / f"a{ext}", px)
    got = read_image(path, alpha=True)
    assert got.shape == (4, 4, 4)
    assert np.array_equal(got[..., 3], px[..., 3])
    flat = read_image(path)
    assert flat.shape == (4, 4, 3)
    assert np.array_equal(flat[:2], np.broadcast_to([200, 0, 0], (2, 4, 3)))
    assert np.array_equal(flat[2:], np.full((2, 4, 3), 255))  # composited over white


def test_half_transparent_composited_over_white(tmp_path):
    px = np.zeros((2, 2, 4), np.uint8)
    px[..., 3] = 128  # black at about 50 %
    got = read_image(write_image(tmp_path / "a.png", px))
    assert np.all(np.abs(got.astype(int) - 127) <= 1)


def test_rgba_to_jpeg_composited(tmp_path):
    px = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    got = read_image(write_image(tmp_path / "a.jpg", px))
    assert got.min() >= 250


def test_opaque_alpha_added(tmp_path):
    got = read_image(write_image(tmp_path / "a.jpg", _smooth()), alpha=True)
    assert got.shape == (24, 32, 4) and np.all(got[..., 3] == 255)


def test_palette_png(tmp_path):
    im = Image.new("P", (5, 3))
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    im.putdata([0, 1, 2, 1, 0] * 3)
    im.save(tmp_path / "p.png")
    got = read_image(tmp_path / "p.png")
    assert got.shape == (3, 5, 3)
    assert got[0, 0].tolist() == [255, 0, 0] and got[0, 1].tolist() == [0, 255, 0] and got[0, 2].tolist() == [0, 0, 255]
    im.info["transparency"] = 1  # green becomes transparent
    im.save(tmp_path / "t.png", transparency=1)
    rgba = read_image(tmp_path / "t.png", alpha=True)
    assert rgba[0, 0].tolist() == [255, 0, 0, 255] and rgba[0, 1, 3] == 0
    assert read_image(tmp_path / "t.png")[0, 1].tolist() == [255, 255, 255]


def test_exif_orientation_6_jpeg(tmp_path):
    px = np.zeros((16, 32, 3), np.uint8)
    px[:, :16] = (255, 0, 0)  # left half red
    px[:, 16:] = (0, 0, 255)  # right half blue
    im = Image.fromarray(px)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    im.save(tmp_path / "o.jpg", quality=95, exif=exif)
    got = read_image(tmp_path / "o.jpg")
    assert got.shape == (32, 16, 3)  # upright: portrait
    top, bottom = got[:12].reshape(-1, 3).mean(0), got[-12:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(orientation):
    px = _rgb(5, 7, seed=orientation)
    im = Image.fromarray(px)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif)
    ref = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
    assert np.array_equal(decode_image_bytes(buf.getvalue(), "x.png"), ref)


def test_stdin(monkeypatch):
    px = _rgb(5, 6)
    fake = types.SimpleNamespace(buffer=io.BytesIO(encode_image(px, ".png")))
    monkeypatch.setattr(sys, "stdin", fake)
    assert np.array_equal(read_image("-"), px)


def test_stdin_empty(monkeypatch):
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(b"")))
    with pytest.raises(InputError, match="empty"):
        read_image("-")


def test_stdout(monkeypatch):
    px = _rgb(5, 6)
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=out))
    assert write_image("-", px) == Path("-")
    assert out.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(decode_image_bytes(out.getvalue(), "-"), px)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file") as exc:
        read_image(tmp_path / "nope.png")
    _one_line_naming(exc, tmp_path / "nope.png")


def test_folder(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(InputError, match="folder") as exc:
        read_image(tmp_path / "d.png")
    _one_line_naming(exc, tmp_path / "d.png")


def test_zero_bytes(tmp_path):
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty") as exc:
        read_image(tmp_path / "z.png")
    _one_line_naming(exc, tmp_path / "z.png")


@pytest.mark.parametrize("deep", [False, True])
def test_truncated_png(tmp_path, deep):
    px = np.random.default_rng(4).integers(0, 65536 if deep else 256, (64, 64, 3)).astype(np.uint16 if deep else np.uint8)
    data = encode_image(px, ".png")
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated") as exc:
        read_image(tmp_path / "t.png")
    _one_line_naming(exc, tmp_path / "t.png")


def test_truncated_jpeg(tmp_path):
    data = encode_image(_rgb(64, 64), ".jpg")
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_image(tmp_path / "t.jpg")


def test_text_named_png(tmp_path):
    (tmp_path / "a.png").write_text("this is not a picture\n")
    with pytest.raises(InputError, match="not an image") as exc:
        read_image(tmp_path / "a.png")
    _one_line_naming(exc, tmp_path / "a.png")


def test_unsupported_extension(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.ico")
    with pytest.raises(InputError, match="unsupported image type") as exc:
        read_image(tmp_path / "a.ico")
    _one_line_naming(exc, tmp_path / "a.ico")


def test_unsupported_format_behind_a_good_name(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png", format="ICO")
    with pytest.raises(InputError, match="unsupported image format ICO"):
        read_image(tmp_path / "a.png")


def test_too_many_pixels(tmp_path):
    path = write_image(tmp_path / "big.png", _rgb(20, 30))
    with pytest.raises(InputError, match="too large") as exc:
        read_image(path, max_pixels=599)
    _one_line_naming(exc, path)
    assert read_image(path, max_pixels=600).shape == (20, 30, 3)


def test_write_unsupported_extension(tmp_path):
    with pytest.raises(UsageError, match="cannot write images as '.gif'"):
        write_image(tmp_path / "a.gif", _rgb())
    assert not (tmp_path / "a.gif").exists()


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros(4, np.uint8)])
def test_write_bad_pixels(tmp_path, bad):
    with pytest.raises(ValueError):
        write_image(tmp_path / "a.png", bad)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    path = write_image(tmp_path / "a.png", _rgb(seed=1))
    with pytest.raises(OutputExistsError):
        write_image(path, _rgb(seed=2))
    assert np.array_equal(read_image(path), _rgb(seed=1))
    write_image(path, _rgb(seed=2), overwrite=True)
    assert np.array_equal(read_image(path), _rgb(seed=2))


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def half_then_fail(self, data):
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    from posecli.errors import OutputWriteError

    with pytest.raises(OutputWriteError, match="a.png: cannot write \\(disk full\\)"):  # the user's path
        write_image(tmp_path / "a.png", _rgb())
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary file
