"""Esser et al.: the Lagrangian and gamma updates, the critics, where gradients go, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from posecli.models.esser import Critic, EsserConfig
from posecli.training.esser import Constraint, Critics, Generative, Method, Options, critic_terms
from posecli.training.losses import ReconstructionLoss
from posecli.training.method import Batch

from conftest import invoke
from test_core import TINY_METHOD, blobs, run, tiny_opts


def test_lambda_rises_while_the_estimate_exceeds_epsilon_and_never_goes_below_zero():
    c = Constraint(Options(epsilon=0.1, mu=0.5))
    for _ in range(3):
        c.update(torch.tensor(0.5), torch.tensor(0.5), warm=True)
    assert float(c.lam) == pytest.approx(3 * 0.5 * 0.4)
    for _ in range(10):
        c.update(torch.tensor(-1.0), torch.tensor(-1.0), warm=True)
    assert float(c.lam) == 0.0
    # before the warm-up ends nothing moves but the moving averages
    c = Constraint(Options(epsilon=0.1))
    c.update(torch.tensor(5.0), torch.tensor(9.0), warm=False)
    assert float(c.lam) == 0.0 and float(c.gamma) == 1.0 and float(c.n_avg) == 1


def test_gamma_rises_when_t_prime_sees_more_than_t_and_falls_back_to_zero_at_most():
    o = Options(l_gamma=0.1, b_gamma=0.01, gamma0=1.0)
    c = Constraint(o)
    c.update(torch.tensor(0.1), torch.tensor(0.9), warm=True)  # I_T' - I_T = 0.8 > b_gamma
    assert float(c.gamma) == pytest.approx(1.0 + 0.1 * (0.8 - 0.01), rel=1e-5)  # bias-corrected EMA: exact
    c = Constraint(o)
    c.update(torch.tensor(0.5), torch.tensor(0.505), warm=True)  # within b_gamma: falls
    assert float(c.gamma) < 1.0
    for _ in range(200):
        c.update(torch.tensor(1.0), torch.tensor(0.0), warm=True)
    assert float(c.gamma) == 0.0


def test_lagrangian_term_is_inactive_below_the_bound():
    c = Constraint(Options(epsilon=0.2, mu=0.1))
    assert float(c.mi_loss(torch.tensor(0.1), warm=True)) == 0.0  # mu c + lambda < 0
    assert float(c.mi_loss(torch.tensor(0.7), warm=False)) == 0.0
    assert float(c.mi_loss(torch.tensor(0.7), warm=True)) == pytest.approx(0.5 * 0.1 * 0.25)


def _method(**kw):
    opts = tiny_opts("esser", **kw)
    torch.manual_seed(0)
    return Method(opts, blobs(), ReconstructionLoss("lap"))


def test_critics_separate_joint_from_shuffled_codes_that_share_information():
    torch.manual_seed(0)
    cfg = EsserConfig(image_size=32, identity_channels=4, pose_channels=4, width=0.125, critic_channels=128)
    critic = Critic(cfg)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    labels = torch.arange(64)
    for _ in range(150):
        identity = torch.randn(64, 4, 4, 4)
        pose = identity + 0.3 * torch.randn(64, 4, 4, 4)  # the pose code carries the identity
        bce, mi, acc = critic_terms(critic, pose, identity, labels)
        opt.zero_grad()
        bce.backward()
        opt.step()
    assert float(acc) > 0.9 and float(mi) > 1.0  # noqa: the estimate of a strong leak
    # independent codes: the trained critic sees little
    with torch.no_grad():
        _, mi_ind, acc_ind = critic_terms(critic, torch.randn(64, 4, 4, 4), torch.randn(64, 4, 4, 4), labels)
    assert float(mi_ind) < float(mi)


def test_shuffled_pairs_of_one_identity_are_masked():
    cfg = EsserConfig(image_size=32, identity_channels=4, pose_channels=4, width=0.125, critic_channels=128)
    critic = Critic(cfg)
    pose, identity = torch.randn(4, 4, 4, 4), torch.randn(4, 4, 4, 4)
    # all one identity: no marginal pair; the BCE is the joint term alone
    bce, mi, _ = critic_terms(critic, pose, identity, torch.zeros(4, dtype=torch.long))
    joint = critic(pose, identity)
    assert float(bce) == pytest.approx(float(0.5 * torch.nn.functional.softplus(-joint).mean()), rel=1e-5)
    assert float(mi) == pytest.approx(float(joint.mean()), rel=1e-5)


def _batch(m: Method, n=16):
    data = m.data
    idx = torch.arange(n)
    x = data.images[idx].float() / 255
    return Batch(idx, x, data.labels[idx], torch.Generator().manual_seed(0), step=10_000, partner_idx=idx.flip(0),
                 partner=x.flip(0))


def test_the_encoder_loss_reaches_the_pose_encoder_through_t_but_never_t_prime_and_no_critic_moves():
    m = _method(warmup=0)
    m.constraint.lam.fill_(1.0)
    gen = Generative(m.model, m.aux, m.critic, m.recon, m.constraint, m.o, m.recon_weight)
    for p in list(m.critic.parameters()) + list(m.critic_prime.parameters()):
        p.requires_grad_(False)  # as the loop does in this phase
    batch = _batch(m)
    terms = gen(batch)
    assert float(terms["mi_loss"]) != 0.0
    terms["loss"].backward()
    assert all(p.grad is None for p in m.critic_prime.parameters())
    assert all(p.grad is None for p in m.critic.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.model.pose_encoder.parameters())
    # the encoder/decoder optimiser holds no critic parameter, the critics' no encoder's
    main, critics = m.stages()[0].phases
    held = {id(p) for g in main.make_optimizer().param_groups for p in g["params"]}
    assert not held & {id(p) for p in list(m.critic.parameters()) + list(m.critic_prime.parameters())}
    held = {id(p) for g in critics.make_optimizer().param_groups for p in g["params"]}
    assert held == {id(p) for p in list(m.critic.parameters()) + list(m.critic_prime.parameters())}
    # the critics' phase sees the codes detached: no gradient reaches the encoders
    m.model.zero_grad()
    for p in list(m.critic.parameters()) + list(m.critic_prime.parameters()):
        p.requires_grad_(True)
    Critics(m.critic, m.critic_prime)(batch)["loss"].backward()
    assert all(p.grad is None for p in m.model.parameters())


def test_the_estimate_falls_when_the_encoder_is_trained_against_t():
    """I_T of a pose code carrying identity falls once the encoder minimises L_MI."""
    torch.manual_seed(0)
    cfg = EsserConfig(image_size=32, identity_channels=4, pose_channels=4, width=0.125, critic_channels=128)
    critic = Critic(cfg)
    encoder = torch.nn.Linear(4, 4)  # pose code = encoder(identity) per position: full leakage
    c_opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    e_opt = torch.optim.Adam(encoder.parameters(), lr=5e-2)
    labels = torch.arange(32)
    constraint = Constraint(Options(epsilon=0.0, mu=1.0, lambda0=1.0))

    def codes():
        identity = torch.randn(32, 4, 4, 4)
        pose = encoder(identity.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + 0.5 * torch.randn(32, 4, 4, 4)
        return pose, identity

    for _ in range(60):  # the critic learns to see the leak
        pose, identity = codes()
        bce, mi0, _ = critic_terms(critic, pose.detach(), identity, labels)
        c_opt.zero_grad(); bce.backward(); c_opt.step()
    for _ in range(60):  # the encoder is trained against it, the critic keeps training
        pose, identity = codes()
        mi = critic(pose, identity).mean()
        e_opt.zero_grad(); constraint.mi_loss(mi, warm=True).backward(); e_opt.step()
        bce, _, _ = critic_terms(critic, pose.detach(), identity, labels)
        c_opt.zero_grad(); bce.backward(); c_opt.step()
        constraint.update(mi.detach(), mi.detach(), warm=True)
    with torch.no_grad():
        pose, identity = codes()
        _, mi1, _ = critic_terms(critic, pose, identity, labels)
    assert float(mi1) < 0.5 * float(mi0), (float(mi0), float(mi1))


def test_training_records_lambda_gamma_and_the_estimates(tmp_path):
    trainer = run(tmp_path, tiny_opts("esser", epochs=3, warmup=2))
    row = trainer.history[-1]
    for k in ("lambda", "gamma", "mi", "critics_mi_prime", "kl", "critics_acc"):
        assert k in row
    summary = trainer.method.summary()["esser"]
    assert summary["gamma"] == pytest.approx(float(trainer.method.constraint.gamma), abs=1e-6)


ARGS = ["--method", "esser", "--size", "32", "--epochs", "2", "--batch-size", "8", "--loss", "lap", "--device", "cpu",
        *[a for k, v in TINY_METHOD["esser"].items() for a in ("--opt", f"{k}={v}")]]


def test_cli_trains_esser_on_identity_folders_and_on_videos(runner, tiny_cars, tmp_path):
    from posecli.modelfile import load_model

    out = tmp_path / "cars.safetensors"
    r = invoke(runner, ["train", tiny_cars, "-o", out, *ARGS, "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["options"]["method"] == "esser" and set(summary["esser"]) == {"lambda", "gamma", "mi_ema",
                                                                               "mi_prime_ema"}
    model = load_model(out)
    assert model.method == "esser" and model.meta["training"]["esser"] == summary["esser"]
    # swap and encode work unchanged on the model
    img = sorted((tiny_cars / "car_0000").glob("*.png"))[0]
    r = invoke(runner, ["swap", "--id", img, "--pose", img, "-m", out, "-o", tmp_path / "s.png", "-q"])
    assert r.exit_code == 0 and (tmp_path / "s.png").is_file(), r.output

    heads = tmp_path / "heads"
    r = invoke(runner, ["synth", "heads", heads, "--identities", "2", "--size", "32", "--yaws", "1", "--pitches", "1",
                        "--mouths", "1", "--video", "--clip-seconds", "2", "--fps", "10", "-q"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "heads.safetensors"
    r = invoke(runner, ["train", heads / "videos", "-o", out, *ARGS, "--fps", "5", "-q"])
    assert r.exit_code == 0, r.output
    assert load_model(out).meta["training"]["images"] == 20


def test_esser_options_reject_bad_values(runner, tiny_cars, tmp_path):
    from posecli.errors import UsageError

    with pytest.raises(UsageError, match="--opt ema_decay=1.0"):
        Options(ema_decay=1.0)
    r = invoke(runner, ["train", tiny_cars, "-o", tmp_path / "x.safetensors", *ARGS, "--noise-std", "0.3"])
    assert r.exit_code == 2 and "--noise-std: --method esser has no option noise_std" in r.output
