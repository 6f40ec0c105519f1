"""posecli data: tiny files in each dataset's native format, written here, converted and read back."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke
from posecli.data.datasets import convert
from posecli.errors import InputError, PoseCliError, UsageError


# --- helpers ------------------------------------------------------------------

def snapshot(root: Path) -> dict:
    """Every file under root: (size, mtime, sha1) - the source must come out unchanged."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_png(path: Path) -> np.ndarray:
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert a is not None, path
    return a[:, :, ::-1] if a.ndim == 3 else a


def check_layout(out: Path) -> list[dict]:
    """labels.csv lists exactly the files written, split folders agree, dataset.json is complete."""
    all_rows = rows(out / "labels.csv")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.suffix in (".png", ".mp4"))
    assert sorted(r["path"] for r in all_rows) == files
    for split in ("train", "test"):
        part = [r for r in all_rows if r["split"] == split]
        if part:
            sub = rows(out / split / "labels.csv")
            assert [f"{split}/{r['path']}" for r in sub] == [r["path"] for r in part]
    # an identity is wholly in one split unless the split is by image
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["status"] == "complete" and meta["files"] == len(all_rows)
    if meta["split"]["by"] == "identity":
        by_id = {}
        for r in all_rows:
            by_id.setdefault(r["identity"], set()).add(r["split"])
        assert all(len(s) == 1 for s in by_id.values())
    return all_rows


# --- Cars3D ---------------------------------------------------------------------

def write_cars_mat(folder: Path, cars: int = 3, side: int = 8, seed: int = 0) -> dict:
    sio = pytest.importorskip("scipy.io")
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    ims = {}
    for i in range(1, cars + 1):
        ims[f"car_{i:03d}"] = im = g.integers(0, 256, (side, side, 3, 24, 4), dtype=np.uint8)
        sio.savemat(folder / f"car_{i:03d}_mesh.mat", {"im": im})
    return ims


def test_cars3d_mat_files_labels_pixels_and_split(tmp_path):
    src = tmp_path / "nips2015-analogy-data" / "data" / "cars"
    ims = write_cars_mat(src)
    before = snapshot(tmp_path / "nips2015-analogy-data")
    out = tmp_path / "out"
    s = convert("cars3d", tmp_path / "nips2015-analogy-data", out, size=8, test_count=1)
    assert snapshot(tmp_path / "nips2015-analogy-data") == before  # the source is only read
    r = check_layout(out)
    assert len(r) == 3 * 96 and s["files"] == 288 and s["identities"] == 3 and s["poses"] == 96
    assert set(r[0]) >= {"path", "identity", "pose", "split", "car", "elevation", "azimuth"}
    assert s["splits"]["test"] == {"files": 96, "identities": 1}
    # pixels land at their car and pose: 'im' is (H, W, 3, azimuth, elevation)
    row = next(x for x in r if x["identity"] == "car_002" and x["pose"] == "el3_az07")
    assert row["elevation"] == "3" and row["azimuth"] == "7"
    assert np.array_equal(read_png(out / row["path"]), ims["car_002"][:, :, :, 7, 3])
    # --size resizes, same split for the same seed
    s2 = convert("cars3d", src, tmp_path / "out16", size=16, test_count=1)
    assert read_png(tmp_path / "out16" / row["path"]).shape == (16, 16, 3)
    assert s2["split"] == s["split"]
    # another seed may draw another car, and --test-ids names them
    s3 = convert("cars3d", src, tmp_path / "ids", size=8, test_ids="car_001,car_003")
    assert s3["split"]["test_identities"] == ["car_001", "car_003"] and s3["splits"]["train"]["identities"] == 1


