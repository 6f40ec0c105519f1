"""Model files: round trip, metadata, every corruption as one clear line, name lookup, no pickle."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch

from posecli import __version__, modelfile
from posecli.errors import ModelFileError, OutputExistsError, UsageError
from posecli.modelfile import list_models, load_model, read_metadata, resolve_model, save_model
from posecli.models.lord import LordConfig, LordModel

CFG = LordConfig(image_size=32, identity_dim=16, pose_dim=8, width=0.125)


def tiny(seed: int = 0) -> LordModel:
    torch.manual_seed(seed)
    return LordModel(CFG).eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def outputs(model) -> torch.Tensor:
    x = images()
    with torch.no_grad():
        return model.swap(x, x.flip(0))


def rewrite(src: Path, dst: Path, meta_edit=None, tensor_edit=None, raw_meta=None) -> Path:
    """A copy of a model file with edited metadata or tensors (written by safetensors itself)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as f:
        meta = json.loads(f.metadata()[modelfile.META_KEY])
    tensors = load_file(str(src))
    if meta_edit:
        meta_edit(meta)
    if tensor_edit:
        tensor_edit(tensors)
    save_file(tensors, str(dst), metadata={modelfile.META_KEY: raw_meta if raw_meta is not None else json.dumps(meta)})
    return dst


def load_error(path: Path) -> str:
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    return msg


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_model(tmp_path / "m.safetensors", tiny(), training={"data": "none", "epochs": 0})


# ------------------------------------------------------------------ round trip

def test_round_trip_gives_identical_outputs(saved):
    loaded = load_model(saved)
    assert isinstance(loaded, LordModel) and not loaded.training
    assert loaded.config == CFG
    assert all(not p.requires_grad for p in loaded.parameters())
    assert torch.equal(outputs(loaded), outputs(tiny()))
    assert loaded.path == saved
    assert sorted(saved.parent.iterdir()) == [saved]  # no temp file left behind


def test_saved_files_get_the_users_usual_mode(tmp_path):
    """safetensors recreates the temporary file as 0600; the model file must not stay private."""
    import os

    from posecli.fileio import write_bytes_atomic

    old = os.umask(0o022)
    try:
        model = save_model(tmp_path / "m.safetensors", tiny())
        other = write_bytes_atomic(tmp_path / "x.bin", b"x")
    finally:
        os.umask(old)
    assert model.stat().st_mode & 0o777 == 0o644 and other.stat().st_mode & 0o777 == 0o644


def test_half_storage_is_close_and_half_the_size(tmp_path, saved):
    half = save_model(tmp_path / "half.safetensors", tiny(), half=True)
    ratio = half.stat().st_size / saved.stat().st_size
    assert 0.45 < ratio < 0.6, ratio
    loaded = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded.meta["dtype"] == "float16"
    torch.testing.assert_close(outputs(loaded), outputs(tiny()), atol=2e-3, rtol=0)


def test_metadata_contents(saved):
    meta = read_metadata(saved)
    assert meta["format_version"] == modelfile.FORMAT_VERSION == 1
    assert meta["method"] == "lord"
    assert (meta["image_size"], meta["identity_dim"], meta["pose_dim"]) == (32, 16, 8)
    assert meta["config"] == {"image_size": 32, "identity_dim": 16, "pose_dim": 8, "width": 0.125}
    assert meta["training"] == {"data": "none", "epochs": 0}
    assert meta["posecli_version"] == __version__
    assert meta["dtype"] == "float32"
    assert load_model(saved).meta == meta


def test_save_refuses_overwrite_and_wrong_suffix(tmp_path, saved):
    before = saved.read_bytes()
    with pytest.raises(OutputExistsError):
        save_model(saved, tiny(seed=1))
    assert saved.read_bytes() == before
    save_model(saved, tiny(seed=1), overwrite=True)
    assert not torch.equal(outputs(load_model(saved)), outputs(tiny()))
    with pytest.raises(UsageError):
        save_model(tmp_path / "m.pt", tiny())
    assert not (tmp_path / "m.pt").exists()


# ----------------------------------------------------------------- corruption

def test_text_file(tmp_path):
    p = tmp_path / "notes.safetensors"
    p.write_text("these are my notes, not a model\n" * 4)
    assert "not a safetensors model file" in load_error(p)


def test_zero_bytes(tmp_path):
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    assert "not a safetensors model file (too short)" in load_error(p)


def test_truncated(tmp_path, saved):
    p = tmp_path / "cut.safetensors"
    p.write_bytes(saved.read_bytes()[:-100])
    msg = load_error(p)
    assert f"truncated: {saved.stat().st_size - 100} bytes, the header promises {saved.stat().st_size}" in msg


def test_truncated_inside_header(tmp_path, saved):
    p = tmp_path / "cut.safetensors"
    p.write_bytes(saved.read_bytes()[:50])
    assert "bad header length" in load_error(p)


