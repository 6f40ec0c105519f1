"""Training: losses fall, stage 2 learns the stage-1 codes, resume is exact, bad data is refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from posecli.training.loop import Trainer
from posecli.training.lord import Method as LordMethod, Options as LordOptions, Stage2
from posecli.training.losses import ReconstructionLoss
from posecli.training.method import Batch, TrainData
from posecli.training.options import TrainOptions

from conftest import blobs, invoke

TINY = dict(image_size=32, batch_size=16, loss="lap", log_every=2)
TINY_LORD = dict(width=0.125, identity_dim=16, pose_dim=8)


def lord_opts(epochs=1, shared=None, **method) -> TrainOptions:
    return TrainOptions(epochs=epochs, **{**TINY, **(shared or {})},
                        method_options=LordOptions(**{**TINY_LORD, **method}))


_data = blobs


def _train(tmp: Path, opts: TrainOptions, data: TrainData, stop_after=None, resume=False):
    trainer = Trainer(LordMethod, data, opts, tmp, torch.device("cpu"), ReconstructionLoss(opts.loss), quiet=True,
                      stop_after_steps=stop_after)
    trainer.run(resume=resume)
    return trainer.method, trainer


def _method(opts: TrainOptions, data: TrainData) -> LordMethod:
    torch.manual_seed(opts.seed)
    return LordMethod(opts, data, ReconstructionLoss(opts.loss))


def _batch(data: TrainData, idx: torch.Tensor) -> Batch:
    return Batch(idx, data.images[idx].float() / 255, data.labels[idx], torch.Generator().manual_seed(0))


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_stage2_code_loss_is_relative_to_each_tables_spread(scale):
    # an encoder that always answers its table's mean explains none of the table:
    # its code error is ~1 whatever the table's scale. (An unscaled MSE made the
    # identity term vanish, since that table stays tiny, and the identity encoder
    # was free to ignore it.)
    data = _data()
    method = _method(lord_opts(), data)
    with torch.no_grad():
        method.identity_table.weight.mul_(scale)
        method.pose_table.weight.mul_(scale)
    method._stage2_begin()  # the stage starts: the tables' spread is fixed
    n = len(data.images)
    id_mean = method.identity_table.weight.mean(0).detach()
    pose_mean = method.pose_table.weight.mean(0).detach()
    method.model.encode_identity = lambda x: id_mean.expand(len(x), -1)
    method.model.encode_pose = lambda x: pose_mean.expand(len(x), -1)
    objective = Stage2(method.model, method.identity_table, method.pose_table, method.recon, 10.0)
    terms = objective(_batch(data, torch.arange(n)))
    assert float(terms["code_identity"]) == pytest.approx(1.0, abs=1e-4)
    assert float(terms["code_pose"]) == pytest.approx(1.0, abs=1e-4)


def test_stage1_loss_falls_and_stage2_codes_approach_targets(tmp_path):
    opts = lord_opts(6, lr_encoder=2e-3)
    method, trainer = _train(tmp_path, opts, _data())
    s1 = [h for h in trainer.history if h["stage"] == "stage1"]
    s2 = [h for h in trainer.history if h["stage"] == "stage2"]
    assert s1[-1]["recon"] < 0.8 * s1[0]["recon"]
    # relative errors (1 = the table's mean): the identity codes are learnable here; the
    # pose codes of these 6-epoch tables are still mostly their random start
    assert s2[-1]["code_identity"] < 0.5 * s2[0]["code_identity"]
    assert s2[-1]["code_pose"] < 0.8 * s2[0]["code_pose"]
    # the encoders now regress the stage-1 tables
    data = _data()
    x = data.images.float() / 255
    with torch.no_grad():
        m = method.model
        for enc, table, target in ((m.encode_pose, method.pose_table, method.pose_table.weight),
                                   (m.encode_identity, method.identity_table, method.identity_table(data.labels))):
            assert (enc(x) - target).pow(2).mean() < table.weight.var(0).mean()
    assert (tmp_path / "loss.png").is_file()
    assert (tmp_path / "samples" / "stage1_epoch006.png").is_file()
    assert (tmp_path / "samples" / "stage2_epoch006.png").is_file()


@pytest.mark.parametrize("stop_after", [5, 12, 14])  # mid-epoch stage 1, epoch edge, stage 2
def test_resume_gives_the_same_weights(tmp_path, stop_after):
    opts = lord_opts(2)  # 4 steps/epoch: 8 steps each stage
    full, _ = _train(tmp_path / "a", opts, _data())
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", opts, _data(), stop_after=stop_after)
    resumed, _ = _train(tmp_path / "b", opts, _data(), resume=True)
    for name, module in full.modules.items():
        for (k, a), b in zip(module.state_dict().items(), resumed.modules[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"


def test_existing_checkpoint_needs_resume_and_matching_options(tmp_path):
    from posecli.errors import PoseCliError

    opts = lord_opts(1)
    _train(tmp_path, opts, _data())
    with pytest.raises(PoseCliError, match="--resume"):
        _train(tmp_path, opts, _data())
    with pytest.raises(PoseCliError, match="other data or options"):
        _train(tmp_path, lord_opts(1, {"seed": 5}), _data(), resume=True)
    with pytest.raises(PoseCliError, match="other data or options"):
        _train(tmp_path, lord_opts(1), _data(n=48), resume=True)
    # --epochs may grow (issue 16 #5): tests/test_user_errors.py extends a finished run
    with pytest.raises(PoseCliError, match="other data or options"):  # the method's options count too
        _train(tmp_path, lord_opts(1, noise_std=0.5), _data(), resume=True)
    # how often to checkpoint or log does not change the weights: resuming with other values is fine
    _train(tmp_path, lord_opts(1, {"checkpoint_minutes": 1.0, "log_every": 3}), _data(), resume=True)


def test_loss_kinds():
    x = torch.rand(2, 3, 32, 32)
    for kind in ("lap", "l1"):
        loss = ReconstructionLoss(kind)
        assert loss(x, x).item() == 0.0
        assert loss(x, x.flip(-1)).item() > 0.0


def test_auto_loss_falls_back_offline(monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="posecli")  # the notice is short; where the file goes is at -v
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached VGG weights here
    import posecli.training.losses as losses

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    loss = losses.ReconstructionLoss("auto")
    assert loss.kind == "lap"
    assert "vgg16-397923af.pth" in caplog.text
    from posecli.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        losses.ReconstructionLoss("vgg")


# -- the CLI end to end ----------------------------------------------------------

@pytest.fixture
def cars(tiny_cars):
    return tiny_cars


TRAIN_ARGS = ["--size", "32", "--epochs", "1", "--batch-size", "16", "--opt", "width=0.125", "--opt", "identity_dim=16",
              "--opt", "pose_dim=8", "--loss", "lap", "--device", "cpu", "-q"]


def test_cli_train_writes_model_and_work_folder(runner, cars, tmp_path):
    from posecli.modelfile import load_model

    out = tmp_path / "m.safetensors"
    r = invoke(runner, ["train", cars, "-o", out, "--json", *TRAIN_ARGS, "--noise-std", "0.3", "--pose-decay", "0.01"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["images"] == 64 and summary["identities"] == 4 and summary["loss"] == "lap"
    # the aliases of a release ago still set the method's options
    assert summary["options"]["method_options"]["noise_std"] == 0.3
    assert summary["options"]["method_options"]["pose_decay"] == 0.01
    assert summary["options"]["batch_size"] == 16 and summary["world_size"] == 1
    model = load_model(out)
    assert model.image_size == 32 and model.meta["training"]["epochs"] == [1, 1]
    work = tmp_path / "m.work"
    assert (work / "checkpoint.pt").is_file() and list((work / "cache").glob("data-*.npz"))
    # the model exists: refused without --overwrite, nothing changed
    before = out.read_bytes()
    r = invoke(runner, ["train", cars, "-o", out, *TRAIN_ARGS])
    assert r.exit_code == 1 and "exists" in r.output and out.read_bytes() == before


def test_cli_train_bad_data(runner, tmp_path, cars):
    empty = tmp_path / "empty"
    empty.mkdir()
    single = tmp_path / "single"
    (single / "only").mkdir(parents=True)
    import shutil

    for f in sorted((cars / "car_0000").glob("*.png"))[:20]:
        shutil.copy(f, single / "only" / f.name)
    for data, msg in ((empty, "no identity subfolders"), (single, "single identity"),
                      (tmp_path / "missing", "no such file")):
        out = tmp_path / "x.safetensors"
        r = invoke(runner, ["train", data, "-o", out, *TRAIN_ARGS])
        assert r.exit_code in (1, 2), r.output
        assert msg in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1
        assert not out.exists() and not (tmp_path / "x.work").exists()  # a run that cannot start leaves nothing
    r = invoke(runner, ["train", cars, "-o", tmp_path / "y.safetensors", *TRAIN_ARGS[:-1], "--batch-size", "500"])
    assert r.exit_code == 2 and "fewer than --batch-size" in r.output and not (tmp_path / "y.work").exists()
    r = invoke(runner, ["train", cars, "-o", tmp_path / "y.safetensors", *TRAIN_ARGS, "--loss", "bogus"])
    assert r.exit_code == 2 and "--loss bogus: expected one of" in r.output and not (tmp_path / "y.work").exists()
    out = tmp_path / "z.safetensors"
    r = invoke(runner, ["train", cars, "-o", out, *TRAIN_ARGS, "--stage2-generator", "thawed"])
    assert r.exit_code == 2 and "stage2_generator=thawed" in r.output and not out.exists()
    for args, msg in ((["--noise-std", "-1"], "--opt noise_std=-1.0: expected a finite number >= 0"),
                      (["--opt", "pose_decay=nan"], "--opt pose_decay=nan: expected a finite number"),
                      (["--opt", "noise_std=abc"], "--opt noise_std=abc: could not convert"),
                      (["--opt", "stage2_epochs=1.5"], "--opt stage2_epochs=1.5: invalid literal for int"),
                      (["--opt", "noise"], "--opt noise: expected NAME=VALUE"),
                      (["--opt", "noise=1"], "--opt noise: not an option of --method lord (valid: stage2_epochs=None,"),
                      (["--opt", "noise_std=1", "--noise-std", "2"], "--noise-std and --opt noise_std both set"),
                      (["--opt", "noise_std=1", "--opt", "noise_std=2"], "--opt noise_std: given twice"),
                      (["--method", "gan"], "--method gan: unknown (available: ")):
        r = invoke(runner, ["train", cars, "-o", out, *TRAIN_ARGS, *args])
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output and len(r.output.strip().splitlines()) == 1, (args, r.output)
        assert not out.exists()


def test_cli_train_resume_overwrite_and_finished_runs(runner, cars, tmp_path):
    out = tmp_path / "m.safetensors"
    r = invoke(runner, ["train", cars, "-o", out, *TRAIN_ARGS, "--resume"])
    assert r.exit_code == 1 and "--resume: no checkpoint here" in r.output and not out.exists()
    from safetensors.torch import load_file

    r = invoke(runner, ["train", cars, "-o", out, *TRAIN_ARGS])
    assert r.exit_code == 0, r.output
    first = load_file(str(out))

    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # the same command again: the model and the checkpoint are there
    r = invoke(runner, ["train", cars, "-o", out, *TRAIN_ARGS])
    assert r.exit_code == 1 and "exists" in r.output
    # --overwrite starts afresh (same seed: the same model)
    r = invoke(runner, ["train", cars, "-o", out, *TRAIN_ARGS[:-1], "--overwrite"])
    assert r.exit_code == 0, r.output
    assert "starting afresh" in r.stderr and same(load_file(str(out)), first)
    # --resume of a finished run writes its model again and says so
    r = invoke(runner, ["train", cars, "-o", out, *TRAIN_ARGS[:-1], "--resume", "--overwrite"])
    assert r.exit_code == 0 and "finished run" in r.stderr and same(load_file(str(out)), first)


def test_cli_train_skips_corrupt_files_unless_strict(runner, tmp_path, cars):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(cars, data)
    (data / "car_0001" / "broken.png").write_text("not a png")
    out = tmp_path / "m.safetensors"
    r = invoke(runner, ["train", data, "-o", out, "--strict", *TRAIN_ARGS])
    assert r.exit_code == 1 and "broken.png" in r.output and not out.exists()
    r = invoke(runner, ["train", data, "-o", out, "--json", *TRAIN_ARGS[:-1]])
    assert r.exit_code == 0, r.output
    assert "broken.png" in r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["skipped"] == 1


def test_bf16_on_cpu_trains_and_resumes_in_fp32(tmp_path):
    """--precision bf16 (autocast + channels_last) on CPU; weights stay fp32 and load anywhere."""
    opts = lord_opts(3, {"precision": "bf16"})
    data = _data()
    method, trainer = _train(tmp_path, opts, data)
    assert trainer.precision == "bf16"
    s1 = [h for h in trainer.history if h["stage"] == "stage1"]
    assert s1[-1]["recon"] < s1[0]["recon"]
    assert all(p.dtype == torch.float32 for p in method.model.parameters())
    x = data.images[:4].float() / 255
    assert method.model.reconstruct(x).shape == (4, 3, 32, 32)


def test_cli_train_from_videos_clips_and_manifest(runner, tmp_path):
    from posecli.data.dataset import load_image_set

    heads = tmp_path / "heads"
    r = invoke(runner, ["synth", "heads", heads, "--identities", "2", "--size", "32", "--yaws", "2", "--pitches", "1",
                        "--mouths", "1", "--video", "--clip-seconds", "2", "--fps", "10", "-q"])
    assert r.exit_code == 0, r.output
    videos = sorted((heads / "videos").glob("*.mp4"))
    assert len(videos) == 2
    # each video one identity; --clip-seconds 1 splits each 2 s clip into two identities
    data = load_image_set([str(v) for v in videos], size=32, fps=5, clip_seconds=1)
    assert len(data.names) == 4 and len(data) == 20
    assert sorted(data.names)[0].endswith("_clip000")
    out = tmp_path / "v.safetensors"
    r = invoke(runner, ["train", *videos, "-o", out, "--fps", "5", "--clip-seconds", "1",
                        *[a if a != "16" else "8" for a in TRAIN_ARGS], "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["identities"] == 4
    # a folder of videos, or a quoted glob of them: one identity each, the same set
    from posecli.data.dataset import collect_sources
    from posecli.errors import InputError

    by_files = collect_sources([str(v) for v in videos])
    assert collect_sources([str(heads / "videos")]) == by_files == collect_sources([str(heads / "videos" / "*.mp4")])
    assert [s.identity for s in by_files] == [v.stem for v in videos]
    with pytest.raises(InputError, match="glob matches no file"):
        collect_sources([str(heads / "videos" / "*.webm")])
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(InputError, match="no videos"):
        collect_sources([str(empty)])
    # images given as files or a glob take their identity from their folder; a glob of
    # dataset folders reads each folder as if given alone
    by_folder = collect_sources([str(heads)])
    stills = collect_sources([str(heads / "head_*" / "*.png")])
    assert stills == [s for s in by_folder if s.kind == "image"] and {s.identity for s in stills} == {"head_0000", "head_0001"}
    assert collect_sources([str(tmp_path / "hea*")]) == by_folder
    with pytest.raises(InputError, match="an image or a .csv manifest"):
        collect_sources([str(heads / "synth.json")])
    # a CSV manifest mixing images of two identities
    manifest = tmp_path / "m.csv"
    rows = ["path,identity"] + [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(heads.glob("head_*/*.png"))]
    manifest.write_text("\n".join(rows) + "\n")
    data = load_image_set([str(manifest)], size=32)
    assert len(data.names) == 2 and len(data) == 4


def test_video_without_frames_is_listed_and_skipped(tmp_path):
    from posecli.data.dataset import load_image_set
    from posecli.errors import InputError

    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    with pytest.raises(InputError, match="empty.mp4"):
        load_image_set([str(bad)], size=32, strict=True)
    with pytest.raises(InputError, match="no readable images"):
        load_image_set([str(bad)], size=32)


def test_posecli_offline_never_tries_the_vgg_download(offline_no_downloads):
    assert ReconstructionLoss("auto").kind == "lap"


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_stage2_trains_the_generator_only_when_asked(mode):
    data = _data()
    method = _method(lord_opts(stage2_generator=mode), data)
    opt = method._stage2_optimizer()
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    m = method.model
    gen = list(m.generator.parameters()) + list(m.modulation.parameters())
    enc = list(m.identity_encoder.parameters()) + list(m.pose_encoder.parameters())
    assert all(id(p) in trained for p in enc)
    assert all((id(p) in trained) == (mode == "finetune") for p in gen)


def test_encoders_predict_standardised_codes_and_old_files_still_load(tmp_path):
    from posecli.modelfile import load_model, save_model
    from safetensors.torch import load_file, save_file

    data = _data()
    m = _method(lord_opts(), data).model
    ids, poses = torch.randn(5, 16) * 0.01 + 3.0, torch.randn(40, 8) * 2.0 - 1.0
    m.set_code_statistics(ids, poses)
    assert torch.allclose(m.identity_mean, ids.mean(0)) and torch.allclose(m.pose_scale, poses.std(0, correction=0))
    x = data.images[:4].float() / 255
    with torch.no_grad():
        z = m.identity_encoder(x)
        assert torch.allclose(m.encode_identity(x), ids.mean(0) + ids.std(0, correction=0) * z, atol=1e-5)
    # a model file written before the statistics existed loads with the identity map
    path = save_model(tmp_path / "m.safetensors", m)
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.endswith(("_mean", "_scale"))}
    from posecli.modelfile import read_header
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=read_header(path)["__metadata__"])
    old = load_model(tmp_path / "old.safetensors")
    assert torch.equal(old.identity_mean, torch.zeros(16)) and torch.equal(old.pose_scale, torch.ones(8))
    with torch.no_grad():
        assert torch.allclose(old.encode_pose(x), m.pose_encoder(x), atol=1e-5)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 0}, {"precision": "fp8"}])
def test_train_options_reject_bad_values_for_library_callers_too(bad):
    from posecli.errors import UsageError

    (key, value), = bad.items()
    with pytest.raises(UsageError, match=f"--{key.replace('_', '-')} {value}"):
        TrainOptions(**bad)


@pytest.mark.parametrize("bad", [{"stage2_epochs": 0}, {"lr_latent": 0.0}, {"lr_generator": float("nan")},
                                 {"noise_std": -1.0}, {"pose_decay": float("inf")}, {"stage2_generator": "thawed"},
                                 {"ema": 1.0}, {"width": 0.0}])
def test_lord_options_reject_bad_values_for_library_callers_too(bad):
    from posecli.errors import UsageError

    (key, value), = bad.items()
    with pytest.raises(UsageError, match=f"--opt {key}={value}"):
        LordOptions(**bad)


def test_list_opts_prints_every_option_with_default_and_help(runner):
    import dataclasses

    r = invoke(runner, ["train", "--method", "lord", "--list-opts"])
    assert r.exit_code == 0, r.output
    for f in dataclasses.fields(LordOptions):
        line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith(f.name + " "))
        assert f"default {f.default!r}" in line and f.metadata["help"] in line
    r = invoke(runner, ["train", "-o", "x.safetensors"])
    assert r.exit_code == 2 and "missing DATA" in r.output
