"""Shared fixtures: tiny seeded models on CPU, a CLI runner."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """An untrained, seeded 32x32 LORD model file (for plumbing tests)."""
    import torch

    from posecli.modelfile import save_model
    from posecli.models.lord import LordConfig, LordModel

    torch.manual_seed(0)
    model = LordModel(LordConfig(image_size=32, identity_dim=16, pose_dim=8, width=0.125))
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(path, model, training={"data": "none (untrained test model)"})
    return path


def blobs(n=64, ids=4, seed=0, clips=False):
    """Training data of n 32x32 blobs whose colour is the identity and whose position
    is the pose (with clips=True, two clips per identity)."""
    import numpy as np
    import torch

    from posecli.training.method import TrainData

    g = np.random.default_rng(seed)
    colours = g.uniform(40, 255, (ids, 3))
    yy, xx = np.mgrid[:32, :32]
    imgs = np.zeros((n, 3, 32, 32), np.uint8)
    labels = np.arange(n) % ids
    for i in range(n):
        cy, cx = g.uniform(8, 24, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
        imgs[i] = (blob[None] * colours[labels[i]][:, None, None]).astype(np.uint8)
    kw = {}
    if clips:  # two clips per identity
        kw = dict(clips=torch.from_numpy(labels * 2 + (np.arange(n) // ids) % 2), frames=torch.arange(n) // (2 * ids))
    return TrainData(torch.from_numpy(imgs), torch.from_numpy(labels), ids, key=f"blobs{n}-{ids}-{seed}", **kw)


@pytest.fixture(scope="session")
def tiny_cars(tmp_path_factory):
    """4 toy cars x 16 poses at 32x32: data/<identity>/<pose>.png (read-only for tests)."""
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("data") / "cars"
    r = invoke(CliRunner(), ["synth", "cars", out, "--identities", "4", "--size", "32", "--azimuths", "8", "--elevations", "2"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory):
    """posecli's cache (remembered failed downloads) in a folder of this test session, not
    the user's: a test that fails a download must not stop later runs from trying."""
    import os

    old = os.environ.get("POSECLI_CACHE_DIR")
    os.environ["POSECLI_CACHE_DIR"] = str(tmp_path_factory.mktemp("posecli-cache"))
    yield
    if old is None:
        os.environ.pop("POSECLI_CACHE_DIR", None)
    else:
        os.environ["POSECLI_CACHE_DIR"] = old


@pytest.fixture
def offline_no_downloads(monkeypatch, tmp_path):
    """POSECLI_OFFLINE set, an empty TORCH_HOME, and any torch.hub download fails the test."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("POSECLI_OFFLINE", "1")

    def must_not_download(*a, **k):
        raise AssertionError("download attempted while POSECLI_OFFLINE is set")

    # torchvision binds the function by name when first imported: import it before the patch
    # (a first import under the patch would keep the patched function after the test), then
    # patch its copy too
    import torchvision.models._api as tv_api

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", must_not_download)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", must_not_download)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def invoke(runner, args, **kw):
    from posecli.cli.app import app

    return runner.invoke(app, [str(a) for a in args], **kw)
