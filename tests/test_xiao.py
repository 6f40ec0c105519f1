"""--method xiao: triplet mining, pixel verification, the D/G phases, EMA and the CLI."""

import json

import numpy as np
import pytest
import torch

from conftest import blobs, invoke
from test_core import TINY_METHOD, run, tiny_opts

from posecli.training.method import TrainData
from posecli.training.mining import Mining, kmeans, mine, nearest_other_group, pose_features
from posecli.training.xiao import pixel_verification_loss, verify

ARGS = ["--method", "xiao", "--size", "32", "--batch-size", "16", "--epochs", "2", "--loss", "lap"] + [
    a for k, v in TINY_METHOD["xiao"].items() for a in ("--opt", f"{k}={v}")]


def posed_blobs(ids=6, grid=4, seed=0):
    """Clips of a coloured blob (colour = identity) at known positions (pose = a grid cell),
    every identity in every pose, each frame with its own jitter: (TrainData, positions (N, 2))."""
    g = np.random.default_rng(seed)
    colours = g.uniform(60, 255, (ids, 3))
    yy, xx = np.mgrid[:32, :32]
    imgs, labels, pos = [], [], []
    for i in range(ids):
        for cy in np.linspace(8, 24, grid):
            for cx in np.linspace(8, 24, grid):
                y, x = cy + g.normal(0, 0.5), cx + g.normal(0, 0.5)
                blob = np.exp(-((yy - y) ** 2 + ((xx - x) / 1.6) ** 2) / 12.0)  # an ellipse: edges say where
                imgs.append((blob[None] * colours[i][:, None, None]).astype(np.uint8))
                labels.append(i)
                pos.append((y, x))
    n = len(labels)
    lab = torch.tensor(labels)
    data = TrainData(torch.from_numpy(np.stack(imgs)), lab, ids, key=f"posed{ids}-{grid}-{seed}",
                     clips=lab.clone(), frames=torch.arange(n) % (grid * grid))
    return data, np.array(pos)


@pytest.mark.parametrize("features", ["edges", "rotnet"])
def test_mined_neighbours_come_from_other_clips_and_are_closer_in_pose_than_random(tmp_path, features):
    data, pos = posed_blobs()
    m = mine(data, features, clusters=4, k=1, seed=0, rotnet_epochs=3, cache_dir=tmp_path, quiet=True)
    nb = m.neighbours[:, 0].numpy()
    assert (data.clips[nb] != data.clips).all()  # never the same clip
    dist_nb = np.linalg.norm(pos[nb] - pos, axis=1).mean()
    g = np.random.default_rng(1)
    other = np.array([g.choice(np.flatnonzero(data.clips.numpy() != c)) for c in data.clips.numpy()])
    dist_random = np.linalg.norm(pos[other] - pos, axis=1).mean()
    assert dist_nb < 0.5 * dist_random, (dist_nb, dist_random)
    # clusters cover all frames, none empty
    assert m.clusters.shape == (len(data),) and sorted(set(m.clusters.tolist())) == [0, 1, 2, 3]
    # cached: the second call reads the file, the same tables
    assert len(list(tmp_path.glob("mining-*.safetensors"))) == 1
    again = mine(data, features, clusters=4, k=1, seed=0, rotnet_epochs=3, cache_dir=tmp_path, quiet=True)
    assert torch.equal(again.neighbours, m.neighbours) and torch.equal(again.clusters, m.clusters)


def test_kmeans_and_knn_on_plain_vectors():
    f = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0.99, 0.1], [0, 1], [0.1, 0.99]]), dim=1)
    assert nearest_other_group(f, torch.tensor([0, 0, 1, 1]), 1).flatten().tolist() == [3, 3, 1, 1]
    a = kmeans(f, 2, seed=0)
    assert a[0] == a[1] and a[2] == a[3] and a[0] != a[2]


def test_triplet_draws_balance_the_targets_pose_clusters_and_never_pick_the_anchor():
    # one clip of 20 frames: 18 in pose cluster 0, 2 in cluster 1; another clip of 4 frames
    groups = torch.tensor([0] * 20 + [1] * 4)
    clusters = torch.tensor([0] * 18 + [1] * 2 + [0, 0, 1, 1])
    neighbours = torch.tensor([[20 + i % 4] for i in range(20)] + [[i] for i in range(4)])
    m = Mining(neighbours, clusters, groups, k=1)
    idx = torch.zeros(4000, dtype=torch.int64)  # anchor: frame 0 of clip 0
    partner = torch.ones(4000, dtype=torch.int64)
    out = m.draw(idx, torch.Generator().manual_seed(0), partner)
    target, pose = out["partner_idx"], out["other_idx"]
    assert (groups[target] == 0).all() and (target != 0).all()
    share = (clusters[target] == 1).float().mean()
    assert 0.45 < share < 0.55, share  # uniform over the clip's 2 clusters, not 2/20
    assert (groups[pose] == 1).all() and torch.equal(pose, neighbours[target, 0])