def test_cars3d_paper_split_needs_enough_cars_and_names_bad_files(tmp_path):
    src = tmp_path / "cars"
    write_cars_mat(src, cars=2)
    with pytest.raises(UsageError, match="holds out 20 identities but the source has 2"):
        convert("cars3d", src, tmp_path / "o1", size=8)
    assert not (tmp_path / "o1").exists()  # nothing written before the source is checked
    # truncated .mat: the error names the file
    data = (src / "car_002_mesh.mat").read_bytes()
    (src / "car_002_mesh.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="car_002_mesh.mat: cannot read as a MATLAB file"):
        convert("cars3d", src, tmp_path / "o2", size=8, test_count=1)
    # a .mat of something else
    import scipy.io as sio

    sio.savemat(src / "car_002_mesh.mat", {"im": np.zeros((8, 8, 3, 24), np.uint8)})
    with pytest.raises(InputError, match=r"car_002_mesh.mat: 'im' has shape \(8, 8, 3, 24\)"):
        convert("cars3d", src, tmp_path / "o3", size=8, test_count=1)
    sio.savemat(src / "car_002_mesh.mat", {"images": np.zeros((8, 8, 3, 24, 4), np.uint8)})
    with pytest.raises(InputError, match="no variable 'im' \\(has: images\\)"):
        convert("cars3d", src, tmp_path / "o4", size=8, test_count=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no Cars3D files here"):
        convert("cars3d", tmp_path / "empty", tmp_path / "o5")


def test_cars3d_npz_order_elevation_azimuth_car(tmp_path):
    g = np.random.default_rng(1)
    imgs = g.integers(0, 256, (4 * 24 * 2, 8, 8, 3), dtype=np.uint8)  # 2 cars
    np.savez(tmp_path / "cars3d.npz", imgs=imgs)
    s = convert("cars3d", tmp_path / "cars3d.npz", tmp_path / "out", size=8, test_count=1)
    r = check_layout(tmp_path / "out")
    assert s["files"] == 192 and s["identities"] == 2
    e, a, car = 2, 13, 1  # LORD's index: elevation * 24 * cars + azimuth * cars + car
    row = next(x for x in r if x["identity"] == "car_001" and x["pose"] == f"el{e}_az{a:02d}")
    assert np.array_equal(read_png(tmp_path / "out" / row["path"]), imgs[e * 24 * 2 + a * 2 + car])
    np.savez(tmp_path / "bad.npz", imgs=imgs[:100])
    with pytest.raises(InputError, match=r"bad.npz: imgs has shape \(100, 8, 8, 3\)"):
        convert("cars3d", tmp_path / "bad.npz", tmp_path / "o2", size=8, test_count=1)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "cars3d.npz").read_bytes()[:5000])
    with pytest.raises(InputError, match="cut.npz: cannot read as an .npz file"):
        convert("cars3d", tmp_path / "cut.npz", tmp_path / "o3", size=8, test_count=1)


# --- resume, refusal, CLI -------------------------------------------------------

def test_skip_existing_resumes_an_interrupted_run(tmp_path, monkeypatch):
    from posecli.data.datasets import cars3d

    src = tmp_path / "cars"
    write_cars_mat(src, cars=3)
    out = tmp_path / "out"
    real = cars3d._load_mat
    calls = []

    def failing(path):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the second car
        return real(path)

    monkeypatch.setattr(cars3d, "_load_mat", failing)
    with pytest.raises(KeyboardInterrupt):
        convert("cars3d", src, out, size=8, test_count=1)
    assert json.loads((out / "dataset.json").read_text())["status"] == "incomplete"
    assert not (out / "labels.csv").exists()
    assert not [p for p in out.rglob("*") if ".part" in p.name]  # no half-written file
    monkeypatch.setattr(cars3d, "_load_mat", real)
    with pytest.raises(PoseCliError, match="holds a previous posecli data output"):
        convert("cars3d", src, out, size=8, test_count=1)
    calls.clear()
    monkeypatch.setattr(cars3d, "_load_mat", lambda p: (calls.append(p.name), real(p))[1])
    s = convert("cars3d", src, out, size=8, test_count=1, skip_existing=True)
    assert calls == ["car_002_mesh.mat", "car_003_mesh.mat"]  # the finished car is not read again
    assert s["written"] == 192 and s["kept"] == 96
    check_layout(out)
    # a finished output: nothing is redone, and another --size is refused
    s = convert("cars3d", src, out, size=8, test_count=1, skip_existing=True)
    assert s["written"] == 0 and s["kept"] == 288
    with pytest.raises(UsageError, match="written with other settings"):
        convert("cars3d", src, out, size=16, test_count=1, skip_existing=True)
    # a lost image is written again, others kept
    lost = next(out.glob("train/*/el0_az00.png"))
    lost.unlink()
    (out / ".posecli-data.jsonl").unlink()
    s = convert("cars3d", src, out, size=8, test_count=1, skip_existing=True)
    assert s["written"] == 1 and lost.is_file()
    # a folder that is not a posecli data output is refused; OUT inside the source too
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    with pytest.raises(PoseCliError, match="not a posecli data output"):
        convert("cars3d", src, other, size=8, test_count=1)
    with pytest.raises(UsageError, match="inside the source"):
        convert("cars3d", src, src / "out", size=8, test_count=1)


