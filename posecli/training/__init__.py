"""Training: the shared loop, batches, checkpoints, losses and one module per method.

METHODS maps a method name to its training module, loaded lazily. A method module
defines ``Options`` (its frozen options dataclass) and ``Method`` (networks assembly,
objectives, optimiser groups and stages; see posecli/training/method.py). The same
names key ``posecli.models.MODEL_REGISTRY``: a test checks that the two agree.
"""

from __future__ import annotations

import importlib

METHODS: dict[str, str] = {
    "lord": "posecli.training.lord",
    "esser": "posecli.training.esser",
    "cs": "posecli.training.cs",
    "xiao": "posecli.training.xiao",
}


def method_module(method: str):
    from posecli.errors import UsageError

    if method not in METHODS:
        raise UsageError(f"--method {method}: unknown (available: {', '.join(sorted(METHODS))})")
    return importlib.import_module(METHODS[method])


def method_class(method: str):
    return method_module(method).Method


def options_class(method: str):
    return method_module(method).Options