def test_pixel_verification_aligns_the_identity_image_and_sends_no_gradient_through_the_affinity():
    torch.manual_seed(0)
    x_id = torch.rand(2, 3, 8, 8)
    f = torch.randn(2, 64, 8, 8)
    assert torch.allclose(verify(f, f, x_id, 0.01), x_id, atol=1e-4)  # identical features: I'_id = I_id
    perm = torch.randperm(64)  # features of a shuffled image: I'_id is I_id shuffled the same way
    f_g = f.flatten(2)[:, :, perm].reshape(2, 64, 8, 8)
    want = x_id.flatten(2)[:, :, perm].reshape(2, 3, 8, 8)
    assert torch.allclose(verify(f_g, f, x_id, 0.01), want, atol=1e-4)
    g = torch.rand(2, 3, 8, 8, requires_grad=True)
    f_g, f_id = f.clone().requires_grad_(), f.clone().requires_grad_()
    loss = pixel_verification_loss(g, f_g, f_id, x_id, 0.01, 64)
    loss.backward()
    assert f_g.grad is None and f_id.grad is None  # the affinity is detached
    assert g.grad is not None and g.grad.abs().sum() > 0
    assert torch.allclose(loss, (x_id - g).abs().mean(), atol=1e-4)


def test_pixel_verification_pools_large_images_to_pvm_size():
    x = torch.rand(1, 3, 32, 32)
    f = torch.randn(1, 64, 32, 32)
    pooled = torch.nn.functional.adaptive_avg_pool2d
    assert torch.allclose(pixel_verification_loss(x, f, f, x, 0.01, 16),
                          (verify(pooled(f, 16), pooled(f, 16), pooled(x, 16), 0.01) - pooled(x, 16)).abs().mean())


def _step_once(trainer, t=0):
    """One real loop step (both phases); returns {phase: modules whose parameters received a
    gradient during its backward}, and the runs, stage and terms."""
    from posecli.training.loop import _PhaseRun
    from posecli.training.method import BATCH_KINDS

    stage = trainer.method.stages()[0]
    trainer._stage_i = 0
    stage.begin()
    runs = [_PhaseRun(ph, trainer.method, trainer.dist, False, False) for ph in stage.phases]
    trainer._make_ema(0, stage, None)
    current, seen = {}, {}
    for r in runs:
        def labelled(batch, _name=r.phase.name, _run=r.run):
            current["phase"] = _name
            return _run(batch)

        r.run = labelled
    for k, m in trainer.method.modules.items():
        for p in m.parameters():
            p.register_hook(lambda grad, _k=k: seen.setdefault(current["phase"], set()).add(_k))
    gen = torch.Generator().manual_seed(t)
    batch = trainer._batch(torch.arange(16), BATCH_KINDS[stage.batch], gen)
    batch.step = t
    terms = trainer._step(runs, stage, batch, t, 10)
    return seen, runs, stage, terms


def _trainer(tmp_path, **kw):
    from posecli.training import method_class
    from posecli.training.loop import Trainer
    from posecli.training.losses import ReconstructionLoss

    return Trainer(method_class("xiao"), blobs(), tiny_opts("xiao", epochs=1, **kw), tmp_path, torch.device("cpu"),
                   ReconstructionLoss("lap"), quiet=True)


def test_discriminators_and_generator_train_in_turn_with_their_own_parameters(tmp_path):
    trainer = _trainer(tmp_path)
    seen, runs, _, terms = _step_once(trainer)
    assert [r.phase.name for r in runs] == ["d", "g"]  # D first, then G against the updated D
    assert seen == {"d": {"d_real", "d_pair"}, "g": {"model"}}
    assert {"loss", "recon", "transfer", "pv", "gan", "aux", "d_loss", "d_real", "d_pair", "d_aux"} <= set(terms)


@pytest.mark.parametrize("decay", [0.9, 0.1])
def test_the_ema_copy_moves_towards_the_generator_at_its_rate(tmp_path, decay):
    from posecli.training.method import BATCH_KINDS

    trainer = _trainer(tmp_path, ema=decay)

    m = trainer.method
    _, runs, stage, _ = _step_once(trainer)
    p1 = {k: v.clone() for k, v in m.model.state_dict().items()}
    assert all(torch.equal(v, m.ema["model"].state_dict()[k]) for k, v in p1.items())  # the first update copies
    gen = torch.Generator().manual_seed(1)
    batch = trainer._batch(torch.arange(16, 32), BATCH_KINDS[stage.batch], gen)
    batch.step = 1
    trainer._step(runs, stage, batch, 1, 10)
    p2 = m.model.state_dict()
    ema = m.ema["model"].state_dict()
    w = "identity_encoder.layers.1.weight"
    assert not torch.equal(p1[w], p2[w])
    d = min(decay, 2 / 11)  # the second update: the warm-up's (1 + n) / (10 + n), at most the configured decay
    assert torch.allclose(ema[w], d * p1[w] + (1 - d) * p2[w], atol=1e-6)
    assert m.final_model() is m.ema["model"]


