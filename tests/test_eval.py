"""posecli eval: metrics against known answers, oracle models, leakage probes, the CLI."""

from __future__ import annotations

import csv
import json
import logging
import urllib.error
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from conftest import invoke
from posecli.eval import evaluate
from posecli.eval import metrics as M
from posecli.eval.leakage import leakage, probe_accuracy, stratified_folds
from posecli.eval.transfer import load_images, read_labels, sample_pairs
from posecli.models.base import PoseModel

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 200, 40), (200, 60, 220)]
POSITIONS = [(2, 2), (14, 3), (4, 14), (13, 13), (8, 8), (1, 9)]


@pytest.fixture(autouse=True)
def offline_lpips(tmp_path, monkeypatch):
    """LPIPS as on a machine without internet: an empty TORCH_HOME and failing downloads."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url, *a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    M.reset_lpips()
    yield
    M.reset_lpips()


def make_shapes(root, identities=4, poses=5, size=24, skip=(), csv_name="labels.csv"):
    """A labelled set: identity = colour of a square, pose = its position. Returns the CSV path."""
    from posecli.media.images import write_image

    rows = []
    for c in range(identities):
        for p in range(poses):
            if (c, p) in skip:
                continue
            img = np.full((size, size, 3), 245, np.uint8)
            x, y = POSITIONS[p]
            img[y : y + 9, x : x + 9] = COLOURS[c]
            rel = f"id{c}/pose{p}.png"
            (root / f"id{c}").mkdir(parents=True, exist_ok=True)
            write_image(root / rel, img)
            rows.append({"path": rel, "identity": f"id{c}", "pose": f"p{p}", "extra": "x"})
    path = root / csv_name
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "identity", "pose", "extra"])
        w.writeheader()
        w.writerows(rows)
    return path


@dataclass(frozen=True)
class OracleConfig:
    image_size: int = 32
    identity_dim: int = 1
    pose_dim: int = 1


class Oracle(PoseModel):
    """Knows every image of the data: codes are label indices, generate looks the answer up.

    mode "truth": G(id, pose) = the real image of that identity in that pose.
    mode "copy_pose": the pose code is the image's own index, G returns that image.
    """

    method = "oracle"
    Config = OracleConfig

    def __init__(self, csv_path, mode="truth", size=32):
        super().__init__(OracleConfig(image_size=size))
        labels = read_labels(csv_path)
        self.pixels = load_images(labels, size)
        ids, poses, _, _ = labels.codes()
        self.lookup = {self.pixels[k].tobytes(): (ids[k], poses[k], k) for k in range(len(labels))}
        self.by_label = {(ids[k], poses[k]): k for k in range(len(labels))}
        self.mode = mode

    def _codes(self, x, which):
        from posecli.media.convert import to_pixels

        return torch.tensor([[float(self.lookup[p.tobytes()][which])] for p in to_pixels(x)], device=x.device)

    def encode_identity(self, x):
        return self._codes(x, 0)

    def encode_pose(self, x):
        return self._codes(x, 2 if self.mode == "copy_pose" else 1)

    def generate(self, identity, pose):
        from posecli.media.convert import to_tensor

        if self.mode == "copy_pose":
            idx = [int(p) for p in pose[:, 0]]
        else:
            idx = [self.by_label[(int(i), int(p))] for i, p in zip(identity[:, 0], pose[:, 0])]
        return to_tensor(self.pixels[idx], identity.device)


# --- metrics ---------------------------------------------------------------

def test_mse_psnr_known_values():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(M.mse(x, x), torch.zeros(3))
    assert torch.allclose(M.psnr(x, x), torch.full((3,), M.PSNR_CAP))
    a, b = torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.1)
    assert torch.allclose(M.mse(a, b), torch.full((2,), 0.01))
    assert torch.allclose(M.psnr(a, b), torch.full((2,), 20.0))
    # per image, not pooled: one exact copy (cap) and one at 20 dB
    assert torch.allclose(M.psnr(torch.cat([a[:1], a[:1]]), torch.cat([a[:1], b[:1]])), torch.tensor([100.0, 20.0]))
    with pytest.raises(ValueError):
        M.mse(a, b[:, :, :4])


def test_ssim_identity_noise_and_hand_case():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g)
    assert torch.allclose(M.ssim(x, x), torch.ones(2), atol=1e-6)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 36, 36, generator=g), 5, 1)
    noisy = (smooth + 0.3 * torch.randn(smooth.shape, generator=g)).clamp(0, 1)
    assert (M.ssim(smooth, noisy) < 0.7).all()
    # constant images: no variance, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, 0.6, 0.01**2
    got = M.ssim(torch.full((1, 3, 20, 20), a), torch.full((1, 3, 20, 20), b))
    assert got.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)
    # images smaller than the 11x11 window still work
    assert M.ssim(x[:, :, :5, :5], x[:, :, :5, :5]).allclose(torch.ones(2))


def test_ssim_matches_skimage():
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 24, 24, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = skm.structural_similarity(x[0].permute(1, 2, 0).numpy(), y[0].permute(1, 2, 0).numpy(), channel_axis=2,
                                    data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert M.ssim(x, y).item() == pytest.approx(ref, abs=1e-5)


def test_lpips_offline_is_none_with_one_warning(caplog, tmp_path):
    x = torch.rand(2, 3, 32, 32)
    with caplog.at_level(logging.INFO, logger="posecli"):
        assert M.lpips_distance(x, x) is None
        assert M.lpips_distance(x, x) is None  # loaded (and failed) once
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one short line; where to put the file with -v (INFO)
    short = warnings[0].getMessage()
    assert "LPIPS unavailable" in short and "(-v: how to get the file)" in short and len(short) < 140
    msg = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert "alexnet-owt-7be5be79.pth" in msg and str(tmp_path / "torch_home" / "hub" / "checkpoints") in msg
    assert "\n" not in short
    _, target = M.lpips_backbone_file()
    assert target == str(tmp_path / "torch_home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    assert M.lpips_unavailable_reason()


def test_lpips_path_with_an_injected_module():
    """Plumbing only (upsampling of small images, shapes): a random-backbone LPIPS stands in."""
    lpips = pytest.importorskip("lpips")
    torch.manual_seed(0)
    M._LPIPS.update(tried=True, model=lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval(), reason=None)
    x, y = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    d = M.lpips_distance(x, y)
    assert d.shape == (3,) and (d > 0).all()
    assert torch.allclose(M.lpips_distance(x, x), torch.zeros(3), atol=1e-6)


# --- data and pairs ----------------------------------------------------------

def test_sample_pairs_valid_distinct_deterministic():
    ident = np.repeat(np.arange(4), 5)
    pose = np.tile(np.arange(5), 4)
    keep = ~((ident == 0) & (pose == 3))  # identity 0 never seen in pose 3
    ident, pose = ident[keep], pose[keep]
    everything = sample_pairs(ident, pose, 10_000, seed=0)
    # j pairs with every image (any pose) of each other identity that has an image in pose[j]
    has = {(c, p) for c, p in zip(ident.tolist(), pose.tolist())}
    expected = sum(1 for j in range(len(pose)) for i in range(len(pose))
                   if ident[i] != ident[j] and (ident[i], pose[j]) in has)
    assert len(everything) == expected
    for n in (7, 40):  # the "list all" and the "draw" branches
        a, b = sample_pairs(ident, pose, n, seed=3), sample_pairs(ident, pose, n, seed=3)
        assert np.array_equal(a, b) and len(a) == n
        assert len({(i, j) for i, j, _ in a.tolist()}) == n
        for i, j, g in a.tolist():
            assert ident[i] != ident[j] and ident[g] == ident[i] and pose[g] == pose[j]
            assert not (ident[i] == 0 and pose[j] == 3)
    assert not np.array_equal(sample_pairs(ident, pose, 7, seed=3), sample_pairs(ident, pose, 7, seed=4))
    # no shared pose: nothing to compare with
    assert len(sample_pairs(np.array([0, 1]), np.array([0, 1]), 10)) == 0


def test_read_labels_errors(tmp_path):
    from posecli.errors import InputError

    with pytest.raises(InputError, match="no labels.csv"):
        read_labels(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,identity\na.png,x\n")
    with pytest.raises(InputError, match="missing column.*path.*pose"):
        read_labels(bad)
    one = tmp_path / "one.csv"
    one.write_text("path,identity,pose\na.png,x,1\nb.png,x,2\n")
    with pytest.raises(InputError, match="only one identity"):
        read_labels(one)


# --- oracles -----------------------------------------------------------------

def test_oracle_transfer_is_exact_and_beats_copying(tmp_path):
    data = make_shapes(tmp_path / "d", size=32)
    rep = evaluate(Oracle(data), data, pairs=200, seed=0, leakage=False)
    t = rep["transfer"]
    assert rep["pairs"] == 200  # of 20 * 15 valid ordered pairs
    assert t["mse"]["swap"] == 0.0 and t["psnr"]["swap"] == M.PSNR_CAP
    assert t["ssim"]["swap"] == pytest.approx(1.0, abs=1e-6)
    assert t["mse"]["swap"] < min(t["mse"]["copy_pose"], t["mse"]["copy_identity"])
    assert t["ssim"]["swap"] > max(t["ssim"]["copy_pose"], t["ssim"]["copy_identity"])
    assert rep["transfer_mse_over_best_copy"] == 0.0
    assert rep["reconstruction"]["mse"] == 0.0 and rep["reconstruction"]["images"] == 20
    assert t["lpips"] == {"swap": None, "copy_pose": None, "copy_identity": None}
    assert rep["lpips_available"] is False and rep["leakage"] is None


def test_copy_pose_oracle_matches_copy_pose_baseline(tmp_path):
    data = make_shapes(tmp_path / "d", size=32)
    rep = evaluate(Oracle(data, mode="copy_pose"), data, pairs=30, seed=1, leakage=False)
    t = rep["transfer"]
    for m in ("mse", "psnr", "ssim"):
        assert t[m]["swap"] == pytest.approx(t[m]["copy_pose"], abs=1e-7)
    assert rep["transfer_mse_over_best_copy"] >= 1.0 - 1e-9  # copying the pose image is no better than copying
    assert t["mse"]["swap_to_pose"] == pytest.approx(0.0, abs=1e-9)  # the collapse shows: it is the pose image
    exact = evaluate(Oracle(data), data, pairs=30, seed=1, leakage=False)["transfer"]["mse"]
    assert exact["swap_to_pose"] == pytest.approx(exact["copy_pose"], abs=1e-7)  # as far from it as the truth


# --- leakage -----------------------------------------------------------------

def test_leakage_perfect_and_random_codes():
    rng = np.random.default_rng(0)
    ident = np.repeat(np.arange(10), 30)
    pose = np.tile(np.arange(6), 50)
    leaky_pose = np.eye(10)[ident] + 0.05 * rng.standard_normal((300, 10))  # pose codes = identity
    random_id = rng.standard_normal((300, 16))
    rep = leakage(random_id, leaky_pose, ident, pose, seed=0)
    assert rep["identity_from_pose"]["accuracy"] >= 0.95
    assert rep["identity_from_pose"]["chance"] == pytest.approx(0.1)
    assert rep["pose_from_identity"]["accuracy"] <= rep["pose_from_identity"]["chance"] + 0.2
    assert rep["identity_from_pose"]["test"] == 300 and rep["pose_from_identity"]["classes"] == 6  # every code tested once
    again = leakage(random_id, leaky_pose, ident, pose, seed=0)
    assert again == rep  # deterministic for a seed


def test_stratified_folds_and_degenerate_cases():
    labels = np.array([0] * 10 + [1] * 5 + [2])
    fold = stratified_folds(labels, folds=5, seed=0)
    assert fold[15] == -1  # the singleton class is never tested
    assert np.bincount(fold[labels == 0], minlength=5).tolist() == [2] * 5  # dealt evenly
    assert np.bincount(fold[labels == 1], minlength=5).tolist() == [1] * 5
    single = probe_accuracy(np.zeros((3, 2)), np.array([0, 1, 2]))  # no class can be tested
    assert single["accuracy"] is None and single["test"] == 0


def test_probe_sees_no_test_code_when_training():
    # each code's label is only predictable from itself (a unique one-hot feature per
    # code): a probe that trained on the code it tests would score ~1, a sound one ~chance
    labels = np.repeat(np.arange(4), 25)
    codes = np.eye(100)[np.random.default_rng(0).permutation(100)]
    rep = probe_accuracy(codes, labels, seed=0)
    assert rep["test"] == 100 and rep["chance"] == pytest.approx(0.25)
    assert rep["accuracy"] <= 0.45


# --- CLI ---------------------------------------------------------------------

def test_cli_json_text_and_report_file(runner, tiny_model_path, tmp_path):
    data = make_shapes(tmp_path / "d", size=24)  # not the model's 32 px: resized
    res = invoke(runner, ["eval", tmp_path / "d", "-m", tiny_model_path, "--pairs", 20, "--device", "cpu",
                          "--json", "-o", tmp_path / "r.json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    for key in ("transfer", "transfer_mse_over_best_copy", "reconstruction", "leakage", "pairs", "images"):
        assert key in rep
    assert set(rep["transfer"]) == {"mse", "psnr", "ssim", "lpips"}
    assert set(rep["transfer"]["mse"]) == {"swap", "copy_pose", "copy_identity", "swap_to_pose"}
    assert rep["transfer"]["lpips"]["swap"] is None and rep["pairs"] == 20
    assert rep["leakage"]["identity_from_pose"]["classes"] == 4
    # one short warning line on stderr (the file's name with -v); torch.hub's "Downloading" (printed to
    # stdout) is kept out of the JSON
    assert "LPIPS unavailable" in res.stderr and "(-v: how to get the file)" in res.stderr
    assert "Downloading" not in res.output
    assert json.loads((tmp_path / "r.json").read_text()) == rep
    # an existing report is not overwritten without --overwrite
    again = invoke(runner, ["eval", data, "-m", tiny_model_path, "-o", tmp_path / "r.json", "--no-leakage"])
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    text = invoke(runner, ["eval", data, "-m", tiny_model_path, "--pairs", 10, "--no-leakage", "--device", "cpu"])
    assert text.exit_code == 0, text.output
    assert "copy pose" in text.stdout and "LPIPS" in text.stdout and "n/a" in text.stdout
    assert "leakage" not in text.stdout


@pytest.mark.parametrize("case", ["no_labels", "single_identity", "missing_columns", "no_ground_truth"])
def test_cli_bad_data_one_line(runner, tiny_model_path, tmp_path, case):
    d = tmp_path / "d"
    if case == "no_labels":
        d.mkdir()
    elif case == "single_identity":
        make_shapes(d, identities=1)
    elif case == "missing_columns":
        d.mkdir()
        (d / "labels.csv").write_text("path,id,view\na.png,x,1\n")
    else:  # identity 0 only in poses 0-1, identity 1 only in poses 2-3
        make_shapes(d, identities=2, poses=4, skip={(0, 2), (0, 3), (1, 0), (1, 1)})
    res = invoke(runner, ["eval", d, "-m", tiny_model_path, "--device", "cpu"])
    assert res.exit_code in (1, 2)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posecli: error:") and "internal error" not in lines[0]
    assert res.stdout == ""


def test_cli_requires_model(runner, tmp_path):
    make_shapes(tmp_path / "d")
    res = invoke(runner, ["eval", tmp_path / "d"])
    assert res.exit_code == 2


def test_posecli_offline_never_tries_the_lpips_download(offline_no_downloads):
    from posecli.eval import metrics

    metrics.reset_lpips()
    try:
        assert metrics.get_lpips() is None
        assert "POSECLI_OFFLINE" in metrics.lpips_unavailable_reason()
    finally:
        metrics.reset_lpips()
