"""Networks. Every method's inference model is a ``PoseModel``:

    identity = model.encode_identity(x)   # (N, D_id)
    pose = model.encode_pose(x)           # (N, D_pose)
    image = model.generate(identity, pose)  # (N, 3, S, S) in [0, 1]

with x float (N, 3, S, S) in [0, 1] at ``model.image_size``. swap, animate,
composite and encode use only this interface.

The registry maps a method name to (module, class); modules import lazily.
"""

from __future__ import annotations

import importlib

MODEL_REGISTRY: dict[str, tuple[str, str]] = {
    "lord": ("posecli.models.lord", "LordModel"),
    "esser": ("posecli.models.esser", "EsserModel"),
    "cs": ("posecli.models.cs", "CsModel"),
    "xiao": ("posecli.models.xiao", "XiaoModel"),
}


def model_class(method: str):
    from posecli.errors import ModelFileError

    if method not in MODEL_REGISTRY:
        raise ModelFileError(f"unknown method {method!r} (known: {', '.join(sorted(MODEL_REGISTRY))})")
    module, name = MODEL_REGISTRY[method]
    return getattr(importlib.import_module(module), name)
