"""Test-time latent optimisation (posecli.training.invert): the fitted identity code redraws the
image better than the encoder's, the model is left as it was, and composite fits once per identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from posecli.models.lord import LordConfig, LordModel
from posecli.training.invert import fit_identity
from posecli.training.losses import ReconstructionLoss


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return LordModel(LordConfig(image_size=32, identity_dim=16, pose_dim=8, width=0.125)).eval()


def _image(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.full((1, 3, 32, 32), 0.9)
    x[:, :, 10:22, 6:26] = torch.rand(3, 1, 1, generator=g)  # a coloured box on a plain ground
    return x


def test_fitted_code_redraws_the_image_better(tiny):
    x = _image()
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    flags = [p.requires_grad for p in tiny.parameters()]
    loss = ReconstructionLoss("lap")
    with torch.no_grad():
        pose = tiny.encode_pose(x)
        plain = tiny.encode_identity(x)
        fitted = fit_identity(tiny, x, 200, lr=0.1)
        assert torch.equal(fit_identity(tiny, x, 0), plain)  # 0 steps: the encoder's code
        assert fitted.shape == plain.shape and not torch.equal(fitted, plain)
        # the untrained generator barely listens to the identity, yet the fit lowers the loss by over 15 %
        assert loss(tiny.generate(fitted, pose), x) < 0.85 * loss(tiny.generate(plain, pose), x)
    for k, v in tiny.state_dict().items():  # the model is not changed
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in tiny.parameters()] == flags and not tiny.training
    # inside inference mode (as the pipelines run) it still fits
    with torch.inference_mode():
        assert torch.allclose(fit_identity(tiny, x, 200, lr=0.1), fitted)


def test_composite_fits_once_per_identity(tiny, monkeypatch):
    import posecli.training.invert as inv
    from posecli.errors import UsageError
    from posecli.pipelines.composite import composite
    from posecli.regions import Box

    calls = []
    real = inv.fit_identity
    monkeypatch.setattr(inv, "fit_identity", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(0)
    scene = rng.integers(60, 90, (80, 120, 3)).astype(np.uint8)
    ident = np.full((40, 40, 3), 230, np.uint8)
    ident[12:28, 6:34] = (20, 40, 220)
    box = Box(20, 20, 50, 40)
    kw = dict(matte="model", remove_original=False, debug=True)
    a = composite(tiny, scene, ident, [box], fit_identity=5, **kw)
    b = composite(tiny, scene, ident, [box], fit_identity=5, **kw)
    # the second scene reuses the fit
    assert calls == [1] and np.array_equal(a.debug["box0_generated"], b.debug["box0_generated"])
    other = ident.copy()
    other[12:28, 6:34] = (220, 40, 20)
    composite(tiny, scene, other, [box], fit_identity=5, **kw)
    assert calls == [1, 1]
    plain = composite(tiny, scene, ident, [box], fit_identity=0, **kw)
    assert not np.array_equal(plain.debug["box0_generated"], a.debug["box0_generated"])
    with pytest.raises(UsageError, match="--fit-identity -1"):
        composite(tiny, scene, ident, [box], fit_identity=-1)


def test_cli_fit_identity(runner, tiny_model_path, tmp_path):
    import json

    from posecli.media.images import write_image
    from tests.conftest import invoke

    rng = np.random.default_rng(0)
    scene, ident = tmp_path / "scene.png", tmp_path / "id.png"
    write_image(scene, rng.integers(60, 90, (80, 120, 3)).astype(np.uint8))
    write_image(ident, np.full((40, 40, 3), (20, 40, 220), np.uint8))
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", "20,20,50,40", "-m", tiny_model_path,
                        "--fit-identity", "3", "--allow-empty", "--json", "-q", "-o", tmp_path / "out.png"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["boxes"][0]["box"] == [20, 20, 50, 40]
    r = invoke(runner, ["composite", "--scene", scene, "--id", ident, "--box", "20,20,50,40", "-m", tiny_model_path,
                        "--fit-identity", "-1", "-o", tmp_path / "bad.png"])
    assert r.exit_code == 2 and "--fit-identity" in r.stderr and not (tmp_path / "bad.png").exists()
