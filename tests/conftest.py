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


@pytest.fixture(scope="session")
def tiny_cars(tmp_path_factory):
    """4 toy cars x 16 poses at 32x32: data/<identity>/<pose>.png (read-only for tests)."""
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("data") / "cars"
    r = invoke(CliRunner(), ["synth", "cars", out, "--identities", "4", "--size", "32", "--azimuths", "8", "--elevations", "2"])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def offline_no_downloads(monkeypatch, tmp_path):
    """POSECLI_OFFLINE set, an empty TORCH_HOME, and any torch.hub download fails the test."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("POSECLI_OFFLINE", "1")

    def must_not_download(*a, **k):
        raise AssertionError("download attempted while POSECLI_OFFLINE is set")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", must_not_download)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


def invoke(runner, args, **kw):
    from posecli.cli.app import app

    return runner.invoke(app, [str(a) for a in args], **kw)
