"""CUDA against CPU, for every registered method (marker ``cuda``; skipped without a GPU).

Run by ``make gpu-check``. Tolerances: fp32 with TF32 off, the loss terms of three
training steps within 1e-3 relative of CPU's (cuDNN picks other algorithms: sums in
another order); inference within 1e-4 absolute in fp32 and 3e-2 under bf16 autocast.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from posecli.training import METHODS, method_class
from posecli.training.loop import Trainer, _PhaseRun
from posecli.training.losses import ReconstructionLoss
from posecli.training.method import BATCH_KINDS

from test_core import blobs, tiny_opts

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")]


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _three_steps(method: str, device: torch.device) -> list[dict[str, float]]:
    """The loss terms of three training steps of each stage (the same batches and noise:
    the generator stays on the CPU)."""
    data = blobs()
    data = type(data)(data.images.to(device), data.labels.to(device), data.n_identities, data.key)
    opts = tiny_opts(method, shared={"precision": "fp32"})
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(method_class(method), data, opts, Path(tmp), device, ReconstructionLoss("lap").to(device), quiet=True)
        for stage in t.method.stages():
            stage.begin()
            runs = [_PhaseRun(ph, t.method, t.dist, False, False) for ph in stage.phases]
            for step in range(3):
                gen = torch.Generator().manual_seed(step)
                batch = t._batch(torch.arange(16, device=device) + 16 * step, BATCH_KINDS[stage.batch], gen)
                batch.step = 10**6
                out.append({k: float(v) for k, v in t._step(runs, stage, batch, step, 10).items()})
    return out


@pytest.mark.parametrize("method", sorted(METHODS))
def test_training_steps_on_cuda_match_cpu(method):
    """Losses after the first step depend on the gradients: equal losses, equal training."""
    cpu, cuda = _three_steps(method, torch.device("cpu")), _three_steps(method, torch.device("cuda"))
    for a, b in zip(cpu, cuda):
        for k, v in a.items():
            assert abs(v - b[k]) <= 1e-3 * max(abs(v), 1e-2), (k, v, b[k])


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("dtype,tol", [(None, 1e-4), (torch.bfloat16, 3e-2)])
def test_inference_on_cuda_matches_cpu(method, dtype, tol):
    from posecli.models import model_class

    torch.manual_seed(0)
    opts = tiny_opts(method)
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(method_class(method), blobs(), opts, Path(tmp), torch.device("cpu"), ReconstructionLoss("lap"),
                    quiet=True)
    model = t.method.final_model().eval()
    gpu = model_class(method).from_config_dict(model.config_dict())
    gpu.load_state_dict(model.state_dict())
    gpu = gpu.cuda().eval()
    x = blobs().images[:8].float() / 255
    with torch.no_grad():
        ref = model.swap(x, x.flip(0))
        with torch.autocast("cuda", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = gpu.swap(x.cuda(), x.flip(0).cuda()).float().cpu()
    assert (out - ref).abs().max() <= tol
