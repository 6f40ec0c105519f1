"""Esser et al. networks: shapes, the PoseModel contract, config round trip, critic."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from posecli.models.esser import Critic, EsserConfig, EsserModel


def tiny(image_size: int = 32, seed: int = 0, **kw) -> EsserModel:
    torch.manual_seed(seed)
    kw = {"width": 0.125, "n_res": 1, **kw}
    return EsserModel(EsserConfig(image_size=image_size, **kw)).eval()


def images(n: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes(size):
    model = tiny(size, identity_channels=4, pose_channels=2)
    x = images(2, size)
    with torch.no_grad():
        identity, pose = model.encode_identity(x), model.encode_pose(x)
        mean, logvar = model.pose_distribution(x)
        y = model.generate(identity, pose)
    assert model.identity_dim == 4 * 16 and model.pose_dim == 2 * 16
    assert identity.shape == (2, model.identity_dim)
    assert pose.shape == (2, model.pose_dim)
    assert mean.shape == logvar.shape == (2, 2, 4, 4)
    assert logvar.min() >= -30 and logvar.max() <= 10
    assert y.shape == (2, 3, size, size)
    assert y.min() >= 0 and y.max() <= 1


def test_logvar_is_clamped():
    model = tiny()
    with torch.no_grad():
        model.pose_encoder.layers[-1].bias[model.config.pose_channels:] = 1e4  # log-variance channels
        assert model.pose_distribution(images(1, 32))[1].max() == 10
        model.pose_encoder.layers[-1].bias[model.config.pose_channels:] = -1e4
        assert model.pose_distribution(images(1, 32))[1].min() == -30


def test_pose_code_is_the_mean_and_reconstruct_is_generate():
    model = tiny()
    x = images(3, 32)
    with torch.no_grad():
        mean, _ = model.pose_distribution(x)
        assert torch.equal(model.encode_pose(x), mean.flatten(1))
        y = model.generate(model.encode_identity(x), model.encode_pose(x))
        assert torch.equal(y, model.reconstruct(x))
        # spatial maps are accepted too (a pose sample straight from the distribution)
        assert torch.equal(model.generate(model.encode_identity(x), mean), y)


def test_config_round_trip():
    model = tiny(64)
    d = model.config_dict()
    assert "identity_dim" not in d and "pose_dim" not in d  # properties, not fields
    again = EsserModel.from_config_dict(d)
    assert again.config == model.config
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("size", [0, 4, 16 + 8, 48, 96, 100])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="power of two"):
        EsserConfig(image_size=size)


def test_encoder_widths_and_no_critic_in_model():
    cfg = EsserConfig(image_size=128)
    assert cfg.encoder_channels == (16, 32, 64, 128, 256, 256)
    assert EsserConfig(image_size=64, width=0.25).encoder_channels == (8, 8, 16, 32, 64)
    names = {n for n, _ in tiny().named_modules()}
    assert not any("critic" in n for n in names)  # critics are training-only


def test_critic_is_separable():
    cfg = EsserConfig(image_size=32, width=0.125, identity_channels=4, pose_channels=2, critic_channels=64)
    torch.manual_seed(0)
    critic = Critic(cfg)
    g = torch.Generator().manual_seed(2)
    pose, identity = torch.randn(5, 2, 4, 4, generator=g), torch.randn(5, 4, 4, 4, generator=g)
    with torch.no_grad():
        logits = critic(pose, identity)
        assert logits.shape == (5,)
        # every pairing at once: one matrix product of the flattened features
        all_pairs = critic.net_pose(pose).flatten(1) @ critic.net_identity(identity).flatten(1).T  # (B, B)
        torch.testing.assert_close(all_pairs.diagonal(), logits)
        torch.testing.assert_close(all_pairs[1, 3], critic(pose[1:2], identity[3:4])[0])


def test_gradients_reach_both_encoders():
    model = tiny().train()
    x = images(2, 32)
    mean, logvar = model.pose_distribution(x)
    pose = mean + torch.randn_like(mean) * (0.5 * logvar).exp()  # a reparametrised sample
    model.generate(model.encode_identity(x), pose).square().mean().backward()
    for name in ("identity_encoder", "pose_encoder", "decoder"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name


def test_channels_last_follows_the_weights():
    model = tiny()
    x = images(2, 32)
    with torch.no_grad():
        ref = model.reconstruct(x)
        model = model.to(memory_format=torch.channels_last)
        y = model.reconstruct(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref)


def test_model_file_round_trip(tmp_path):
    from posecli.models import MODEL_REGISTRY

    if "esser" not in MODEL_REGISTRY:
        pytest.skip("esser is not in MODEL_REGISTRY yet")
    from posecli.modelfile import load_model, save_model

    model = tiny()
    path = save_model(tmp_path / "esser.safetensors", model, training={"data": "none"})
    loaded = load_model(path)
    assert isinstance(loaded, EsserModel) and loaded.config == model.config
    assert loaded.meta["identity_dim"] == model.identity_dim and loaded.meta["pose_dim"] == model.pose_dim
    x = images(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x))
    assert dataclasses.asdict(loaded.config) == model.config_dict()
