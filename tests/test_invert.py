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


def _counting_fit(monkeypatch) -> list:
    import posecli.training.invert as inv

    calls = []
    real = inv.fit_identity
    monkeypatch.setattr(inv, "fit_identity", lambda m, x, steps, **k: calls.append(steps) or real(m, x, steps, **k))
    return calls


def test_composite_fits_the_identity_or_takes_a_code(tiny, monkeypatch):
    from posecli.errors import UsageError
    from posecli.pipelines.composite import composite, identity_code, whole_square
    from posecli.regions import Box

    calls = _counting_fit(monkeypatch)
    rng = np.random.default_rng(0)
    scene = rng.integers(60, 90, (80, 120, 3)).astype(np.uint8)
    ident = np.full((40, 40, 3), 230, np.uint8)
    ident[12:28, 6:34] = (20, 40, 220)
    box = Box(20, 20, 50, 40)
    kw = dict(matte="model", remove_original=False, debug=True)
    fitted = composite(tiny, scene, ident, [box], fit_identity=5, **kw)
    plain = composite(tiny, scene, ident, [box], fit_identity=0, **kw)
    assert calls == [5, 0]
    assert not np.array_equal(plain.debug["box0_generated"], fitted.debug["box0_generated"])
    # a code computed once is used as given: no fit for each further scene
    code = identity_code(tiny, whole_square(ident, tiny.image_size), 5)
    again = composite(tiny, scene, ident, [box], fit_identity=5, id_code=code, **kw)
    assert calls == [5, 0, 5] and np.array_equal(again.debug["box0_generated"], fitted.debug["box0_generated"])
    with pytest.raises(UsageError, match="--fit-identity -1"):
        composite(tiny, scene, ident, [box], fit_identity=-1)


def test_cli_fit_identity(runner, tiny_model_path, tmp_path, monkeypatch):
    """A folder of scenes fits the --id image once; a bad step count is a one-line usage error."""
    import json

    from posecli.media.images import write_image
    from tests.conftest import invoke

    calls = _counting_fit(monkeypatch)
    rng = np.random.default_rng(0)
    scenes, ident = tmp_path / "scenes", tmp_path / "id.png"
    for k in range(2):
        write_image(scenes / f"s{k}.png", rng.integers(60, 90, (80, 120, 3)).astype(np.uint8))
    write_image(ident, np.full((40, 40, 3), (20, 40, 220), np.uint8))
    args = ["composite", "--scene", scenes, "--id", ident, "--box", "20,20,50,40", "-m", tiny_model_path,
            "--fit-identity", "3", "--allow-empty", "--json", "-q", "-o", tmp_path / "out"]
    r = invoke(runner, args)
    assert r.exit_code == 0, r.output
    assert calls == [3] and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0.png", "s1.png"]
    assert [json.loads(line)["boxes"][0]["box"] for line in r.stdout.splitlines()] == [[20, 20, 50, 40]] * 2
    r = invoke(runner, [*args, "--skip-existing"])  # nothing left to do: no fit either
    assert r.exit_code == 0 and calls == [3]
    r = invoke(runner, ["composite", "--scene", scenes / "s0.png", "--id", ident, "--box", "20,20,50,40", "-m",
                        tiny_model_path, "--fit-identity", "-1", "-o", tmp_path / "bad.png"])
    assert r.exit_code == 2 and "--fit-identity" in r.stderr and not (tmp_path / "bad.png").exists()
