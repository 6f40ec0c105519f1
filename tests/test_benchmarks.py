"""The benchmark scripts still run (tiny model, short clips); their numbers are in benchmarks/RESULTS.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_animate_fidelity_measures_against_ground_truth(tmp_path):
    from posecli.models.lord import LordConfig, LordModel

    bench = _script("animate_fidelity")
    yaw, pitch, mouth = bench.clip_path(2.0, 10.0, 0)
    assert len(yaw) == len(mouth) == 20 and mouth.max() > 0.3 and mouth.min() == 0.0  # it talks, with pauses
    torch.manual_seed(0)
    model = LordModel(LordConfig(image_size=32, identity_dim=8, pose_dim=8, width=0.125)).eval()
    rows = bench.run_pair(model, 0, 2.0, 10.0, (0.0, 0.25), tmp_path)
    assert set(rows) == {"copy identity", "copy driving", "animate --smooth 0", "animate --smooth 0.25"}
    assert 0 < rows["copy identity"]["mse"] < rows["copy driving"]["mse"]  # B's face is further from A's
    for k in ("animate --smooth 0", "animate --smooth 0.25"):
        r = rows[k]
        assert 0 < r["mse"] < 1 and 0 < r["ssim"] < 1 and -1 <= r["mouth"] <= 1 and np.isfinite(r["jitter"])
    assert len(list((tmp_path / "pair0_smooth0ms").glob("*.png"))) == 20


def test_report_appends_a_reproducible_section(tmp_path):
    report = _script("report")
    results = tmp_path / "RESULTS.md"
    report.append_section("demo bench", torch.device("cpu"), "| a | b |\n|---|---|", results)
    report.append_section("demo bench", torch.device("cpu"), "second", results)
    text = results.read_text()
    assert text.startswith("# Benchmark results") and text.count("# Benchmark results") == 1  # header once
    assert text.count("## demo bench (") == 2 and "| a | b |" in text and text.rstrip().endswith("second")
    assert "- hardware: " in text and "cores, torch" in text and "- commit: " in text and "- command: `python " in text
