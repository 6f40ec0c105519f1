"""The training core, for every registered method: registry, losses fall, exact resume,
model files, batches, phases, EMA, and LORD unchanged by the port."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from posecli.models import MODEL_REGISTRY
from posecli.training import METHODS, method_class, options_class
from posecli.training.loop import Trainer
from posecli.training.losses import ReconstructionLoss
from posecli.training.method import BATCH_KINDS, Batch, Method, Phase, Stage, TrainData
from posecli.training.options import TrainOptions

from conftest import blobs, invoke

# tiny options of each method for CPU tests; a method without an entry fails the test below
TINY_METHOD = {
    "lord": dict(width=0.125, identity_dim=16, pose_dim=8),
    "esser": dict(width=0.125, critic_width=0.0625, identity_channels=4, pose_channels=4, warmup=4, lr=1e-3),
    "cs": dict(width=0.125, identity_dim=16, pose_dim=8, id_features="off"),
    "xiao": dict(width=0.125, d_width=0.125, n_res=1, lr=5e-4, pose_features="edges", clusters=4, pvm_size=16),
}
TINY = dict(image_size=32, batch_size=16, loss="lap", log_every=2)


def tiny_opts(method: str, epochs: int = 2, shared=None, **kw) -> TrainOptions:
    return TrainOptions(method=method, epochs=epochs, **{**TINY, **(shared or {})},
                        method_options=options_class(method)(**{**TINY_METHOD[method], **kw}))


def run(tmp, opts, data=None, stop_after=None, resume=False) -> Trainer:
    data = data if data is not None else blobs()
    trainer = Trainer(method_class(opts.method), data, opts, tmp, torch.device("cpu"), ReconstructionLoss(opts.loss),
                      quiet=True, stop_after_steps=stop_after)
    trainer.run(resume=resume)
    return trainer


def test_one_registry_for_train_models_and_help(runner):
    assert set(METHODS) == set(MODEL_REGISTRY) == set(TINY_METHOD)
    r = invoke(runner, ["train", "--help"])
    assert all(name in r.output for name in METHODS)
    for name in METHODS:
        assert method_class(name).name == name
        assert dataclasses.is_dataclass(options_class(name))
        for f in dataclasses.fields(options_class(name)):
            assert f.metadata.get("help"), f"{name}.{f.name} has no help"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_loss_falls(tmp_path, method):
    trainer = run(tmp_path, tiny_opts(method, epochs=6))
    first = [h for h in trainer.history if h["stage"] == trainer.history[0]["stage"]]
    assert first[-1]["recon"] < 0.8 * first[0]["recon"], [h["recon"] for h in first]
    assert (tmp_path / "loss.png").is_file() and list((tmp_path / "samples").glob("*.png"))


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("stop_after", [5, 10])  # mid-epoch, and later (LORD: stage 2)
def test_resume_from_a_mid_epoch_checkpoint_is_bit_identical(tmp_path, method, stop_after):
    opts = tiny_opts(method, epochs=3)  # 4 steps an epoch
    full = run(tmp_path / "a", opts)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", opts, stop_after=stop_after)
    resumed = run(tmp_path / "b", opts, resume=True)
    for name, module in full.method.modules.items():
        for (k, a), b in zip(module.state_dict().items(), resumed.method.modules[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"
    assert set(full.method.ema) == set(resumed.method.ema)
    for name, module in full.method.ema.items():  # the averaged copies (the saved model where there is one)
        for (k, a), b in zip(module.state_dict().items(), resumed.method.ema[name].state_dict().values()):
            assert torch.equal(a, b), f"EMA {name}.{k} differs after resume"
    for k, v in full.method.state_dict().items():
        w = resumed.method.state_dict()[k]
        assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w, k
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_model_file_round_trip(tmp_path, method):
    from posecli.modelfile import load_model, save_model

    trainer = run(tmp_path, tiny_opts(method, epochs=1))
    model = trainer.method.final_model().eval()
    path = save_model(tmp_path / "m.safetensors", model, training={"options": trainer.opts.to_dict()})
    loaded = load_model(path)
    assert loaded.method == method and type(loaded) is type(model)
    x = blobs().images[:4].float() / 255
    with torch.no_grad():
        assert torch.equal(loaded.swap(x, x.flip(0)), model.swap(x, x.flip(0)))
    assert loaded.meta["training"]["options"]["method_options"] == dataclasses.asdict(trainer.opts.method_options)


def test_lord_on_the_new_core_reproduces_the_old_loop():
    """The losses of the loop before the port (commit fc04dad), same seed and data: LORD's
    results do not change with the core. (Weights matched bit for bit there, too.)"""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        trainer = run(Path(d), tiny_opts("lord", epochs=2))
    old = [2.272233486175537, 2.2255702018737793, 2.1947410106658936, 2.173490524291992,
           22.20798110961914, 22.99411392211914, 22.707660675048828, 21.904115676879883]
    assert [h["loss"] for h in trainer.history] == pytest.approx(old, rel=1e-4)


def test_pairs_share_identity_or_clip_and_never_the_image_itself():
    for clips in (False, True):
        data = blobs(n=48, ids=4, clips=clips)
        idx = torch.arange(48)
        for seed in range(5):
            partner = BATCH_KINDS["pairs"](data, idx, torch.Generator().manual_seed(seed))["partner_idx"]
            assert not torch.any(partner == idx)
            group = data.clips if clips else data.labels
            assert torch.equal(group[partner], group[idx])
        # every other member of the group is drawn sometimes
        draws = torch.stack([BATCH_KINDS["pairs"](data, idx, torch.Generator().manual_seed(s))["partner_idx"]
                             for s in range(200)])
        size = 6 if clips else 12
        assert all(len(set(draws[:, i].tolist())) == size - 1 for i in range(48))
    # an image alone in its identity (or clip) is paired with itself, the only choice
    data = TrainData(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 0, 1]), 2, "x")
    partner = BATCH_KINDS["pairs"](data, torch.arange(3), torch.Generator().manual_seed(0))["partner_idx"]
    assert partner.tolist() == [1, 0, 2]


def test_batch_noise_does_not_depend_on_the_number_of_processes():
    idx = torch.arange(8)
    one = Batch(idx, torch.zeros(8, 3, 4, 4), idx, torch.Generator().manual_seed(3)).randn(5)
    for rank in range(2):
        part = Batch(idx[rank::2], torch.zeros(4, 3, 4, 4), idx, torch.Generator().manual_seed(3), rank, 2).randn(5)
        assert torch.equal(part, one[rank::2])


class _TwoPhases(Method):
    """A toy method: phase "a" trains net a every step (cosine), "b" net b every 2nd step
    (constant lr); each objective records which parameters may take gradients."""

    name = "lord"  # borrows LORD's options; only the contract matters

    def __init__(self, opts, data, recon):
        super().__init__(opts, data, recon)
        self.a, self.b = nn.Linear(3, 1), nn.Linear(3, 1)
        self.modules = {"a": self.a, "b": self.b}
        self.seen = []

    def _objective(self, net, tag):
        outer = self

        class Objective(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, batch):
                outer.seen.append((tag, batch.step, outer.a.weight.requires_grad, outer.b.weight.requires_grad))
                return {"loss": self.net(batch.x.mean((2, 3))).pow(2).mean()}

        return Objective()

    def stages(self):
        return [Stage("s", self.opts.epochs, [
            Phase("a", self._objective(self.a, "a"), lambda: torch.optim.SGD(self.a.parameters(), lr=0.1)),
            Phase("b", self._objective(self.b, "b"), lambda: torch.optim.SGD(self.b.parameters(), lr=0.1),
                  every=2, schedule="constant"),
        ], ema={"a": 0.5}, sample=lambda i, p: torch.zeros(len(i) * len(p), 3, 32, 32))]

    def final_model(self):
        return self.ema["a"]


def test_phases_run_in_order_with_their_own_parameters_interval_and_schedule(tmp_path):
    opts = tiny_opts("lord", epochs=1, shared={"log_every": 1})
    trainer = Trainer(_TwoPhases, blobs(), opts, tmp_path, torch.device("cpu"), ReconstructionLoss("lap"), quiet=True)
    trainer.run()
    m = trainer.method
    assert m.seen == [("a", 0, True, False), ("b", 0, False, True), ("a", 1, True, False),
                      ("a", 2, True, False), ("b", 2, False, True), ("a", 3, True, False)]
    # the second phase's terms are recorded under its name
    assert all("b_loss" in h for h in trainer.history[::2]) and "b_loss" not in trainer.history[1]
    # the EMA copy (decay 0.5) trails the weights it averages
    assert not torch.equal(m.ema["a"].weight, m.a.weight)


def test_lord_ema_saves_the_averaged_model_and_resumes_exactly(tmp_path):
    opts = tiny_opts("lord", epochs=2, ema=0.9)
    trainer = run(tmp_path / "a", opts)
    m = trainer.method
    assert m.final_model() is m.ema["model"] and m.final_model() is not m.model
    assert not torch.equal(m.final_model().pose_encoder.mlp[-1].weight, m.model.pose_encoder.mlp[-1].weight)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", opts, stop_after=14)  # in stage 2
    resumed = run(tmp_path / "b", opts, resume=True).method.final_model()
    # resumed once more, after the last step: the averaged copy is still what is saved
    again = run(tmp_path / "b", opts, resume=True).method.final_model()
    for name, a in m.final_model().state_dict().items():
        assert torch.equal(a, resumed.state_dict()[name]) and torch.equal(a, again.state_dict()[name]), name


def test_schedules():
    from posecli.training.loop import scheduled_lr

    ph = lambda s, end=None: Phase("p", nn.Identity(), lambda: None, schedule=s, lr_end=end)  # noqa: E731
    assert scheduled_lr(ph("constant"), 1.0, 0.1, 5, 10) == 1.0
    assert scheduled_lr(ph("linear"), 1.0, 0.1, 5, 10) == pytest.approx(0.5)
    assert scheduled_lr(ph("linear"), 1.0, 0.1, 10, 10) == 0.0
    assert scheduled_lr(ph("cosine"), 1.0, 0.1, 10, 10) == pytest.approx(0.1)
    assert scheduled_lr(ph("cosine"), 1.0, 0.1, 0, 10) == pytest.approx(1.0)


def test_old_checkpoints_and_world_size_are_named(tmp_path):
    from posecli.errors import PoseCliError
    from posecli.training.checkpoint import load_checkpoint, save_checkpoint

    opts = tiny_opts("lord", epochs=1)
    run(tmp_path, opts)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["world_size"] == 1
    ckpt["version"] = 1
    save_checkpoint(tmp_path, ckpt)
    with pytest.raises(PoseCliError, match="another posecli version"):
        run(tmp_path, opts, resume=True)


def test_history_rows_are_json(tmp_path):
    run(tmp_path, tiny_opts("esser", epochs=1))
    rows = json.loads((tmp_path / "history.json").read_text())
    assert {"lambda", "gamma", "mi", "critics_mi_prime", "kl"} <= set(rows[-1])
