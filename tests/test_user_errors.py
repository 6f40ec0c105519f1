"""Failures a user can cause, answered in one line (issue 16): write errors (a read-only
folder, a full disk), signals (SIGTERM like Ctrl-C; Ctrl-C with a worker pool), `-o -`
where stdout cannot take the output, the mode of output folders, confirmation lines
and the --keep-going summary.

How the write errors are made:
- read-only: the command runs as user ``nobody`` (``setpriv``; root ignores permissions)
  into a folder of mode 0555 -> EACCES; skipped where setpriv or root is not available;
- full disk: a real tmpfs of a few hundred KiB mounted in a private mount namespace
  (``unshare -m``, root only, skipped elsewhere), and a patched write raising ENOSPC
  (runs everywhere).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import invoke

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "posecli"]


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "POSECLI_OFFLINE": "1", **extra}
    env.pop("COLUMNS", None)
    return env


def _write_png(path: Path, seed: int = 0, size: int = 40) -> Path:
    from posecli.media.images import write_image

    g = np.random.default_rng(seed)
    write_image(path, g.integers(0, 255, (size, size + 8, 3), dtype=np.uint8))
    return path


def _can_run_as_nobody() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "true"]).returncode == 0


def _can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    d = tempfile.mkdtemp()
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {d}"],
                           capture_output=True)
        return r.returncode == 0
    finally:
        os.rmdir(d)


needs_nobody = pytest.mark.skipif(not _can_run_as_nobody(), reason="needs root and setpriv to run as nobody")
needs_tmpfs = pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs root and unshare -m to mount a tmpfs")


@pytest.fixture
def world(tmp_path_factory, tiny_model_path):
    """A folder every user can read (pytest's tmp folders are 0700): a model, two images,
    and ``ro/``, a folder nobody may write into."""
    d = Path(tempfile.mkdtemp(prefix="posecli-test-"))
    os.chmod(d, 0o755)
    shutil.copy(tiny_model_path, d / "tiny.safetensors")
    _write_png(d / "a.png", 1)
    _write_png(d / "b.png", 2)
    (d / "ro").mkdir(mode=0o555)
    os.chmod(d / "ro", 0o555)
    for f in d.iterdir():
        if f.is_file():
            os.chmod(f, 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _as_nobody(args, **kw):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *CLI, *map(str, args)],
                          capture_output=True, text=True, env=_env(HOME="/tmp"), timeout=300, **kw)


def _on_tmpfs(mount: Path, size: str, fill_kib: int, args, **kw):
    """Run posecli with a tmpfs of ``size`` at ``mount`` (private to this run), ``fill_kib`` of it taken."""
    mount.mkdir(exist_ok=True)
    script = (f"mount -t tmpfs -o size={size} tmpfs '{mount}' && "
              + (f"head -c {fill_kib}k /dev/zero > '{mount}/fill' 2>/dev/null; " if fill_kib else "")
              + 'exec "$@"')
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *CLI, *map(str, args)],
                          capture_output=True, text=True, env=_env(), timeout=300, **kw)


def _one_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# -- write errors: one mechanism (fileio) -------------------------------------


@pytest.fixture
def full_disk_for_out(monkeypatch):
    """Writes to atomic_path's hidden temporary file of an output named out.* fail with ENOSPC."""
    real = Path.write_bytes

    def full(self, data):
        if self.name.startswith(".out."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)


def test_patched_full_disk_names_the_output_not_the_temp_file(full_disk_for_out, tmp_path):
    """A write that fails with ENOSPC on atomic_path's hidden temporary file is told as
    the user's output; nothing is left behind."""
    from posecli.errors import OutputWriteError
    from posecli.media.images import write_image

    with pytest.raises(OutputWriteError) as e:
        write_image(tmp_path / "out.png", np.zeros((4, 4, 3), np.uint8))
    assert str(e.value) == f"{tmp_path / 'out.png'}: cannot write (disk full)"
    assert list(tmp_path.iterdir()) == []


def test_patched_full_disk_through_the_cli(full_disk_for_out, runner, tiny_model_path, tmp_path):
    a, b = _write_png(tmp_path / "a.png", 1), _write_png(tmp_path / "b.png", 2)  # only out.* is full
    r = invoke(runner, ["swap", "--id", a, "--pose", b, "-m", tiny_model_path, "-o", tmp_path / "out.png"])
    assert r.exit_code == 1
    assert _one_error(r.stderr) == f"posecli: error: {tmp_path / 'out.png'}: cannot write (disk full)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_unmapped_write_error_is_still_told_as_the_users_path(capsys):
    """An OSError that no writer mapped (a write outside atomic_path) reaches cli_errors:
    not an internal error, and a hidden temporary name is turned back into the output's."""
    import typer

    from posecli.cli import common

    with pytest.raises(typer.Exit) as e:
        with common.cli_errors():
            raise OSError(errno.ENOSPC, "No space left on device", "/data/out/.frame.a1b2c3d4.part.png")
    assert e.value.exit_code == 1
    assert capsys.readouterr().err == "posecli: error: /data/out/frame.png: cannot write (disk full)\n"
    assert common.os_error_message(OSError(errno.ENOSPC, "x", "/d/.frame.a1b2c3d4.part.png")) == \
        "/d/frame.png: cannot write (disk full)"
    assert common.os_error_message(OSError(errno.EROFS, "x", "/d/o.npz")) == \
        "/d/o.npz: cannot write (permission denied: read-only file system)"
    assert common.os_error_message(OSError(errno.ENOENT, "x", "/d/o.npz")) is None


@needs_nobody
@pytest.mark.parametrize("command", ["swap", "encode", "composite", "animate", "synth", "train", "eval"])
def test_read_only_folder(world, command):
    """Every writing command refuses a folder it cannot write into before the work, in one
    line naming the user's path (not a temporary file), exit 1, nothing left behind."""
    ro = world / "ro"
    m = world / "tiny.safetensors"
    out, args = {
        "swap": (ro / "out.png", ["swap", "--id", world / "a.png", "--pose", world / "b.png", "-m", m]),
        "encode": (ro / "codes.npz", ["encode", world / "a.png", "-m", m]),
        "composite": (ro / "scene.png", ["composite", "--scene", world / "a.png", "--id", world / "b.png", "-m", m,
                                         "--box", "2,2,20,20"]),
        "animate": (ro / "anim.mp4", ["animate", "--id", world / "a.png", "--video", world / "a.png", "-m", m]),
        "synth": (ro / "cars", ["synth", "cars", "--identities", "2", "--size", "16", "--azimuths", "2",
                                "--elevations", "1"]),
        "train": (ro / "m.safetensors", ["train", world / "a.png", "--epochs", "1", "--size", "32"]),
        "eval": (ro / "report.json", ["eval", world / "a.png", "-m", m]),
    }[command]
    if command == "animate":  # a real video as the driver
        from posecli.media.video import write_video

        write_video(world / "drive.mp4", [np.full((24, 24, 3), 9 * i, np.uint8) for i in range(5)], fps=5)
        os.chmod(world / "drive.mp4", 0o644)
        args[4] = world / "drive.mp4"
    if command == "synth":
        args.insert(2, out)
    else:
        args += ["-o", out]
    r = _as_nobody(args)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert _one_error(r.stderr) == f"posecli: error: {out}: cannot write (permission denied)", r.stderr
    assert list(ro.iterdir()) == []


@needs_tmpfs
def test_full_disk_is_found_before_the_work(tmp_path, tiny_model_path):
    """A (real) full disk: synth, animate and train refuse at once and leave no folder."""
    mnt = tmp_path / "full"
    a = _write_png(tmp_path / "a.png", 1)
    from posecli.media.video import write_video

    write_video(tmp_path / "drive.mp4", [np.full((24, 24, 3), 9 * i, np.uint8) for i in range(5)], fps=5)
    cases = {
        "synth": (["synth", "cars", mnt / "cars", "--identities", "2", "--size", "16"], mnt / "cars"),
        "animate": (["animate", "--id", a, "--video", tmp_path / "drive.mp4", "-m", tiny_model_path,
                     "-o", mnt / "out.mp4"], mnt / "out.mp4"),
        "animate frames": (["animate", "--id", a, "--video", tmp_path / "drive.mp4", "-m", tiny_model_path,
                            "-o", mnt / "frames"], mnt / "frames"),
        "train": (["train", a, "-o", mnt / "m.safetensors", "--epochs", "1", "--size", "32"], mnt / "m.safetensors"),
    }
    for name, (args, out) in cases.items():
        script_args = [*args]
        r = _on_tmpfs(mnt, "256k", 255, script_args)
        assert r.returncode == 1, (name, r.stderr)
        line = _one_error(r.stderr)
        assert line.startswith(f"posecli: error: {out}: cannot write (disk full"), (name, line)


@needs_tmpfs
def test_disk_filling_up_during_a_video_write(tmp_path):
    """ffmpeg fails mid-file (its last line is "Nothing was written..."): the message reads
    its stderr and says disk full, naming the output; no temporary file stays."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    code = (
        "import numpy as np, sys\n"
        "from posecli.media.video import write_video\n"
        "from posecli.errors import OutputWriteError\n"
        "g = np.random.default_rng(0)\n"
        "frames = (g.integers(0, 255, (8, 240, 320, 3), dtype=np.uint8) for _ in range(12))\n"
        "try:\n"
        f"    write_video('{mnt}/out.mp4', frames, fps=10, audio=(np.zeros(8000, np.float32), 8000))\n"
        "except OutputWriteError as e:\n"
        "    print(e)\n"
        "import os; print(sorted(os.listdir(sys.argv[1])))\n"
    )
    script = f"mount -t tmpfs -o size=1400k tmpfs '{mnt}' && exec \"$@\""
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", sys.executable, "-c", code, str(mnt)],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{mnt}/out.mp4: cannot write (disk full)", "[]"], r.stdout + r.stderr


@needs_tmpfs
def test_synth_filling_the_disk_mid_run(tmp_path):
    """The disk fills while synth renders: one line, exit 1, no temporary file, and the
    folder's synth.json still says complete: false (so train refuses it)."""
    mnt = tmp_path / "m"
    mnt.mkdir()
    cmd = " ".join(f"'{a}'" for a in [*CLI, "synth", "cars", mnt / "cars", "--identities", "40", "--size", "64",
                                      "--workers", "1"])
    script = (f"mount -t tmpfs -o size=1100k tmpfs '{mnt}' && {{ {cmd}; echo rc=$?; "
              f"find '{mnt}/cars' -name '.*' | wc -l; cat '{mnt}/cars/synth.json'; }}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=_env(), timeout=300)
    assert "cannot write (disk full)" in _one_error(r.stderr) and ".part" not in r.stderr, r.stderr
    rc, hidden, *marker = r.stdout.splitlines()
    assert rc == "rc=1" and hidden.strip() == "0"
    import json

    assert json.loads("\n".join(marker))["complete"] is False


# -- -o - and output modes ----------------------------------------------------


def test_animate_to_stdout_is_a_usage_error(runner, tiny_model_path, tmp_path, monkeypatch):
    from posecli.media.video import write_video

    monkeypatch.chdir(tmp_path)
    a = _write_png(tmp_path / "a.png")
    write_video(tmp_path / "d.mp4", [np.zeros((16, 16, 3), np.uint8)] * 3, fps=5)
    r = invoke(runner, ["animate", "--id", a, "--video", tmp_path / "d.mp4", "-m", tiny_model_path, "-o", "-"])
    assert r.exit_code == 2 and "stdout takes single images only" in _one_error(r.stderr)
    assert not (tmp_path / "-").exists() and r.stdout == ""


def test_frame_folder_gets_the_umask_mode(runner, tiny_model_path, tmp_path):
    from posecli.media.video import write_video

    a = _write_png(tmp_path / "a.png")
    write_video(tmp_path / "d.mp4", [np.zeros((16, 16, 3), np.uint8)] * 3, fps=5)
    old = os.umask(0o027)
    try:
        r = invoke(runner, ["animate", "--id", a, "--video", tmp_path / "d.mp4", "-m", tiny_model_path,
                            "-o", tmp_path / "frames", "-q"])
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "frames").stat().st_mode & 0o777 == 0o750
    assert len(list((tmp_path / "frames").glob("*.png"))) == 3


# -- signals ------------------------------------------------------------------


def _sigint_as_in_a_terminal() -> None:
    """In the child before exec: Ctrl-C's default action, as a command started from a terminal has it.

    A command started in the background by a non-interactive shell (``cmd &``,
    ``nohup``) inherits SIGINT ignored, and posecli rightly keeps it so; these
    tests must not depend on how the test run itself was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_training_keeps_an_ignored_sigint_ignored():
    """``nohup posecli train ... &`` starts with SIGINT ignored: the loop's stop handler leaves it so
    (a terminal's Ctrl-C meant for the script must not stop a background run); SIGTERM is still handled."""
    from posecli.training.loop import _StopFlag

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        flag = _StopFlag()
        with flag.installed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) == flag._handler
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        # started from a terminal (set here, whatever this test run inherited): both are handled
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with flag.installed():
            assert signal.getsignal(signal.SIGINT) == flag._handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def _wait_for(pred, timeout=120.0, proc=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """A minute of 25 fps video with sound: animate runs long enough to be stopped."""
    from posecli.media.video import write_video

    d = tmp_path_factory.mktemp("long")
    ramp = np.linspace(0, 255, 96, dtype=np.float32)
    frames = (np.broadcast_to(((ramp + 3 * i) % 256).astype(np.uint8)[None, :, None], (64, 96, 3)) for i in range(1500))
    return write_video(d / "d.mp4", frames, fps=25, audio=(np.zeros(8000 * 60, np.float32), 8000))


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_animate_leaves_nothing(tiny_model_path, tmp_path, long_video, sig, code):
    """SIGTERM (kill, timeout, docker stop) is handled like Ctrl-C: exit 143, no
    .out.*.part.mp4 nor .out.*.video.mp4 beside the output."""
    a = _write_png(tmp_path / "a.png")
    out = tmp_path / "out" / "o.mp4"
    out.parent.mkdir()
    p = subprocess.Popen([*CLI, "animate", "--id", a, "--video", long_video, "-m", tiny_model_path,
                          "-o", out, "--batch-size", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=_env(), preexec_fn=_sigint_as_in_a_terminal)
    assert _wait_for(lambda: any(out.parent.iterdir()), proc=p), p.communicate()[1]
    time.sleep(0.3)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert err.strip().splitlines()[-1] == ("posecli: error: terminated (SIGTERM)" if sig == signal.SIGTERM
                                            else "posecli: error: interrupted")
    assert list(out.parent.iterdir()) == []


def test_ctrl_c_during_synth_with_workers_then_train_refuses_the_half_dataset(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during
    ``synth heads --video`` with 2 workers: no worker traceback, exit 130, synth.json says
    incomplete; ``train`` on that folder refuses and names the fix."""
    out = tmp_path / "heads"
    p = subprocess.Popen([*CLI, "synth", "heads", out, "--identities", "6", "--size", "32", "--video",
                          "--clips", "2", "--clip-seconds", "4", "--workers", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                         start_new_session=True, preexec_fn=_sigint_as_in_a_terminal)
    assert _wait_for(lambda: (out / "synth.json").is_file() and any(out.glob("*/*")), proc=p), p.communicate()[1]
    time.sleep(0.5)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "ForkPoolWorker" not in err and "SpawnPoolWorker" not in err, err
    assert err.strip().splitlines()[-1] == "posecli: error: interrupted"
    import json

    assert json.loads((out / "synth.json").read_text())["complete"] is False
    assert not list(out.rglob(".*.part*"))
    r = subprocess.run([*CLI, "train", out, "-o", tmp_path / "m.safetensors", "--epochs", "1"],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 1
    line = _one_error(r.stderr)
    assert "incomplete posecli synth output" in line and "--overwrite" in line and "posecli synth heads" in line
    assert not (tmp_path / "m.work").exists() and not (tmp_path / "m.safetensors").exists()


def test_sigterm_during_train_checkpoints_and_exits_143(tiny_cars, tmp_path):
    out = tmp_path / "m.safetensors"
    p = subprocess.Popen([*CLI, "train", tiny_cars, "-o", out, "--epochs", "500", "--batch-size", "16", "--size", "32",
                          "--loss", "l1", "--opt", "width=0.125", "--opt", "identity_dim=16", "--opt", "pose_dim=8",
                          "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    work = tmp_path / "m.work"
    assert _wait_for(lambda: (work / "checkpoint.pt").is_file(), proc=p, timeout=240), p.communicate()[1]
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "SIGTERM: finishing this step" in err and err.strip().splitlines()[-1] == \
        "posecli: error: terminated (SIGTERM)"
    assert not out.exists() and not list(tmp_path.rglob(".*.part*"))


# -- one confirmation line, one summary ---------------------------------------


@pytest.mark.parametrize("quiet", [False, True])
def test_one_confirmation_line_per_command(runner, tiny_model_path, tmp_path, quiet):
    a, b = _write_png(tmp_path / "a.png", 1), _write_png(tmp_path / "b.png", 2)
    q = ["-q"] if quiet else []
    runs = {
        "swap": (["swap", "--id", a, "--pose", b, "-m", tiny_model_path, "-o", tmp_path / "s.png", *q],
                 f"posecli: wrote 1 image(s) to {tmp_path / 's.png'}"),
        "encode": (["encode", a, b, "-m", tiny_model_path, "-o", tmp_path / "c.npz", *q],
                   f"posecli: wrote the codes of 2 image(s) to {tmp_path / 'c.npz'}"),
        "composite": (["composite", "--scene", a, "--id", b, "-m", tiny_model_path, "--box", "4,4,24,24", "--matte", "grabcut",
                       "-o", tmp_path / "c.png", *q], f"posecli: wrote {tmp_path / 'c.png'}"),
    }
    for name, (args, line) in runs.items():
        r = invoke(runner, args)
        assert r.exit_code == 0, (name, r.output)
        assert r.stderr.splitlines() == ([] if quiet else [line]), (name, r.stderr)


def test_keep_going_summaries_share_one_wording(runner, tiny_model_path, tmp_path):
    a, b = _write_png(tmp_path / "a.png", 1), _write_png(tmp_path / "b.png", 2)
    bad = tmp_path / "scenes" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not an image")
    shutil.copy(a, bad.parent / "a.png")
    runs = {
        "swap": ["swap", "--id", a, "--id", bad, "--pose", b, "-m", tiny_model_path, "-o", tmp_path / "sw"],
        "encode": ["encode", a, bad, "-m", tiny_model_path, "-o", tmp_path / "c.npz"],
        "composite": ["composite", "--scene", bad.parent, "--id", b, "-m", tiny_model_path, "--box", "4,4,24,24",
                      "--matte", "grabcut", "-o", tmp_path / "co"],
    }
    for name, args in runs.items():
        r = invoke(runner, [*args, "--keep-going"])
        assert r.exit_code == 1, (name, r.output)
        lines = r.stderr.strip().splitlines()
        assert lines[-2].startswith("posecli: failed: ") and str(bad) in lines[-2], (name, lines)
        assert lines[-1].startswith("posecli: error: 1 of 2 items failed (listed above); the other 1 were written"), \
            (name, lines)


# -- pretrained downloads: one short notice, no retry within a day -----------------


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Downloads fail (and are counted); an empty TORCH_HOME and cache folder; POSECLI_OFFLINE unset."""
    import torch
    import torchvision.models._api as tv_api  # imported before the patch (see conftest.offline_no_downloads)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("POSECLI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("POSECLI_OFFLINE", raising=False)
    monkeypatch.delenv("POSECLI_RETRY_DOWNLOADS", raising=False)
    calls = []

    def fail(url, *a, **k):
        calls.append(url)
        sys.stdout.write(f'Downloading: "{url}" to {tmp_path}\n')  # as torch.hub does
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", fail)
    return calls


def test_failed_download_is_remembered_for_a_day(no_network, monkeypatch, tmp_path, capsys):
    import json

    from posecli.downloads import failures_file
    from posecli.training.losses import ReconstructionLoss

    assert ReconstructionLoss("auto").kind == "lap" and len(no_network) == 1
    assert capsys.readouterr().out == ""  # torch's "Downloading:" line is not on stdout (it would break --json)
    assert ReconstructionLoss("auto").kind == "lap" and len(no_network) == 1  # not tried again
    monkeypatch.setenv("POSECLI_RETRY_DOWNLOADS", "1")
    assert ReconstructionLoss("auto").kind == "lap" and len(no_network) == 2  # asked for
    monkeypatch.delenv("POSECLI_RETRY_DOWNLOADS")
    record = json.loads(failures_file().read_text())
    for entry in record.values():
        entry["time"] -= 25 * 3600  # a day later
    failures_file().write_text(json.dumps(record))
    assert ReconstructionLoss("auto").kind == "lap" and len(no_network) == 3


def test_train_says_one_short_line_about_missing_weights(no_network, runner, tiny_cars, tmp_path):
    args = ["train", tiny_cars, "--size", "32", "--epochs", "1", "--batch-size", "16", "--opt", "width=0.125",
            "--opt", "identity_dim=16", "--opt", "pose_dim=8", "--device", "cpu"]
    for run in range(2):
        r = invoke(runner, [*args, "-o", tmp_path / f"m{run}.safetensors"])
        assert r.exit_code == 0, r.output
        notes = [ln for ln in r.stderr.splitlines() if "VGG16" in ln]
        assert len(notes) == 1 and len(notes[0]) < 200 and "'lap'" in notes[0], r.stderr
        assert "Downloading" not in r.output and "http" not in notes[0]
    assert len(no_network) == 1  # the second run did not try
    r = invoke(runner, [*args, "-o", tmp_path / "m2.safetensors", "-v"])
    assert r.exit_code == 0 and "vgg16-397923af.pth" in r.stderr  # the full text with -v


# -- dataset roots, standalone docs -------------------------------------------


def test_encode_reads_a_dataset_root_as_train_does(runner, tiny_model_path, tiny_cars, tmp_path):
    """`posecli encode data/` on DATA/<identity>/<image> encodes every identity's images
    (its labels.csv and synth.json are not images; no notice about them)."""
    out = tmp_path / "codes.npz"
    r = invoke(runner, ["encode", tiny_cars, "-m", tiny_model_path, "-o", out])
    assert r.exit_code == 0, r.output
    codes = np.load(out)
    assert len(codes["paths"]) == 64 == len(list(Path(tiny_cars).glob("*/*.png")))
    assert {Path(p).parent.name for p in codes["paths"]} == {d.name for d in Path(tiny_cars).iterdir() if d.is_dir()}
    assert r.stderr.splitlines() == [f"posecli: wrote the codes of 64 image(s) to {out}"]


def test_project_docs_stand_alone():
    """Users have the project, not the workspace's shared notes."""
    for name in ["README.md", "CHANGELOG.md", "pyproject.toml", "Makefile"]:
        path = ROOT / name
        if path.exists():
            text = path.read_text(encoding="utf-8")
            assert "../shared" not in text and "METHODS.md" not in text and "PITFALLS.md" not in text, name


def test_ffmpeg_command_lines_come_from_ffmpeg_python():
    """ffmpeg-python (declared) builds the command lines; posecli's global options come
    first, -nostdin always."""
    import ffmpeg

    from posecli.media.ffmpeg_bin import ffmpeg_cmd, ffmpeg_exe

    cmd = ffmpeg_cmd(ffmpeg.input("in.mp4").output("pipe:1", f="rawvideo", pix_fmt="rgb24"), overwrite=True)
    assert cmd[:6] == [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    assert cmd[6:] == ["-i", "in.mp4", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]


# -- train: lines without a terminal, extending a finished run, the loss curve (issue 16 #5, #10, #12) ----


def test_train_lines_without_a_terminal_and_extending_a_finished_run(runner, tiny_cars, tmp_path):
    from posecli.modelfile import load_model

    out = tmp_path / "m.safetensors"
    args = ["train", tiny_cars, "-o", out, "--size", "32", "--batch-size", "16", "--opt", "width=0.125",
            "--opt", "identity_dim=16", "--opt", "pose_dim=8", "--loss", "lap", "--device", "cpu"]
    r = invoke(runner, [*args, "--epochs", "1"])  # stderr is no terminal here: lines, no bar
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert lines[0].startswith("posecli: training lord on 64 images of 4 identities: 2 stage(s), 8 steps")
    assert [ln.split(":")[1].strip() for ln in lines[1:3]] == ["stage1 epoch 1/1", "stage2 epoch 1/1"]
    assert lines[-1].startswith(f"posecli: wrote {out}") and "final reconstruction loss" in lines[-1]
    assert f"posecli eval HELDOUT -m {out}" in lines[-1] and len(lines) == 4
    # more --epochs on a finished run: the last stage goes on; -q says nothing
    r = invoke(runner, [*args, "--epochs", "2", "--resume", "--overwrite", "-q"])
    assert r.exit_code == 0 and r.stderr == "", r.output
    assert load_model(out).meta["training"]["epochs"] == [1, 2]
    r = invoke(runner, [*args, "--epochs", "1", "--resume", "--overwrite"])
    assert r.exit_code == 1 and "--epochs can only grow" in _one_error(r.stderr)


def test_loss_curve_draws_each_stage_apart():
    """A 30-fold jump at stage 2 is not drawn as one line climbing: each stage is its own
    line, with a labelled boundary between them."""
    from posecli.training.plots import COLOURS, loss_curve

    history = [{"step": s, "stage": "stage1" if s < 10 else "stage2", "loss": 1.0 if s < 10 else 30.0}
               for s in range(20)]
    img = loss_curve(history, 640, 360)
    left, pw, top, ph = 60, 640 - 60 - 150, 20, 360 - 20 - 40
    x = lambda step: int(left + pw * step / 19)  # noqa: E731
    boundary = img[top + 1:top + ph, x(10)]
    assert (boundary == 160).all(axis=1).mean() > 0.8  # a grey line the height of the panel
    colour = np.array(COLOURS[0])
    between = img[top + 1:top + ph, x(9) + 3:x(10) - 3]
    assert not (np.abs(between.astype(int) - colour).sum(axis=2) < 60).any()  # no line drawn across the jump