def test_header_json_garbage(tmp_path):
    p = tmp_path / "garbage.safetensors"
    body = b"{this is not json at all}"
    p.write_bytes(struct.pack("<Q", len(body)) + body + b"\0" * 64)
    assert "header is not JSON" in load_error(p)
    body = b"[1, 2, 3]"
    p.write_bytes(struct.pack("<Q", len(body)) + body)
    assert "header is not an object" in load_error(p)


def test_plain_safetensors_without_posecli_metadata(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(4)}, str(p))
    assert "without posecli metadata" in load_error(p)
    save_file({"w": torch.zeros(4)}, str(p), metadata={"format": "pt"})
    assert "without posecli metadata" in load_error(p)
    for header, error in (({"__metadata__": "posecli"}, "without posecli metadata"),
                          ({"__metadata__": {"posecli": 3}}, "posecli metadata is not valid JSON")):
        body = json.dumps(header).encode()
        p.write_bytes(struct.pack("<Q", len(body)) + body)  # hand-made: safetensors would not write these
        assert error in load_error(p)


def test_metadata_not_json(tmp_path, saved):
    p = rewrite(saved, tmp_path / "x.safetensors", raw_meta="{oops")
    assert "posecli metadata is not valid JSON" in load_error(p)
    p = rewrite(saved, tmp_path / "x.safetensors", raw_meta="[1]")
    assert "posecli metadata is not a JSON object" in load_error(p)


def test_unknown_format_version(tmp_path, saved):
    p = rewrite(saved, tmp_path / "v9.safetensors", meta_edit=lambda m: m.update(format_version=9))
    msg = load_error(p)
    assert "model format version 9 is not supported" in msg and "supported: 1" in msg


def test_unknown_method(tmp_path, saved):
    p = rewrite(saved, tmp_path / "nerf.safetensors", meta_edit=lambda m: m.update(method="nerf"))
    msg = load_error(p)
    assert "unknown method 'nerf'" in msg and "lord" in msg


def test_missing_metadata_keys(tmp_path, saved):
    p = rewrite(saved, tmp_path / "noconfig.safetensors", meta_edit=lambda m: m.pop("config"))
    assert "posecli metadata lacks config" in load_error(p)
    p = rewrite(saved, tmp_path / "nosize.safetensors", meta_edit=lambda m: m.pop("image_size"))
    assert "posecli metadata lacks image_size" in load_error(p)


def test_tensors_do_not_match_another_width(tmp_path, saved):
    p = rewrite(saved, tmp_path / "w.safetensors", meta_edit=lambda m: m["config"].update(width=0.25))
    assert "tensors do not match the architecture" in load_error(p)


def test_tensors_do_not_match_another_size(tmp_path, saved):
    def edit(m):
        m["config"]["image_size"] = m["image_size"] = 64

    p = rewrite(saved, tmp_path / "s.safetensors", meta_edit=edit)
    assert "tensors do not match" in load_error(p)


def test_missing_and_extra_tensors(tmp_path, saved):
    p = rewrite(saved, tmp_path / "less.safetensors", tensor_edit=lambda t: t.pop("modulation.fc.bias"))
    assert "tensors do not match the lord architecture (missing 1, unexpected 0)" in load_error(p)
    p = rewrite(saved, tmp_path / "more.safetensors", tensor_edit=lambda t: t.update(extra=torch.zeros(2)))
    assert "(missing 0, unexpected 1)" in load_error(p)


def test_bad_architecture_config(tmp_path, saved):
    p = rewrite(saved, tmp_path / "c.safetensors", meta_edit=lambda m: m["config"].update(depth=3))
    assert "bad architecture config" in load_error(p) and "depth" in load_error(p)
    p = rewrite(saved, tmp_path / "c.safetensors", meta_edit=lambda m: m["config"].update(image_size=48))
    assert "bad architecture config" in load_error(p)


def test_folder_and_missing_file(tmp_path):
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(ModelFileError, match="is a folder"):
        load_model(tmp_path / "dir.safetensors")
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "nothing.safetensors")


# ------------------------------------------------------------ name resolution

@pytest.fixture
def dirs(tmp_path, monkeypatch):
    bundled, user = tmp_path / "bundled", tmp_path / "user"
    bundled.mkdir()
    monkeypatch.setenv("POSECLI_WEIGHTS", str(bundled))
    monkeypatch.setattr(modelfile, "user_dir", lambda: user)
    return bundled, user


def test_name_resolves_in_posecli_weights(dirs):
    bundled, user = dirs
    save_model(bundled / "faces.safetensors", tiny(), training={"data": "bundled"})
    assert modelfile.search_dirs() == [user, bundled]
    assert resolve_model("faces") == bundled / "faces.safetensors"
    assert load_model("faces").meta["training"] == {"data": "bundled"}
    assert [m["name"] for m in list_models()] == ["faces"]