def test_progress_bar_counts_every_image(tmp_path):
    src = tmp_path / "cars"
    write_cars_mat(src, cars=2)
    seen = {}

    class Bar:
        def __init__(self, total, desc, unit):
            seen.update(total=total, desc=desc, unit=unit, done=0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            seen["done"] += n

    convert("cars3d", src, tmp_path / "out", size=8, test_count=1, progress=Bar)
    assert seen == {"total": 192, "desc": "data cars3d", "unit": "img", "done": 192}


def test_cli_data_one_line_errors_and_json(runner, tmp_path):
    src = tmp_path / "cars"
    write_cars_mat(src, cars=2)
    r = invoke(runner, ["data", "cars3d", src, tmp_path / "out", "--size", "8", "--test-count", "1", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["files"] == 192 and summary["dataset"] == "cars3d"
    assert "data cars3d: 192 files, 2 identities (train 96 / 1, test 96 / 1)" in r.stderr
    r = invoke(runner, ["data", "mnist", src, tmp_path / "o"])
    assert r.exit_code == 2 and r.stderr.strip() == ("posecli: error: unknown dataset 'mnist': expected one of "
                                                      "cars3d, smallnorb, shapes3d, chairs, celeba, kth")
    r = invoke(runner, ["data", "cars3d", tmp_path / "nowhere", tmp_path / "o"])
    assert r.exit_code == 1 and r.stderr.strip() == f"posecli: error: {tmp_path / 'nowhere'}: no such file or folder"
    r = invoke(runner, ["data", "cars3d", src, tmp_path / "o", "--camera", "left"])
    assert r.exit_code == 2 and "--camera: not an option of posecli data cars3d" in r.stderr


# --- SmallNORB --------------------------------------------------------------------

NORB_TYPES = {np.uint8: 0x1E3D4C55, np.int32: 0x1E3D4C54}


def norb_bytes(a: np.ndarray) -> bytes:
    dims = list(a.shape) + [1] * max(0, 3 - a.ndim)
    head = np.array([NORB_TYPES[a.dtype.type], a.ndim, *dims], "<i4").tobytes()
    return head + np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


def write_norb(folder: Path, gz: bool = False, seed: int = 0) -> dict:
    """Two toys per part, every elevation/azimuth/lighting combination of a small grid."""
    from posecli.data.datasets.smallnorb import PARTS

    g = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"training": [(3, 6), (0, 4)], "testing": [(2, 1), (4, 0)]}  # (category, instance)
    out = {}
    for part, toys in parts.items():
        recs = [(c, i, e, a, l) for c, i in toys for e in (0, 8) for a in (0, 34) for l in (0, 5)]
        dat = g.integers(0, 256, (len(recs), 2, 12, 12), dtype=np.uint8)
        cat = np.array([r[0] for r in recs], np.int32)
        info = np.array([r[1:] for r in recs], np.int32)
        for kind, a in (("dat", dat), ("cat", cat), ("info", info)):
            name = f"{PARTS[part]}-{kind}.mat"
            data = norb_bytes(a)
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        out[part] = (recs, dat)
    return out


def test_norb_reader_reads_the_documented_format(tmp_path):
    from posecli.data.datasets.smallnorb import read_matrix

    a = np.arange(24, dtype=np.int32).reshape(6, 4)
    (tmp_path / "m.mat").write_bytes(norb_bytes(a))
    assert np.array_equal(read_matrix(tmp_path / "m.mat"), a)
    v = np.arange(5, dtype=np.int32)  # 1-D: still 3 dimension slots in the header
    (tmp_path / "v.mat").write_bytes(norb_bytes(v))
    assert np.array_equal(read_matrix(tmp_path / "v.mat"), v)
    (tmp_path / "v.mat.gz").write_bytes(gzip.compress(norb_bytes(v)))
    assert np.array_equal(read_matrix(tmp_path / "v.mat.gz"), v)
    (tmp_path / "cut.mat").write_bytes(norb_bytes(a)[:-7])
    with pytest.raises(InputError, match="cut.mat: truncated: 109 bytes, the header announces 116"):
        read_matrix(tmp_path / "cut.mat")
    (tmp_path / "png.mat").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(InputError, match="png.mat: not a SmallNORB binary matrix \\(magic number 0x474E5089\\)"):
        read_matrix(tmp_path / "png.mat")


@pytest.mark.parametrize("gz", [False, True])
def test_smallnorb_variants_labels_and_official_split(tmp_path, gz):
    src = tmp_path / "norb"
    parts = write_norb(src, gz=gz)
    before = snapshot(src)
    s = convert("smallnorb", src, tmp_path / "lord", size=12)
    r = check_layout(tmp_path / "lord")
    assert snapshot(src) == before
    assert len(r) == 32 and s["splits"]["test"]["files"] == 16
    assert {x["toy"] for x in r if x["split"] == "test"} == {"airplane1", "car0"}  # the testing files' toys
    row = next(x for x in r if x["identity"] == "truck6_el8_l5")
    assert row["pose"] in ("az00", "az17") and row["elevation"] == "70" and row["camera"] == "left"
    recs, dat = parts["training"]
    k = recs.index((3, 6, 8, 34, 5))
    got = next(x for x in r if x["identity"] == "truck6_el8_l5" and x["pose"] == "az17")
    assert got["azimuth"] == "340" and np.array_equal(read_png(tmp_path / "lord" / got["path"]), dat[k, 0])
    # plain: the toy is the identity; camera both doubles the images and goes into the pose
    s = convert("smallnorb", src, tmp_path / "plain", size=12, variant="plain", camera="both")
    r = check_layout(tmp_path / "plain")
    assert s["identities"] == 4 and len(r) == 64 and {x["camera"] for x in r} == {"left", "right"}
    right = next(x for x in r if x["identity"] == "truck6" and x["pose"] == "el8_az17_l5_right")
    assert np.array_equal(read_png(tmp_path / "plain" / right["path"]), dat[k, 1])
    # lord-poses: images held out, seeded and reproducible
    a = convert("smallnorb", src, tmp_path / "p1", size=12, variant="lord-poses", test_fraction=0.3)
    b = convert("smallnorb", src, tmp_path / "p2", size=12, variant="lord-poses", test_fraction=0.3)
    ra, rb = check_layout(tmp_path / "p1"), rows(tmp_path / "p2" / "labels.csv")
    assert ra == rb and 0 < a["splits"]["test"]["files"] < 32 and a["identities"] == 8
    assert {x["pose"] for x in ra} == {"el0_az00", "el0_az17", "el8_az00", "el8_az17"}
    with pytest.raises(UsageError, match="holds out images"):
        convert("smallnorb", src, tmp_path / "p3", size=12, variant="lord-poses", test_ids="car0")


def test_smallnorb_names_missing_truncated_and_mislabelled_files(tmp_path):
    from posecli.data.datasets.smallnorb import PARTS

    src = tmp_path / "norb"
    write_norb(src)
    info = src / f"{PARTS['testing']}-info.mat"
    saved = info.read_bytes()
    info.unlink()
    with pytest.raises(InputError, match=f"{PARTS['testing']}-info.mat: missing {PARTS['testing']}-info.mat"):
        convert("smallnorb", src, tmp_path / "o", size=12)
    info.write_bytes(saved[:-8])
    with pytest.raises(InputError, match="-testing-info.mat: truncated"):
        convert("smallnorb", src, tmp_path / "o", size=12)
    # a -cat file where the -info file belongs: the wrong shape, named
    info.write_bytes((src / f"{PARTS['testing']}-cat.mat").read_bytes())
    with pytest.raises(InputError, match=r"-testing-info.mat: holds int32 \(16,\); an -info file holds int32 \(N, 4\)"):
        convert("smallnorb", src, tmp_path / "o", size=12)
    # records of another download
    info.write_bytes(norb_bytes(np.zeros((5, 4), np.int32)))
    with pytest.raises(InputError, match="-testing-info.mat: 5 records but .*-testing-dat.mat has 16"):
        convert("smallnorb", src, tmp_path / "o", size=12)
    assert not (tmp_path / "o").exists()
    # two records with the same labels: one line naming them, not a half-written output question
    recs = np.array([[1, 2, 4, 0], [1, 2, 4, 0]], np.int32)
    info.write_bytes(norb_bytes(np.concatenate([recs, np.tile(np.array([[3, 0, 0, 0]], np.int32), (14, 1))])))
    (src / f"{PARTS['testing']}-cat.mat").write_bytes(norb_bytes(np.zeros(16, np.int32)))
    with pytest.raises(InputError, match="two images of the source have the identity 'animal1' and the pose "
                                         "'el2_az02_l0'"):
        convert("smallnorb", src, tmp_path / "o", size=12, variant="plain")


# --- 3D Shapes --------------------------------------------------------------------

def write_shapes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    h5py = pytest.importorskip("h5py")
    grid = np.array([(fh, wh, oh, sc, sh, ori) for fh in (0.0, 0.1) for wh in (0.0,) for oh in (0.0, 0.9)
                     for sc in (0.75,) for sh in (0.0, 1.0, 3.0) for ori in (-30.0, 0.0, 30.0)])
    images = np.random.default_rng(2).integers(0, 256, (len(grid), 8, 8, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["images"], f["labels"] = images, grid
    return images, grid


def test_shapes3d_h5_variants(tmp_path):
    (tmp_path / "src").mkdir()
    images, grid = write_shapes(tmp_path / "src" / "3dshapes.h5")
    s = convert("shapes3d", tmp_path / "src" / "3dshapes.h5", tmp_path / "lord", size=8, test_fraction=0.25)
    r = check_layout(tmp_path / "lord")
    assert s["identities"] == 3 and len(r) == 36 and {x["identity"] for x in r} == {"shape0", "shape1", "shape2"}
    k = 35  # the last grid point: floor 0.1, object 0.9, shape 3.0, orientation 30
    row = next(x for x in r if x["identity"] == "shape2" and x["pose"] == "f1_w0_o1_s0_r02")
    assert (row["floor_hue"], row["orientation"]) == ("1", "2")
    assert np.array_equal(read_png(tmp_path / "lord" / row["path"]), images[k])
    assert 0 < s["splits"]["test"]["files"] < 36
    s = convert("shapes3d", tmp_path / "src", tmp_path / "obj", size=8, variant="objects", test_count=2)
    r = check_layout(tmp_path / "obj")
    assert s["identities"] == 6 and s["splits"]["test"]["identities"] == 2 and s["poses"] == 6


def test_shapes3d_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    src = tmp_path / "src"
    src.mkdir()
    with h5py.File(src / "3dshapes.h5", "w") as f:
        f["images"] = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(InputError, match="3dshapes.h5: no dataset 'labels' \\(has: images\\)"):
        convert("shapes3d", src, tmp_path / "o", size=8)
    (src / "cut.h5").write_bytes((src / "3dshapes.h5").read_bytes()[:600])
    with pytest.raises(InputError, match="cut.h5: cannot read as HDF5"):
        convert("shapes3d", src / "cut.h5", tmp_path / "o", size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty/3dshapes.h5: missing: the 3D Shapes file 3dshapes.h5"):
        convert("shapes3d", tmp_path / "empty", tmp_path / "o", size=8)


def test_missing_optional_package_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "3dshapes.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(UsageError, match=r"reading 3dshapes.h5 needs the Python package h5py: pip install 'posecli\[datasets\]'"):
        convert("shapes3d", tmp_path / "src", tmp_path / "o", size=8)


# --- 3D Chairs --------------------------------------------------------------------

def write_chairs(root: Path, chairs=("1a6f615e8b1b5ae4dbbc9440457e303e", "1b05971a4373c7d2463600025db2266", "2c03bbb1")):
    from posecli.media.images import write_image

    g = np.random.default_rng(3)
    out = {}
    for c in chairs:
        d = root / "rendered_chairs" / c / "renders"
        d.mkdir(parents=True)
        for n, (p, t) in enumerate([(20, 0), (20, 180), (30, 0), (30, 180)]):
            px = g.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            write_image(d / f"image_{n:03d}_p{p:03d}_t{t:03d}_r096.png", px)
            out[(c, f"p{p:03d}_t{t:03d}")] = px
    return out


def test_chairs_pose_from_the_file_name(tmp_path):
    px = write_chairs(tmp_path / "src")
    before = snapshot(tmp_path / "src")
    s = convert("chairs", tmp_path / "src", tmp_path / "out", size=12, test_count=1)
    assert snapshot(tmp_path / "src") == before
    r = check_layout(tmp_path / "out")
    assert s["identities"] == 3 and s["poses"] == 4 and s["splits"]["test"]["identities"] == 1
    row = next(x for x in r if x["pose"] == "p030_t180" and x["identity"].startswith("1b05"))
    assert (row["elevation"], row["azimuth"], row["distance"]) == ("30", "180", "96")
    assert np.array_equal(read_png(tmp_path / "out" / row["path"]), px[(row["identity"], "p030_t180")])
    s = convert("chairs", tmp_path / "src" / "rendered_chairs", tmp_path / "crop", size=8, crop=8, test_count=1)
    assert np.array_equal(read_png(tmp_path / "crop" / row["path"]), px[(row["identity"], "p030_t180")][2:10, 2:10])


def test_chairs_incomplete_and_misnamed(tmp_path):
    write_chairs(tmp_path / "src")
    gone = next((tmp_path / "src" / "rendered_chairs" / "2c03bbb1" / "renders").glob("*_p030_t000_*"))
    gone.unlink()
    with pytest.raises(InputError, match="2c03bbb1/renders: has 3 of the 4 views other chairs have; missing "
                                         "the view p030_t000"):
        convert("chairs", tmp_path / "src", tmp_path / "o", size=12, test_count=1)
    (gone.parent / "view.png").write_bytes(b"")
    with pytest.raises(InputError, match="view.png: not a 3D Chairs render name"):
        convert("chairs", tmp_path / "src", tmp_path / "o", size=12, test_count=1)


# --- CelebA -----------------------------------------------------------------------

def write_celeba(root: Path, ids=(1, 1, 2, 2, 3, 3, 4)) -> None:
    from posecli.media.images import write_image

    img = root / "img_align_celeba_png"
    img.mkdir(parents=True)
    lines = []
    for n, ident in enumerate(ids, 1):
        px = np.zeros((218, 178, 3), np.uint8)
        px[:] = (255, 0, 0)  # outside LORD's central 128x128: red
        px[45:173, 25:153] = (0, 0, 10 * n)  # inside: blue, a shade per image
        write_image(img / f"{n:06d}.png", px)
        lines.append(f"{n:06d}.jpg {ident}")
    (root / "Anno").mkdir()
    (root / "Anno" / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")


def test_celeba_centre_crop_identities_and_split(tmp_path):
    write_celeba(tmp_path / "celeba")
    s = convert("celeba", tmp_path / "celeba", tmp_path / "out", size=16, test_count=1)
    r = check_layout(tmp_path / "out")
    assert s["identities"] == 4 and len(r) == 7 and s["splits"]["test"]["identities"] == 1
    row = next(x for x in r if x["pose"] == "000003")
    assert row["identity"] == "celeb00002"
    px = read_png(tmp_path / "out" / row["path"])
    assert px.shape == (16, 16, 3) and np.all(px[:, :, 0] == 0) and np.all(px[:, :, 2] == 30)  # only the crop


def test_celeba_missing_image_and_bad_identity_file(tmp_path):
    write_celeba(tmp_path / "c")
    (tmp_path / "c" / "img_align_celeba_png" / "000004.png").unlink()
    with pytest.raises(InputError, match="000004.jpg: listed in identity_CelebA.txt but missing"):
        convert("celeba", tmp_path / "c", tmp_path / "o", size=16, test_count=1)
    (tmp_path / "c" / "Anno" / "identity_CelebA.txt").write_text("000001.jpg 1\n000002.jpg\n")
    with pytest.raises(InputError, match="identity_CelebA.txt: line 2: expected 'IMAGE IDENTITY'"):
        convert("celeba", tmp_path / "c", tmp_path / "o", size=16, test_count=1)
    (tmp_path / "c" / "Anno" / "identity_CelebA.txt").unlink()
    with pytest.raises(InputError, match="missing identity_CelebA.txt"):
        convert("celeba", tmp_path / "c", tmp_path / "o", size=16, test_count=1)


# --- KTH --------------------------------------------------------------------------

def write_kth(root: Path, people=("person01", "person02", "person11"), frames=10) -> None:
    import cv2

    d = root / "handwaving"
    d.mkdir(parents=True)
    for p, person in enumerate(people):
        path = d / f"{person}_handwaving_d4_uncomp.avi"
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 24))
        assert w.isOpened()
        for i in range(frames):
            f = np.full((24, 32, 3), 15 * i + 40 * p, np.uint8)
            w.write(f)
        w.release()
    (root / "00sequences.txt").write_text(
        "KTH sequences\n\n" + "".join(f"{p}_handwaving_d4\t\tframes\t1-4, 5-10\n" for p in people))


def test_kth_frames_and_clips(tmp_path):
    write_kth(tmp_path / "kth")
    before = snapshot(tmp_path / "kth")
    s = convert("kth", tmp_path / "kth", tmp_path / "frames", size=16, test_fraction=0.3)
    r = check_layout(tmp_path / "frames")
    assert s["identities"] == 3 and len(r) == 30 and 0 < s["splits"]["test"]["files"] < 30
    row = next(x for x in r if x["identity"] == "person02" and x["pose"] == "handwaving_d4_f0003")
    px = read_png(tmp_path / "frames" / row["path"])
    assert px.shape == (16, 16) and abs(int(px.mean()) - (45 + 40)) <= 6  # grey, this person's level
    s = convert("kth", tmp_path / "kth", tmp_path / "clips", size=16, variant="clips")
    r = check_layout(tmp_path / "clips")
    assert snapshot(tmp_path / "kth") == before
    assert [x["path"] for x in r if x["split"] == "test"] == ["test/person02_handwaving_d4_s1.mp4",
                                                              "test/person02_handwaving_d4_s2.mp4"]
    from posecli.media.video import probe_video

    assert probe_video(tmp_path / "clips" / "train" / "person11_handwaving_d4_s2.mp4").frame_count == 6
    # posecli train OUT/train: each clip is an identity (as Xiao's method wants); the manifest groups them by person
    from posecli.data.dataset import collect_sources

    clips = collect_sources([str(tmp_path / "clips" / "train")])
    assert sorted(c.identity for c in clips) == ["person01_handwaving_d4_s1", "person01_handwaving_d4_s2",
                                                 "person11_handwaving_d4_s1", "person11_handwaving_d4_s2"]
    assert {c.kind for c in clips} == {"video"}
    by_csv = collect_sources([str(tmp_path / "clips" / "train" / "labels.csv")])
    assert sorted({c.identity for c in by_csv}) == ["person01", "person11"]
    with pytest.raises(UsageError, match="--actions waving: expected some of"):
        convert("kth", tmp_path / "kth", tmp_path / "o", size=16, actions="waving")
    (tmp_path / "kth" / "handwaving" / "person3_wave.avi").write_bytes(b"")
    with pytest.raises(InputError, match="person3_wave.avi: not a KTH video name"):
        convert("kth", tmp_path / "kth", tmp_path / "o", size=16)


def test_an_archive_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "rendered_chairs.tar").write_bytes(b"x" * 600)
    with pytest.raises(InputError, match="rendered_chairs.tar: an archive: unpack it first"):
        convert("chairs", tmp_path / "rendered_chairs.tar", tmp_path / "o", size=16)
    (tmp_path / "nips2015-analogy-data.tar.gz").write_bytes(b"x")
    with pytest.raises(InputError, match="analogy-data.tar.gz: an archive"):
        convert("cars3d", tmp_path / "nips2015-analogy-data.tar.gz", tmp_path / "o", size=16)


def test_kth_zips_not_unpacked(tmp_path):
    (tmp_path / "kth").mkdir()
    (tmp_path / "kth" / "walking.zip").write_bytes(b"PK")
    with pytest.raises(InputError, match="no KTH videos .*; unzip walking.zip"):
        convert("kth", tmp_path / "kth", tmp_path / "o", size=16)


# --- end to end: the output trains and evaluates directly --------------------------------

TRAIN = ["--size", "32", "--epochs", "1", "--batch-size", "64", "--opt", "width=0.125", "--opt", "identity_dim=16",
         "--opt", "pose_dim=8", "--loss", "lap", "--device", "cpu", "-q"]


def test_converted_cars_train_and_eval_end_to_end(runner, tmp_path, offline_no_downloads):
    src = tmp_path / "cars"
    write_cars_mat(src, cars=4, side=32)
    out = tmp_path / "cars3d"
    r = invoke(runner, ["data", "cars3d", src, out, "--size", "32", "--test-count", "2", "-q"])
    assert r.exit_code == 0, r.output
    model = tmp_path / "m.safetensors"
    r = invoke(runner, ["train", out / "train", "-o", model, "--json", *TRAIN])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["images"] == 192 and summary["identities"] == 2
    # the manifest is the same training set as the folder
    from posecli.data.dataset import collect_sources

    by_folder = sorted((Path(x.path).resolve(), x.identity) for x in collect_sources([str(out / "train")]))
    by_csv = sorted((Path(x.path).resolve(), x.identity) for x in collect_sources([str(out / "train" / "labels.csv")]))
    assert by_folder == by_csv and len(by_csv) == 192
    r = invoke(runner, ["eval", out / "test", "-m", model, "--pairs", "20", "--no-leakage", "--device", "cpu",
                        "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert rep["identities"] == 2 and rep["poses"] == 96 and rep["pairs"] == 20
    assert rep["lpips_available"] is False and "POSECLI_OFFLINE" in rep["lpips_note"]  # offline: a notice, no download
