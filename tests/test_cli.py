"""The CLI shell: light imports, fast --help, version, usage errors, models, error mapping."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from posecli import __version__
from posecli.cli.common import cli_errors
from posecli.errors import InputError, PoseCliError, UsageError

from conftest import invoke

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "cv2", "lpips", "rembg", "onnxruntime")

# Runs in a fresh interpreter: --help of the app and of every (sub)command found
# by walking the app, then reports what got imported.
HELP_PROBE = r"""
import json, sys
import typer.main
from typer.testing import CliRunner
from posecli.cli.app import app

HEAVY = %r
def walk(cmd, path):
    yield path
    for name, sub in getattr(cmd, "commands", {}).items():
        if not sub.hidden:
            yield from walk(sub, path + [name])

report = {"after_import": sorted(m for m in HEAVY if m in sys.modules), "runs": []}
runner = CliRunner()
for path in walk(typer.main.get_command(app), []):
    r = runner.invoke(app, path + ["--help"])
    report["runs"].append({"path": path, "exit_code": r.exit_code, "output": r.output,
                           "heavy": sorted(m for m in HEAVY if m in sys.modules)})
print(json.dumps(report))
"""


def run_py(args, env=None, timeout=120):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_help_of_every_command_imports_nothing_heavy():
    r = run_py(["-c", HELP_PROBE % (HEAVY,)])
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["after_import"] == [], f"importing posecli.cli.app loads {report['after_import']}"
    runs = report["runs"]
    assert [] in [x["path"] for x in runs] and ["models"] in [x["path"] for x in runs]
    for x in runs:
        name = " ".join(["posecli", *x["path"]])
        assert x["exit_code"] == 0, f"{name} --help exited {x['exit_code']}: {x['output']}"
        assert f"Usage: {name} " in x["output"]
        assert x["heavy"] == [], f"{name} --help imports {x['heavy']}"


def test_help_is_fast():
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        r = run_py(["-m", "posecli", "--help"])
        times.append(time.perf_counter() - t0)
        assert r.returncode == 0 and "Usage: posecli" in r.stdout, r.stderr
    best = min(times)
    print(f"posecli --help wall time: best {best:.3f} s of {', '.join(f'{t:.3f}' for t in times)}")
    assert best < 1.0, f"posecli --help took {best:.2f} s (target well under 0.5 s): a heavy import at module level?"


def test_version_matches_package_and_pyproject(runner):
    r = invoke(runner, ["--version"])
    assert r.exit_code == 0
    assert r.stdout == f"posecli {__version__}\n"
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # the version lives only in posecli/__init__.py; pyproject reads it from there
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "posecli.__version__"}
    init = (ROOT / "posecli" / "__init__.py").read_text(encoding="utf-8")
    assert f'__version__ = "{__version__}"' in init


def test_version_via_python_m():
    r = run_py(["-m", "posecli", "--version"])
    assert r.returncode == 0 and r.stdout == f"posecli {__version__}\n"


@pytest.mark.parametrize("args,message", [
    (["--no-such-option"], "posecli: error: no such option: --no-such-option (see 'posecli --help')"),
    (["no-such-command"], "posecli: error: no such command 'no-such-command' (see 'posecli --help')"),
    (["models", "--bogus"], "posecli: error: models: no such option: --bogus"),
    (["swap", "--id", "a.png"], "posecli: error: swap: missing option '--pose' (see 'posecli swap --help')"),
    (["encode", "a.png", "-m", "cars", "--batch-size", "0"],
     "posecli: error: encode: invalid value for '--batch-size'"),
    (["swap", "--id"], "posecli: error: option '--id' requires an argument"),
])
def test_usage_errors_exit_2(runner, args, message):
    """Parser errors read like posecli's own: one line with a hint, exit 2 (issue 16 #2)."""
    r = invoke(runner, args)
    assert r.exit_code == 2
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(message), r.stderr
    assert "(see 'posecli" in r.stderr and "Usage:" not in r.stderr
    assert r.stdout == ""


def test_no_arguments_prints_help_and_exits_0():
    r = run_py(["-m", "posecli"])
    assert r.returncode == 0 and r.stdout.startswith("Usage: posecli") and "Commands:" in r.stdout, r.stderr