def test_user_dir_shadows_bundled(dirs):
    bundled, user = dirs
    save_model(bundled / "faces.safetensors", tiny(), training={"data": "bundled"})
    save_model(bundled / "cars.safetensors", tiny(), training={"data": "bundled cars"})
    save_model(user / "faces.safetensors", tiny(seed=1), training={"data": "mine"})
    assert resolve_model("faces") == user / "faces.safetensors"
    assert load_model("faces").meta["training"] == {"data": "mine"}
    listed = {m["name"]: m for m in list_models()}
    assert sorted(listed) == ["cars", "faces"]
    assert listed["faces"]["path"] == str(user / "faces.safetensors")
    assert listed["cars"]["meta"]["training"] == {"data": "bundled cars"}


def test_missing_name_lists_available(dirs):
    bundled, _ = dirs
    save_model(bundled / "faces.safetensors", tiny())
    save_model(bundled / "cars.safetensors", tiny())
    with pytest.raises(ModelFileError) as info:
        resolve_model("horses")
    msg = str(info.value)
    assert "no model named 'horses'" in msg and "available: cars, faces" in msg and "\n" not in msg


def test_missing_name_with_no_models(dirs):
    with pytest.raises(ModelFileError, match=r"available: none"):
        resolve_model("horses")


def test_name_wins_over_a_same_named_folder(dirs, tmp_path, monkeypatch):
    """`-m faces` from a folder holding the training data folder faces/."""
    bundled, _ = dirs
    save_model(bundled / "faces.safetensors", tiny())
    (tmp_path / "faces").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_model("faces") == bundled / "faces.safetensors"


def test_explicit_paths(dirs, tmp_path):
    p = save_model(tmp_path / "elsewhere" / "x.safetensors", tiny())
    assert resolve_model(str(p)) == p
    with pytest.raises(ModelFileError, match="no such model file"):
        resolve_model(str(tmp_path / "elsewhere" / "y.safetensors"))


def test_list_models_reports_unreadable_files(dirs):
    bundled, _ = dirs
    (bundled / "broken.safetensors").write_bytes(b"\x01\x02")
    save_model(bundled / "ok.safetensors", tiny())
    (bundled / "readme.txt").write_text("not listed")
    listed = {m["name"]: m for m in list_models()}
    assert sorted(listed) == ["broken", "ok"]
    assert "too short" in listed["broken"]["error"] and "meta" not in listed["broken"]
    assert listed["ok"]["meta"]["method"] == "lord"


# ------------------------------------------------------------------ no pickle

def test_loader_never_unpickles(saved, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("the model loader must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.serialization, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    model = load_model(saved)
    assert torch.equal(outputs(model), outputs(tiny()))


def test_a_pickle_named_safetensors_is_refused(tmp_path, monkeypatch):
    p = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(2)}, p)  # a zip/pickle file under a safetensors name
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    assert "not a safetensors model file" in load_error(p)


# ------------------------------------------------- metadata against the tensors (issue 16, item 8)

def test_metadata_dims_checked_against_the_tensors(tmp_path, saved):
    # the summary says pose_dim 4, the architecture (config and tensors) has 8: refused, not run
    p = rewrite(saved, tmp_path / "p.safetensors", meta_edit=lambda m: m.update(pose_dim=4))
    assert "metadata says pose_dim 4, its architecture gives 8" in load_error(p)
    p = rewrite(saved, tmp_path / "i.safetensors", meta_edit=lambda m: m.update(identity_dim=32))
    assert "identity_dim 32" in load_error(p)

    def both(m):  # summary and config agree on 4; the tensors were made for 8
        m["pose_dim"] = m["config"]["pose_dim"] = 4

    msg = load_error(rewrite(saved, tmp_path / "b.safetensors", meta_edit=both))
    assert "tensors do not match the architecture in its metadata" in msg and "has shape" in msg


def test_bundled_cars_with_a_wrong_pose_dim_is_refused(tmp_path):
    from posecli.modelfile import bundled_dir

    src = bundled_dir() / "cars.safetensors"
    if not src.is_file():
        pytest.skip("no bundled cars model")
    p = rewrite(src, tmp_path / "cars.safetensors", meta_edit=lambda m: m.update(pose_dim=64))
    assert "metadata says pose_dim 64, its architecture gives 128" in load_error(p)


def test_each_file_is_opened_once_through_safe_open(saved, monkeypatch):
    import safetensors

    calls = []
    real = safetensors.safe_open

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(safetensors, "safe_open", counting)
    model = load_model(saved)
    assert calls == [str(saved)] and model.pose_dim == 8


def test_safe_open_refusals_are_one_line(tmp_path, saved):
    data = saved.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    for edit, words in ((lambda e: e.update(dtype="Q99"), "corrupt safetensors header"),
                        (lambda e: e.update(data_offsets=[0, 3]), "corrupt safetensors header")):
        h = json.loads(json.dumps(header))
        edit(h[name])
        body = json.dumps(h).encode()
        p = tmp_path / "bad.safetensors"
        p.write_bytes(struct.pack("<Q", len(body)) + body + data[8 + n :])
        assert words in load_error(p)
