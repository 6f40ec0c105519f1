"""Training: losses, the shared loop, checkpoints and each method's objective.

TRAINERS maps a method name to its objective class (``module:Class``), loaded lazily.
"""

from __future__ import annotations

import importlib

TRAINERS: dict[str, str] = {
    "lord": "posecli.training.lord:LordMethod",
}


def trainer_class(method: str):
    from posecli.errors import UsageError

    if method not in TRAINERS:
        raise UsageError(f"--method {method}: unknown (available: {', '.join(sorted(TRAINERS))})")
    module, name = TRAINERS[method].split(":")
    return getattr(importlib.import_module(module), name)
