"""posecli encode / swap, the swap and encode pipelines and the sample grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke

S = 32  # the tiny model's size


def _image(seed: int, h: int = 40, w: int = 50) -> np.ndarray:
    """A random picture with a bright rectangle, at an odd size (inputs get cropped/resized)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    img[y : y + h // 3, x : x + w // 3] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


def _write(path: Path, pixels: np.ndarray) -> Path:
    from posecli.media.images import write_image

    return write_image(path, pixels)


def _read(path) -> np.ndarray:
    from posecli.media.images import read_image

    return read_image(path)


@pytest.fixture(scope="module")
def model(tiny_model_path):
    from posecli.modelfile import load_model

    return load_model(tiny_model_path, "cpu")


@pytest.fixture
def photos(tmp_path):
    """ids/ (2 images), poses/ (3 images), of different odd sizes."""
    ids, poses = tmp_path / "ids", tmp_path / "poses"
    for i, name in enumerate(["anna", "bob"]):
        _write(ids / f"{name}.png", _image(i, 40 + i, 50))
    for j, name in enumerate(["left", "front", "right"]):
        _write(poses / f"{name}.jpg", _image(10 + j, 45, 37 + j))
    return ids, poses


def _one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# --- grid ---------------------------------------------------------------------------------------

def test_make_grid_layout():
    from posecli.grid import grid_shape, make_grid

    ids = [np.full((8, 8, 3), 10 * (i + 1), np.uint8) for i in range(2)]
    poses = [np.full((16, 16), 100 + j, np.uint8) for j in range(3)]  # other size and grey: resized, expanded
    cells = np.zeros((2, 3, 8, 8, 3), np.uint8)
    for i in range(2):
        for j in range(3):
            cells[i, j] = 200 + 10 * i + j
    g = make_grid(ids, poses, cells, pad=2, background=255)
    assert g.shape == (*grid_shape(2, 3, 8, 8, 2), 3) == (3 * 8 + 4 * 2, 4 * 8 + 5 * 2, 3)
    assert g.dtype == np.uint8
    cell = lambda r, c: g[2 + r * 10 : 2 + r * 10 + 8, 2 + c * 10 : 2 + c * 10 + 8]  # noqa: E731
    assert (cell(0, 0) == 255).all()  # the blank corner
    assert (cell(0, 2) == 101).all() and (cell(2, 0) == 20).all()
    assert (cell(2, 3) == 212).all() and (cell(1, 1) == 200).all()
    assert (g[:2] == 255).all() and (g[:, 10:12] == 255).all()  # padding


def test_make_grid_rejects_wrong_cells():
    from posecli.grid import make_grid

    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError):
        make_grid([img, img], [img], [[img]])


# --- library ------------------------------------------------------------------------------------

def test_swap_matrix_matches_single_swaps(model):
    from posecli.pipelines.swap import swap, swap_matrix

    ids = [_image(1, 40, 50), _image(2, 61, 33)]
    poses = [_image(3, 32, 32), _image(4, 50, 40), _image(5, 70, 71)]
    m = swap_matrix(model, ids, poses, batch_size=4)  # batches that cut across rows
    assert m.shape == (2, 3, S, S, 3) and m.dtype == np.uint8
    for i, a in enumerate(ids):
        for j, b in enumerate(poses):
            assert np.abs(m[i, j].astype(int) - swap(model, a, b).astype(int)).max() <= 1
    # An untrained model still mixes the inputs: results differ across both axes.
    assert not np.array_equal(m[0, 0], m[1, 0]) and not np.array_equal(m[0, 0], m[0, 1])


def test_swap_with_itself_is_the_reconstruction(model):
    import torch

    from posecli.media.convert import to_pixels
    from posecli.pipelines.encode import prepare
    from posecli.pipelines.swap import swap

    img = _image(7, 40, 50)
    with torch.inference_mode():
        rec = to_pixels(model.reconstruct(prepare(model, img)))[0]
    assert np.array_equal(swap(model, img, img), rec)


def test_swap_out_size(model):
    from posecli.errors import UsageError
    from posecli.pipelines.swap import swap

    assert swap(model, _image(1), _image(2), out_size=80).shape == (80, 80, 3)
    with pytest.raises(UsageError):
        swap(model, _image(1), _image(2), out_size=0)


def test_encode_images_shapes_and_batches(model):
    from posecli.pipelines.encode import encode_images

    imgs = [_image(i, 30 + i, 50 - i) for i in range(5)]
    ids, poses = encode_images(model, imgs, batch_size=2)
    assert ids.shape == (5, 16) and poses.shape == (5, 8)
    assert ids.dtype == poses.dtype == np.float32
    ids1, poses1 = encode_images(model, imgs, batch_size=64)
    np.testing.assert_allclose(ids, ids1, atol=1e-5)
    np.testing.assert_allclose(poses, poses1, atol=1e-5)


# --- posecli encode -----------------------------------------------------------------------------