def test_xiao_refuses_data_without_two_clips_of_two_frames(tmp_path):
    from posecli.errors import UsageError

    one_each = blobs(n=8, ids=8)
    with pytest.raises(UsageError, match="at least 2 clips"):
        run(tmp_path, tiny_opts("xiao", epochs=1), data=one_each)


def test_train_xiao_from_a_folder_of_clips_through_the_cli(runner, tmp_path):
    from posecli.modelfile import load_model

    heads = tmp_path / "heads"
    r = invoke(runner, ["synth", "heads", heads, "--identities", "3", "--size", "32", "--yaws", "1", "--pitches", "1",
                        "--mouths", "1", "--video", "--clip-seconds", "2", "--fps", "10", "-q"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "x.safetensors"
    r = invoke(runner, ["train", heads / "videos", "-o", out, *ARGS, "--fps", "5", "--clip-seconds", "1", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["images"] == 30 and summary["identities"] == 6  # 3 videos x 2 clips of 5 frames
    work = tmp_path / "x.work"
    info = json.loads((work / "mining.json").read_text())
    assert info["clips"] == 6 and sum(info["cluster_sizes"]) == 30 and info["neighbours_from_other_clips"] == 1.0
    assert (work / "mining.png").is_file() and (work / "loss.png").is_file()
    model = load_model(out)
    assert model.method == "xiao" and model.meta["training"]["xiao"]["mining"]["features"] == "edges"
    frame = tmp_path / "f.png"
    from posecli.media.images import write_image

    write_image(frame, (np.random.default_rng(0).uniform(0, 255, (32, 32, 3))).astype(np.uint8))
    r = invoke(runner, ["swap", "--id", frame, "--pose", frame, "-m", out, "-o", tmp_path / "s.png", "-q"])
    assert r.exit_code == 0 and (tmp_path / "s.png").is_file(), r.output
    r = invoke(runner, ["encode", frame, "-m", out, "-o", tmp_path / "codes.npz", "-q"])
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "codes.npz") as z:
        assert z["identity"].shape[-1] == model.identity_dim == 8 * 2 * 16 * 16


def test_xiao_options_reject_bad_values(runner, tmp_path):
    from posecli.errors import UsageError
    from posecli.training.xiao import Options

    with pytest.raises(UsageError, match="ema"):
        Options(ema=1.0)
    with pytest.raises(UsageError, match="pose_features"):
        Options(pose_features=str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    from posecli.errors import ModelFileError

    with pytest.raises(ModelFileError, match="bad.safetensors"):
        Options(pose_features=str(bad))
    r = invoke(runner, ["train", tmp_path, "-o", tmp_path / "x.safetensors", "--method", "xiao", "--opt", "clusters=0"])
    assert r.exit_code == 2 and "clusters" in r.output


@pytest.mark.parametrize("size,n_down", [(32, 1), (64, 2), (128, 3)])
def test_networks_at_each_size_give_16x16_maps_and_images_in_range(size, n_down):
    from posecli.models.xiao import PairDiscriminator, RealFakeDiscriminator, XiaoConfig, XiaoModel

    cfg = XiaoConfig(image_size=size, width=0.0625, n_res=1)
    assert cfg.n_down == n_down and cfg.identity_dim == 4 * 2**n_down * 16 * 16
    m = XiaoModel(cfg).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        out = m.swap(x, x.flip(0))
        assert out.shape == (2, 3, size, size) and 0 <= out.min() and out.max() <= 1
        assert m.encode_pose(x).shape == (2, cfg.pose_dim)
        outs, logits = RealFakeDiscriminator(4, 5)(x)
        assert len(outs) == 2 and logits.shape == (2, 5)
        assert PairDiscriminator(4)(x, x).shape[:2] == (2, 1)
    assert not any(isinstance(mod, torch.nn.ConvTranspose2d) for mod in m.modules())
    with pytest.raises(ValueError, match="16 \\* a power of two"):
        XiaoConfig(image_size=48)


def test_more_neighbours_than_other_clips_have_stay_in_other_clips(tmp_path):
    data, _ = posed_blobs(ids=2, grid=2)  # 2 clips of 4 frames: 4 other-clip frames each
    m = mine(data, "edges", clusters=2, k=8, seed=0, rotnet_epochs=1, cache_dir=None, quiet=True)
    assert m.k == 4 and m.neighbours.shape[1] == 4
    assert (data.clips[m.neighbours] != data.clips[:, None]).all()
    out = m.draw(torch.arange(8), torch.Generator().manual_seed(0), (torch.arange(8) + 1) % 4 + 4 * (torch.arange(8) // 4))
    assert (data.clips[out["other_idx"]] != data.clips).all()


def test_pose_features_from_a_posecli_model_file(tiny_model_path, tmp_path):
    data, _ = posed_blobs(ids=3, grid=3)
    m = mine(data, str(tiny_model_path), clusters=3, k=1, seed=0, rotnet_epochs=1, cache_dir=tmp_path, quiet=True)
    assert (data.clips[m.neighbours[:, 0]] != data.clips).all() and m.clusters.shape == (len(data),)
    assert len(list(tmp_path.glob("mining-*.safetensors"))) == 1
