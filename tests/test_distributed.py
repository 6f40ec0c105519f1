"""Two gloo processes on CPU under torchrun, against one process with the same global batch.

Every rank cuts the same global batch and draws the same noise, so the loss curves
of 1 and 2 processes differ only by the order of floating-point sums: stated
tolerance 1e-3 relative (measured: below 1e-6). Checkpoints hold the whole state
whatever the world size, so a 2-process run resumes in 1 process and the reverse.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from posecli.training import METHODS

from conftest import invoke
from test_core import TINY_METHOD

TIMEOUT = 240  # seconds per torchrun launch: two processes importing torch on two cores


def _args(method: str, epochs: int) -> list[str]:
    opts = [a for k, v in TINY_METHOD[method].items() for a in ("--opt", f"{k}={v}")]
    return ["--method", method, "--size", "32", "--epochs", str(epochs), "--batch-size", "16", "--loss", "lap",
            "--device", "cpu", *opts]


def _env() -> dict:
    return {**os.environ, "POSECLI_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _torchrun(args: list[str], **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "posecli", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True, **kw)


def _finish(p: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT} s: {err[-2000:]}")
    return p.returncode, out, err


def _losses(workdir) -> list[float]:
    return [h["loss"] for h in json.loads((workdir / "history.json").read_text())]


def _close(a: list[float], b: list[float], rel=1e-3) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert abs(x - y) <= rel * abs(x), (a, b)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_processes_train_like_one(runner, tiny_cars, tmp_path, method):
    from posecli.modelfile import load_model

    one = tmp_path / "one.safetensors"
    r = invoke(runner, ["train", tiny_cars, "-o", one, *_args(method, 2), "-q"])
    assert r.exit_code == 0, r.output
    two = tmp_path / "two.safetensors"
    code, out, err = _finish(_torchrun(["train", tiny_cars, "-o", two, *_args(method, 2), "--json"]))
    assert code == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])  # rank 0 alone reports
    assert len(out.strip().splitlines()) == 1 and summary["world_size"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.safetensors", "one.work", "two.safetensors", "two.work"]
    assert load_model(two).meta["training"]["world_size"] == 2
    _close(_losses(tmp_path / "one.work"), _losses(tmp_path / "two.work"))


def test_init_under_torchrun_trains_like_one_process(runner, tiny_cars, tmp_path):
    """train --init: every rank starts from the same weights and tables (rank 0's)."""
    base = tmp_path / "base.safetensors"
    assert invoke(runner, ["train", tiny_cars, "-o", base, *_args("lord", 1), "-q"]).exit_code == 0
    tuned = ["--init", base, "--epochs", "1", "--batch-size", "16", "--loss", "lap", "--device", "cpu", "-q"]
    r = invoke(runner, ["train", tiny_cars, "-o", tmp_path / "one.safetensors", *tuned])
    assert r.exit_code == 0, r.output
    code, _, err = _finish(_torchrun(["train", tiny_cars, "-o", tmp_path / "two.safetensors", *tuned]))
    assert code == 0, err[-3000:]
    _close(_losses(tmp_path / "one.work"), _losses(tmp_path / "two.work"))


def test_checkpoints_resume_across_world_sizes(runner, tiny_cars, tmp_path):
    from posecli.training.api import train
    from posecli.training.options import TrainOptions

    args = _args("lord", 6)
    ref = tmp_path / "ref.safetensors"
    r = invoke(runner, ["train", tiny_cars, "-o", ref, *args, "-q"])
    assert r.exit_code == 0, r.output
    reference = _losses(tmp_path / "ref.work")

    # 2 processes, interrupted as a terminal's Ctrl-C does (the whole process group), then 1
    a = tmp_path / "a.safetensors"
    p = _torchrun(["train", tiny_cars, "-o", a, *args])
    deadline = time.monotonic() + TIMEOUT
    while not (tmp_path / "a.work" / "history.json").exists():  # after the first epoch
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1][-3000:]
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    code, _, err = _finish(p)
    assert code != 0 and not a.exists(), err[-3000:]
    assert err.count("posecli: error: interrupted") == 2  # each rank stops cleanly (torchrun adds its own traceback)
    r = invoke(runner, ["train", tiny_cars, "-o", a, *args, "--resume", "-q"])
    assert r.exit_code == 0, r.output
    _close(reference, _losses(tmp_path / "a.work"))

    # 1 process, stopped mid-epoch, then 2
    b = tmp_path / "b.safetensors"
    from posecli.training.options import parse_opts

    opts = TrainOptions(method="lord", image_size=32, epochs=6, batch_size=16, loss="lap",
                        method_options=parse_opts("lord", [f"{k}={v}" for k, v in TINY_METHOD["lord"].items()]))
    with pytest.raises(KeyboardInterrupt):
        train([str(tiny_cars)], b, opts, quiet=True, stop_after_steps=15)
    code, _, err = _finish(_torchrun(["train", tiny_cars, "-o", b, *args, "--resume", "-q"]))
    assert code == 0, err[-3000:]
    _close(reference, _losses(tmp_path / "b.work"))


def test_a_user_error_stops_every_process_with_the_same_one_line_message(tiny_cars, tmp_path):
    out = tmp_path / "exists.safetensors"
    out.write_bytes(b"mine")
    code, _, err = _finish(_torchrun(["train", tiny_cars, "-o", out, *_args("lord", 1), "-q"]))
    lines = [ln for ln in err.splitlines() if ln.startswith("posecli:")]
    assert code != 0 and out.read_bytes() == b"mine"
    assert lines == [f"posecli: error: {out}: exists; pass --overwrite to replace it or --skip-existing to keep it"] * 2
