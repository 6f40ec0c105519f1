"""C-S: fusion, the information bottleneck, instance discrimination, no labels, the CLI."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from torch import nn

from posecli.models.cs import CsConfig, CsModel, normalise_content
from posecli.training.cs import bottleneck, capacity, instance_discrimination, scheduled

from conftest import blobs, invoke
from test_core import TINY_METHOD, run, tiny_opts


def _model(prior="gaussian"):
    torch.manual_seed(0)
    return CsModel(CsConfig(image_size=32, identity_dim=16, pose_dim=8, width=0.125, prior=prior)).eval()


def test_fusion_normalises_the_content_and_the_style_only_scales_and_shifts_it():
    c = torch.randn(5, 8) * 3 + 2
    n = normalise_content(c, "gaussian")
    assert torch.allclose(n.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(n.var(1, correction=0), torch.ones(5), atol=1e-3)
    assert torch.allclose(normalise_content(c, "uniform").norm(dim=1), torch.full((5,), 8 ** 0.5), atol=1e-4)
    m = _model()
    with torch.no_grad():
        m.fusion.weight.normal_()
        s = torch.randn(5, 16)
        fused = m.fuse(s, c)
        scale, shift = m.fusion(s).chunk(2, dim=1)
        assert torch.allclose(fused, n * scale + shift, atol=1e-5)
        # the content enters only normalised: its own scale and offset change nothing
        assert torch.allclose(m.generate(s, c), m.generate(s, 4 * c - 1), atol=1e-5)


def test_bottleneck_is_zero_at_the_capacity_and_grows_on_either_side():
    codes = torch.tensor([[1.0, 1.0]])  # squared norm 2
    assert float(bottleneck(codes, 2.0)) == 0.0
    assert float(bottleneck(codes, 1.0)) == float(bottleneck(codes, 3.0)) == 1.0
    assert scheduled((2.0, 5.0), 0, 100) == 2.0 and scheduled((2.0, 5.0), 50, 100) == 3.5
    assert scheduled((2.0, 5.0), 500, 100) == 5.0
    assert capacity("2:5") == (2.0, 5.0)
    from posecli.errors import UsageError

    for bad in ("5", "a:b", "-1:2", "inf:1"):
        with pytest.raises(UsageError, match="capacity"):
            capacity(bad)


def test_capacities_follow_the_schedule_in_training_and_survive_resume(tmp_path):
    opts = tiny_opts("cs", epochs=3, capacity_pose="0:8")
    full = run(tmp_path / "a", opts)
    caps = [h["capacity_pose"] for h in full.history if h["stage"] == "stage1"]
    assert caps == sorted(caps) and caps[0] < 2 and caps[-1] > 6
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", opts, stop_after=5)
    resumed = run(tmp_path / "b", opts, resume=True)
    caps = lambda t: [h["capacity_pose"] for h in t.history if h["stage"] == "stage1"]  # noqa: E731
    assert caps(resumed) == caps(full)


class _Features(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
        self.requires_grad_(False)

    def forward(self, x):
        h = self.a(x)
        return [h, self.b(h)]


def test_instance_discrimination_is_zero_for_identical_images_and_never_trains_the_features():
    torch.manual_seed(0)
    features = _Features()
    x = torch.rand(4, 3, 16, 16)
    assert float(instance_discrimination(features, x, x)) == 0.0
    mixed = torch.rand(4, 3, 16, 16, requires_grad=True)
    loss = instance_discrimination(features, mixed, x)
    loss.backward()
    assert float(loss.detach()) > 0 and mixed.grad is not None and mixed.grad.abs().sum() > 0
    assert all(p.grad is None for p in features.parameters())


def test_the_term_trains_the_generator_through_mixed_images(tmp_path, monkeypatch):
    import posecli.training.cs as cs

    monkeypatch.setattr(cs, "feature_network", lambda choice, *a, **k: (_Features(), "test features"))
    trainer = run(tmp_path, tiny_opts("cs", epochs=1, id_features="resnet18"))
    s1 = [h for h in trainer.history if h["stage"] == "stage1"]
    assert s1 and all(h["instance"] > 0 for h in s1)
    assert trainer.method.summary()["cs"]["id_features"] == "test features"


def test_offline_resnet_is_named_and_auto_pretrains_a_network_on_the_data_once(offline_no_downloads, caplog,
                                                                                 tmp_path):
    from posecli.errors import MissingWeightsError
    from posecli.training.cs import feature_network

    caplog.set_level(logging.INFO, logger="posecli")  # the notice is short; where the file goes is at -v
    data = blobs(n=32)
    with pytest.raises(MissingWeightsError, match="resnet18-f37072fd.pth"):
        feature_network("resnet18", data)
    net, ran = feature_network("auto", data, 0, 2, tmp_path)
    assert ran.startswith("npid") and "resnet18-f37072fd.pth" in caplog.text
    assert all(not p.requires_grad for p in net.parameters()) and not net.training
    cached = list(tmp_path.glob("id-features-*.safetensors"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    again, _ = feature_network("npid", data, 0, 2, tmp_path)  # the cache, not a second training
    assert cached[0].stat().st_mtime_ns == before
    x = data.images[:4].float() / 255
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(net(x), again(x)))
    assert feature_network("off", data) == (None, "off")


def test_npid_pretraining_learns_to_tell_images_apart():
    from posecli.training.npid import pretrain

    data = blobs(n=32)
    x = data.images.float() / 255
    torch.manual_seed(0)
    from posecli.training.npid import SmallFeatures

    net = pretrain(data.images, epochs=15, seed=0, batch_size=32)
    with torch.no_grad():
        before, after = SmallFeatures().eval().embed(x), net.embed(x)

    def margin(v):  # how much more an image resembles itself than the most similar other image
        sim = v @ v.t()
        return float((sim.diag() - (sim - 2 * torch.eye(len(v))).max(1).values).mean())

    assert margin(after) > margin(before)


def test_no_label_is_read_in_training(tmp_path):
    opts = tiny_opts("cs", epochs=2)
    a = run(tmp_path / "a", opts, blobs()).method
    data = blobs()
    data.labels = data.labels[torch.randperm(len(data.labels))]  # shuffled labels, the same images
    b = run(tmp_path / "b", opts, data).method
    for name in ("model", "style", "content"):
        for (k, x), y in zip(a.modules[name].state_dict().items(), b.modules[name].state_dict().values()):
            assert torch.equal(x, y), f"{name}.{k}"


@pytest.mark.parametrize("stage2", ["lord", "codes"])
def test_stage2_amortises_the_codes(tmp_path, stage2):
    trainer = run(tmp_path, tiny_opts("cs", epochs=4, stage2=stage2, lr_encoder=2e-3))
    s2 = [h for h in trainer.history if h["stage"] == "stage2"]
    assert s2[-1]["code_identity"] < s2[0]["code_identity"] and s2[-1]["code_pose"] < s2[0]["code_pose"]
    if stage2 == "codes":  # the paper's eq. 6: the generator stays as stage 1 left it
        assert "recon" not in s2[-1]


def test_cli_trains_on_a_flat_unlabelled_folder(runner, tiny_cars, tmp_path):
    from posecli.modelfile import load_model

    flat = tmp_path / "pile"
    flat.mkdir()
    for f in sorted(tiny_cars.glob("car_*/*.png")):
        shutil.copy(f, flat / f"{f.parent.name}_{f.name}")
    out = tmp_path / "cs.safetensors"
    args = [a for k, v in TINY_METHOD["cs"].items() for a in ("--opt", f"{k}={v}")]
    r = invoke(runner, ["train", flat, "-o", out, "--method", "cs", "--size", "32", "--epochs", "1",
                        "--batch-size", "16", "--loss", "lap", "--device", "cpu", "--json", *args])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["images"] == 64 and summary["identities"] == 1
    assert summary["cs"] == {"id_features": "off", "labels_used": False}  # --opt id_features=off
    assert load_model(out).method == "cs"
    # labelled data: the identities are ignored, in one line
    r = invoke(runner, ["train", tiny_cars, "-o", tmp_path / "cs2.safetensors", "--method", "cs", "--size", "32",
                        "--epochs", "1", "--batch-size", "16", "--loss", "lap", "--device", "cpu", *args])
    assert r.exit_code == 0, r.output
    assert "learns without labels: the 4 identities of the data are not used" in r.stderr
    # LORD needs them: a flat folder is one identity
    r = invoke(runner, ["train", flat, "-o", tmp_path / "l.safetensors", "--size", "32", "--epochs", "1",
                        "--batch-size", "16", "-q"])
    assert r.exit_code == 2 and "single identity" in r.output and "--method cs" in r.output


def test_a_manifest_without_identities_is_one_unlabelled_set(tiny_cars, tmp_path):
    from posecli.data.dataset import collect_sources

    manifest = tmp_path / "pile.csv"
    files = sorted(tiny_cars.glob("car_*/*.png"))[:5]
    manifest.write_text("path\n" + "".join(f"{f}\n" for f in files))
    sources = collect_sources([str(manifest)])
    assert [s.path for s in sources] == [str(f) for f in files] and {s.identity for s in sources} == {"pile"}
