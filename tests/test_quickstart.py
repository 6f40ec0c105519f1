"""README's quick start, run line by line as a new user would (issue 16, item 11).

The block is read from README.md, so the test follows the README. It runs shrunk:
POSECLI_QUICKSTART_SCALE (default 0.05) scales the numbers of --identities, --epochs,
--pairs and --clip-seconds (never below what later lines refer to); POSECLI_QUICKSTART_SCALE=1
runs every line exactly as written (minutes).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def quickstart_lines(readme: Path = REPO / "README.md") -> list[str]:
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## Quick start"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README's Quick start has no ```sh block"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def shrink(line: str, scale: float) -> str:
    if scale >= 1:
        return line

    def sub(flag: str, low: float, cast):
        def repl(m):
            n = float(m.group(1))
            return f"{flag} {cast(min(n, max(low, math.ceil(n * scale))))}"

        return lambda s: re.sub(rf"{flag} (\d+(?:\.\d+)?)", repl, s)

    for f in (sub("--identities", 3, int), sub("--epochs", 1, int), sub("--pairs", 20, int),
              sub("--clip-seconds", 1, int)):
        line = f(line)
    return line


def test_readme_quickstart_runs_in_order(tmp_path):
    scale = float(os.environ.get("POSECLI_QUICKSTART_SCALE", "0.05"))
    lines = quickstart_lines()
    assert any(ln.startswith("posecli train ") for ln in lines)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "POSECLI_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch"), "XDG_DATA_HOME": str(tmp_path / "xdg"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    work = tmp_path / "qs"
    work.mkdir()
    import time

    for line in lines:
        cmd = shrink(line, scale)
        t0 = time.monotonic()
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", cmd], cwd=work, env=env, capture_output=True,
                           text=True, timeout=3600)
        assert r.returncode == 0, f"README quick start line failed:\n{cmd}\n{r.stderr[-3000:]}"
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        print(f"{time.monotonic() - t0:6.1f} s  {cmd}")  # shown with pytest -s

    from posecli.modelfile import read_metadata

    meta = read_metadata(work / "cars.safetensors")
    assert meta["image_size"] == 32  # --size from the data: 32-px images are not upscaled
    assert (work / "swap.png").is_file() and (work / "grid.png").is_file() and (work / "composite.png").is_file()
    n_ids = len([d for d in (work / "heldout").iterdir() if d.is_dir()])
    assert len(list((work / "out").glob("*.png"))) == 2 * len(list((work / "heldout" / "car_0002").glob("*.png")))
    codes = np.load(work / "codes.npz")
    assert codes["identity"].shape[0] == len(list((work / "heldout" / "car_0000").glob("*.png")))
    report = json.loads((work / "report.json").read_text())
    assert report["identities"] == n_ids and report["transfer"]["mse"]["swap"] is not None
    assert (work / "out.mp4").stat().st_size > 0


def test_shrink_keeps_what_later_lines_use():
    line = "posecli synth cars heldout --identities 6 --epochs 15 --pairs 500 --clip-seconds 2 --azimuths 12"
    assert shrink(line, 0.05) == \
        "posecli synth cars heldout --identities 3 --epochs 1 --pairs 25 --clip-seconds 1 --azimuths 12"
    assert shrink(line, 1.0) == line
    assert shrink("posecli synth heads heads --identities 2 --video", 0.1) == \
        "posecli synth heads heads --identities 2 --video"
