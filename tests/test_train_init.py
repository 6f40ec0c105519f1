"""train --init: a run that starts from a trained model (fine-tuning) instead of random weights."""

from __future__ import annotations

import json

import pytest
import torch

from posecli.training.loop import Trainer
from posecli.training.lord import Method as LordMethod
from posecli.training.losses import ReconstructionLoss

from conftest import blobs, invoke
from test_train import TRAIN_ARGS, lord_opts


def _trainer(tmp, opts, data) -> Trainer:
    return Trainer(LordMethod, data, opts, tmp, torch.device("cpu"), ReconstructionLoss(opts.loss), quiet=True)


def _stage1_recon(trainer: Trainer) -> list[float]:
    return [h["recon"] for h in trainer.history if h["stage"] == "stage1"]


def test_lord_warm_start_takes_the_networks_and_seeds_the_tables_with_their_codes(tmp_path):
    opts = lord_opts(6, lr_encoder=2e-3)
    source = _trainer(tmp_path / "a", opts, blobs())
    source.run()
    trained = source.method.model.eval()

    # new data: other colours (identities) and positions, and more of them
    data = blobs(n=96, ids=6, seed=3)
    fresh = _trainer(tmp_path / "b", lord_opts(1), data)
    fresh.method.warm_start(trained)
    m = fresh.method
    for k, v in trained.state_dict().items():
        assert torch.equal(m.model.state_dict()[k], v), k
    x = data.images.float() / 255
    with torch.no_grad():
        assert torch.allclose(m.pose_table.weight, trained.encode_pose(x), atol=1e-5)
        codes = trained.encode_identity(x)
        for i in range(6):
            assert torch.allclose(m.identity_table.weight[i], codes[data.labels == i].mean(0), atol=1e-5)
    assert m.model.training  # warm_start leaves the run's network in training mode

    # a warm run starts far below a run from random weights, and ends below it too
    warm = _trainer(tmp_path / "c", lord_opts(1), data)
    warm.run(init=trained)
    cold = _trainer(tmp_path / "d", lord_opts(1), data)
    cold.run()
    w, c = _stage1_recon(warm), _stage1_recon(cold)
    assert w[0] < 0.7 * c[0] and w[-1] < c[-1]


def test_an_interrupted_warm_run_resumes_to_the_same_weights(tmp_path, caplog):
    source = _trainer(tmp_path / "a", lord_opts(2), blobs())
    source.run()
    init = source.method.model
    full = _trainer(tmp_path / "full", lord_opts(1), blobs())
    full.run(init=init)
    cut = Trainer(LordMethod, blobs(), lord_opts(1), tmp_path / "cut", torch.device("cpu"), ReconstructionLoss("lap"),
                  quiet=True, stop_after_steps=5)
    with pytest.raises(KeyboardInterrupt):
        cut.run(init=init)
    resumed = _trainer(tmp_path / "cut", lord_opts(1), blobs())
    with caplog.at_level("WARNING", logger="posecli"):
        resumed.run(resume=True, init=init)  # the checkpoint wins: --init is not applied twice
    assert "--init: resuming" in caplog.text
    for name, module in full.method.modules.items():
        for (k, a), b in zip(module.state_dict().items(), resumed.method.modules[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"


def test_cli_init_takes_the_models_network_and_records_it(runner, tiny_cars, tmp_path):
    from posecli.fileio import file_sha256
    from posecli.modelfile import load_model

    base = tmp_path / "base.safetensors"
    r = invoke(runner, ["train", tiny_cars, "-o", base, *TRAIN_ARGS])
    assert r.exit_code == 0, r.output
    out = tmp_path / "tuned.safetensors"
    # no --size and no network options: they come from the --init model (32 px, width 0.125, 16/8 dims)
    r = invoke(runner, ["train", tiny_cars, "-o", out, "--init", base, "--epochs", "1", "--batch-size", "16",
                        "--loss", "lap", "--device", "cpu", "-q", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["init"] == {"model": "base.safetensors", "sha256": file_sha256(base)}
    tuned, first = load_model(out), load_model(base)
    assert tuned.config == first.config and tuned.meta["training"]["init"]["sha256"] == file_sha256(base)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), first.state_dict().values()))


def test_cli_init_refusals_are_one_line_and_write_nothing(runner, tiny_cars, tmp_path):
    base = tmp_path / "base.safetensors"
    assert invoke(runner, ["train", tiny_cars, "-o", base, *TRAIN_ARGS]).exit_code == 0
    out = tmp_path / "x.safetensors"
    common = ["train", tiny_cars, "-o", out, "--epochs", "1", "--batch-size", "16", "--loss", "lap", "-q"]

    r = invoke(runner, [*common, "--init", base, "--opt", "width=0.25"])
    assert r.exit_code == 2 and "its network differs from this run's (width 0.25 here, 0.125 in the model)" in r.output
    r = invoke(runner, [*common, "--init", base, "--size", "64"])
    assert r.exit_code == 2 and "image_size 64 here, 32 in the model" in r.output
    r = invoke(runner, [*common, "--init", base, "--method", "esser"])
    assert r.exit_code == 2 and "a lord model; this run trains --method esser" in r.output
    r = invoke(runner, [*common, "--init", tmp_path / "missing.safetensors"])
    assert r.exit_code != 0 and "missing.safetensors" in r.output and "Traceback" not in r.output
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    r = invoke(runner, [*common, "--init", junk])
    assert r.exit_code != 0 and "junk.safetensors" in r.output and "Traceback" not in r.output
    for r_out in (out, tmp_path / "x.work"):
        assert not r_out.exists()