def test_encode_npz(runner, tiny_model_path, photos, tmp_path):
    ids, poses = photos
    out = tmp_path / "codes.npz"
    r = invoke(runner, ["encode", ids, str(poses / "*.jpg"), "-m", tiny_model_path, "-o", out, "--batch-size", 2])
    assert r.exit_code == 0, r.output
    with np.load(out) as z:  # no pickled objects inside
        assert z["identity"].shape == (5, 16) and z["pose"].shape == (5, 8)
        assert z["identity"].dtype == np.float32
        paths = [Path(p).name for p in z["paths"]]
        assert paths == ["anna.png", "bob.png", "front.jpg", "left.jpg", "right.jpg"]
        first = z["identity"].copy()
    # deterministic; and the file is refused without --overwrite
    r = invoke(runner, ["encode", ids, str(poses / "*.jpg"), "-m", tiny_model_path, "-o", out])
    assert r.exit_code == 1 and "overwrite" in _one_error_line(r)
    r = invoke(runner, ["encode", ids, str(poses / "*.jpg"), "-m", tiny_model_path, "-o", out, "--overwrite",
                        "--batch-size", 2])
    assert r.exit_code == 0, r.output
    with np.load(out) as z:
        np.testing.assert_array_equal(z["identity"], first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npz", "ids", "poses"]  # no temp files left


def test_encode_json_lines(runner, tiny_model_path, photos):
    ids, _ = photos
    r = invoke(runner, ["encode", ids, "-m", tiny_model_path, "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(row["path"]).name for row in rows] == ["anna.png", "bob.png"]
    assert all(len(row["identity"]) == 16 and len(row["pose"]) == 8 for row in rows)


def test_encode_keep_going(runner, tiny_model_path, photos, tmp_path):
    ids, _ = photos
    (ids / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "codes.npz"
    r = invoke(runner, ["encode", ids, "-m", tiny_model_path, "-o", out])
    assert r.exit_code == 1 and "broken.png" in _one_error_line(r) and not out.exists()
    r = invoke(runner, ["encode", ids, "-m", tiny_model_path, "-o", out, "--keep-going"])
    assert r.exit_code == 1 and "broken.png" in r.stderr
    with np.load(out) as z:
        assert [Path(p).name for p in z["paths"]] == ["anna.png", "bob.png"]


def test_encode_needs_an_output(runner, tiny_model_path, photos):
    r = invoke(runner, ["encode", photos[0], "-m", tiny_model_path])
    assert r.exit_code == 2 and "--json" in _one_error_line(r)


# --- posecli swap -------------------------------------------------------------------------------

def test_swap_single_file_and_size(runner, tiny_model_path, photos, tmp_path):
    ids, poses = photos
    out = tmp_path / "out.png"
    r = invoke(runner, ["swap", "--id", ids / "anna.png", "--pose", poses / "left.jpg", "-m", tiny_model_path,
                        "-o", out])
    assert r.exit_code == 0, r.output
    assert _read(out).shape == (S, S, 3)
    big = tmp_path / "big.jpg"
    r = invoke(runner, ["swap", "--id", ids / "anna.png", "--pose", poses / "left.jpg", "-m", tiny_model_path,
                        "-o", big, "--size", 96, "--json"])
    assert r.exit_code == 0, r.output
    assert _read(big).shape == (96, 96, 3)
    assert json.loads(r.stdout) == {"id": str(ids / "anna.png"), "pose": str(poses / "left.jpg"), "output": str(big)}


def test_swap_folders_and_grid(runner, tiny_model_path, photos, tmp_path, model):
    ids, poses = photos
    out, grid = tmp_path / "out", tmp_path / "grid.png"
    r = invoke(runner, ["swap", "--id", ids, "--pose", poses, "-m", tiny_model_path, "-o", out, "--grid", grid,
                        "--json"])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{a}__{b}.png" for a in ("anna", "bob") for b in ("left", "front", "right"))
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len([row for row in rows if "output" in row]) == 6 and rows[-1]["grid"] == str(grid)
    g = _read(grid)
    assert g.shape == ((2 + 1) * S + (2 + 2) * 2, (3 + 1) * S + (3 + 2) * 2, 3)
    # the CLI's results are the library's
    from posecli.pipelines.swap import swap

    want = swap(model, _read(ids / "bob.png"), _read(poses / "right.jpg"))
    assert np.abs(_read(out / "bob__right.png").astype(int) - want.astype(int)).max() <= 1
    # the grid cell (identity bob, pose right) is that result
    y, x = 2 + 2 * (S + 2), 2 + 3 * (S + 2)
    assert np.abs(g[y : y + S, x : x + S].astype(int) - want.astype(int)).max() <= 1


def test_swap_grid_only_repeated_flags(runner, tiny_model_path, photos, tmp_path):
    ids, poses = photos
    grid = tmp_path / "g.png"
    r = invoke(runner, ["swap", "--id", ids / "anna.png", "--id", ids / "bob.png", "--pose", poses / "left.jpg",
                        "-m", tiny_model_path, "--grid", grid, "--size", 40])
    assert r.exit_code == 0, r.output
    assert _read(grid).shape == (3 * 40 + 4 * 2, 2 * 40 + 3 * 2, 3)


def test_swap_to_stdout_is_png(runner, tiny_model_path, photos):
    import cv2

    ids, poses = photos
    r = invoke(runner, ["swap", "--id", ids / "bob.png", "--pose", poses / "front.jpg", "-m", tiny_model_path,
                        "-o", "-"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout_bytes.startswith(b"\x89PNG\r\n\x1a\n")
    img = cv2.imdecode(np.frombuffer(r.stdout_bytes, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (S, S, 3)


def test_swap_refuses_existing_output(runner, tiny_model_path, photos, tmp_path):
    ids, poses = photos
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    args = ["swap", "--id", ids / "anna.png", "--pose", poses / "left.jpg", "-m", tiny_model_path, "-o", out]
    r = invoke(runner, args)
    assert r.exit_code == 1 and "--overwrite" in _one_error_line(r)
    assert out.read_bytes() == b"keep me"
    r = invoke(runner, args + ["--overwrite"])
    assert r.exit_code == 0 and _read(out).shape == (S, S, 3)


def test_swap_skip_existing(runner, tiny_model_path, photos, tmp_path):
    ids, poses = photos
    out = tmp_path / "out"
    out.mkdir()
    (out / "anna__left.png").write_bytes(b"done before")
    args = ["swap", "--id", ids, "--pose", poses, "-m", tiny_model_path, "-o", out]
    r = invoke(runner, args)
    assert r.exit_code == 1 and "anna__left.png" in _one_error_line(r)
    assert len(list(out.iterdir())) == 1  # refused before writing anything
    r = invoke(runner, args + ["--skip-existing", "--json"])
    assert r.exit_code == 0, r.output
    assert len(list(out.iterdir())) == 6 and (out / "anna__left.png").read_bytes() == b"done before"
    assert len(r.stdout.splitlines()) == 5
    r = invoke(runner, args + ["--skip-existing"])  # everything there: nothing to do
    assert r.exit_code == 0, r.output


def test_swap_keep_going_with_a_corrupt_input(runner, tiny_model_path, photos, tmp_path):
    ids, poses = photos
    (ids / "carl.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    r = invoke(runner, ["swap", "--id", ids, "--pose", poses, "-m", tiny_model_path, "-o", out])
    assert r.exit_code == 1 and "carl.png" in _one_error_line(r)
    assert not out.exists()
    r = invoke(runner, ["swap", "--id", ids, "--pose", poses, "-m", tiny_model_path, "-o", out, "--keep-going"])
    assert r.exit_code == 1 and "carl.png" in r.stderr and "Traceback" not in r.output
    assert len(list(out.iterdir())) == 6 and not list(out.glob("carl__*"))


def test_swap_missing_model(runner, photos, tmp_path):
    ids, poses = photos
    r = invoke(runner, ["swap", "--id", ids / "anna.png", "--pose", poses / "left.jpg",
                        "-m", tmp_path / "nope.safetensors", "-o", tmp_path / "o.png"])
    assert r.exit_code in (1, 2) and "nope.safetensors" in _one_error_line(r)
    assert not (tmp_path / "o.png").exists()


def test_swap_default_model_missing_says_how_to_get_one(runner, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("POSECLI_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "no-data"))
    ids, poses = photos
    r = invoke(runner, ["swap", "--id", ids / "anna.png", "--pose", poses / "left.jpg", "-o", tmp_path / "o.png"])
    line = _one_error_line(r)
    assert r.exit_code == 1 and "cars" in line and "posecli train" in line and "posecli models" in line


def test_swap_garbage_model_file(runner, photos, tmp_path):
    ids, poses = photos
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    r = invoke(runner, ["swap", "--id", ids / "anna.png", "--pose", poses / "left.jpg", "-m", bad,
                        "-o", tmp_path / "o.png"])
    assert r.exit_code == 1 and "bad.safetensors" in _one_error_line(r)


def test_swap_video_input_points_to_animate(runner, tiny_model_path, photos, tmp_path):
    import imageio_ffmpeg

    clip = tmp_path / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(clip), (32, 32), fps=5, quality=5, macro_block_size=1)
    writer.send(None)
    for k in range(3):
        writer.send(np.full((32, 32, 3), 40 * k, np.uint8).tobytes())
    writer.close()
    _, poses = photos
    r = invoke(runner, ["swap", "--id", clip, "--pose", poses / "left.jpg", "-m", tiny_model_path,
                        "-o", tmp_path / "o.png"])
    line = _one_error_line(r)
    assert r.exit_code == 1 and "clip.mp4" in line and "posecli animate" in line


def test_swap_usage_errors(runner, tiny_model_path, photos, tmp_path):
    ids, poses = photos
    base = ["swap", "--id", ids, "--pose", poses, "-m", tiny_model_path]
    r = invoke(runner, base)  # neither -o nor --grid
    assert r.exit_code == 2 and "--grid" in _one_error_line(r)
    r = invoke(runner, base + ["-o", "-"])  # several pairs to stdout
    assert r.exit_code == 2 and "folder" in _one_error_line(r)
    r = invoke(runner, base + ["-o", tmp_path / "o", "--crop", "middle"])
    assert r.exit_code == 2 and "--crop" in _one_error_line(r)
