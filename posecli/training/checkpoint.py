"""Resumable training state: written atomically, read without unpickling code.

Checkpoints are posecli's own files in the work folder; they are still read
with ``weights_only=True`` so a crafted file cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import PoseCliError
from ..fileio import atomic_path

NAME = "checkpoint.pt"


def save_checkpoint(workdir: Path, state: dict) -> Path:
    path = Path(workdir) / NAME
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(workdir: Path) -> dict | None:
    path = Path(workdir) / NAME
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise PoseCliError(f"cannot read checkpoint ({type(e).__name__}); move it away to start afresh", path) from None