def test_models_json_empty(tmp_path):
    env = {"POSECLI_WEIGHTS": str(tmp_path / "weights"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    r = run_py(["-m", "posecli", "models", "--json"], env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["models"] == []
    assert str(tmp_path / "weights") in out["search_dirs"]


def test_models_lists_good_and_bad(tmp_path, tiny_model_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "bad.safetensors").write_bytes(b"\x00garbage, not a model" * 10)
    shutil.copy(tiny_model_path, weights / "good.safetensors")
    (weights / "notes.txt").write_text("ignored")
    env = {"POSECLI_WEIGHTS": str(weights), "XDG_DATA_HOME": str(tmp_path / "xdg")}

    r = run_py(["-m", "posecli", "models", "--json"], env=env)
    assert r.returncode == 0, r.stderr
    models = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    assert sorted(models) == ["bad", "good"]
    bad, good = models["bad"], models["good"]
    assert "meta" not in bad and str(weights / "bad.safetensors") in bad["error"]
    assert "\n" not in bad["error"]
    assert "error" not in good
    meta = good["meta"]
    assert (meta["method"], meta["image_size"], meta["identity_dim"], meta["pose_dim"]) == ("lord", 32, 16, 8)
    assert meta["posecli_version"] == __version__ and meta["format_version"] == 1
    assert good["path"] == str(weights / "good.safetensors") and good["size_bytes"] > 0

    text = run_py(["-m", "posecli", "models"], env=env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("bad") and "unreadable" in lines[0]
    assert lines[1].startswith("good") and "lord" in lines[1] and "32px" in lines[1]


# ------------------------------------------------------------- cli_errors

def _exit_code(exc: BaseException, debug=False) -> int:
    with pytest.raises(typer.Exit) as info:
        with cli_errors(debug=debug):
            raise exc
    return info.value.exit_code


@pytest.mark.parametrize("exc,code,line", [
    (PoseCliError("model training failed"), 1, "posecli: error: model training failed"),
    (InputError("not an image (cannot decode)", "in/a.png"), 1, "posecli: error: in/a.png: not an image (cannot decode)"),
    (UsageError("--grid needs several inputs"), 2, "posecli: error: --grid needs several inputs"),
    (KeyboardInterrupt(), 130, "posecli: error: interrupted"),
])
def test_cli_errors_maps_exceptions(capsys, exc, code, line):
    assert _exit_code(exc) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [line]


def test_cli_errors_bug_is_one_line_without_traceback(capsys):
    assert _exit_code(ValueError("boom\nsecond line?")) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["posecli: error: internal error: ValueError: boom second line? "
                                "(run with --debug for the traceback)"]


def test_cli_errors_debug_shows_traceback(capsys):
    assert _exit_code(ValueError("boom"), debug=True) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("posecli: error: internal error: ValueError: boom")
    assert _exit_code(InputError("bad", "x.png"), debug=True) == 1
    assert "Traceback" in capsys.readouterr().err


def test_cli_errors_passes_exit_and_success_through(capsys):
    with pytest.raises(typer.Exit) as info:
        with cli_errors():
            raise typer.Exit(3)
    assert info.value.exit_code == 3
    with cli_errors():
        pass
    assert capsys.readouterr().err == ""


def test_cli_errors_through_a_command(runner):
    """End to end: a Typer command body wrapped in cli_errors, run by the runner."""
    app = typer.Typer()

    @app.command()
    def fail(kind: str, debug: bool = typer.Option(False, "--debug")) -> None:
        with cli_errors(debug=debug):
            raise {"input": InputError("unreadable", "a.png"), "usage": UsageError("bad flags"),
                   "ctrl-c": KeyboardInterrupt(), "bug": RuntimeError("oops")}[kind]

    for kind, code in (("input", 1), ("usage", 2), ("ctrl-c", 130), ("bug", 1)):
        r = runner.invoke(app, [kind])
        assert r.exit_code == code, (kind, r.output)
        assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("posecli: error: ")
    r = runner.invoke(app, ["bug", "--debug"])
    assert r.exit_code == 1 and "Traceback" in r.stderr
