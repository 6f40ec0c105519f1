"""Shared by the benchmark scripts: append a result section to benchmarks/RESULTS.md.

Each section says what ran, on which hardware, when, at which commit and with
which command, so a number in RESULTS.md can be reproduced and compared.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section: what ran, on which hardware, when, at which commit.\n"


def append_section(title: str, device, text: str, results: Path = RESULTS) -> str:
    """Append ``## title (date)`` with hardware, commit, command and ``text``; returns the section."""
    from posecli.runtime import hardware_name

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    cmd = "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    section = (f"\n## {title} ({datetime.date.today().isoformat()})\n\n"
               f"- hardware: {hardware_name(device)}\n- commit: {commit or 'unknown'}\n- command: `{cmd}`\n\n{text}\n")
    head = "" if results.exists() else HEADER
    with open(results, "a") as f:
        f.write(head + section)
    print(f"appended to {results}", file=sys.stderr)
    return section
