"""Training options: what every method shares, and each method's own dataclass.

``TrainOptions`` holds the shared fields; ``method_options`` is the frozen
dataclass of the chosen method (``LordOptions``, ``EsserOptions``...), whose
fields carry their help in ``field(metadata={"help": ...})``. The CLI sets
method options with ``--opt NAME=VALUE``; ``parse_opts`` converts each value by
its field's type, and every mistake is a one-line usage error listing the
valid names with their defaults.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainOptions:
    method: str = "lord"
    image_size: int = 64
    epochs: int = 200  # per stage (a method may give a stage its own count)
    batch_size: int = 128  # the global batch: split over the processes under torchrun
    lr_min: float = 1e-5  # where cosine schedules end
    loss: str = "auto"
    seed: int = 0
    precision: str = "auto"
    compile: bool = False
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    method_options: Any = None  # the method's frozen dataclass; None: its defaults

    def __post_init__(self) -> None:
        """Bad options fail here, for the library as for the CLI (messages name the CLI flags)."""
        for name, v in (("--epochs", self.epochs), ("--batch-size", self.batch_size), ("--log-every", self.log_every)):
            if v < 1:
                raise UsageError(f"{name} {v}: must be at least 1")
        if not (math.isfinite(self.lr_min) and self.lr_min >= 0):
            raise UsageError(f"lr_min {self.lr_min}: expected a finite number >= 0")
        from .losses import LOSSES

        if self.loss not in LOSSES:
            raise UsageError(f"--loss {self.loss}: expected one of {', '.join(LOSSES)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision}: expected one of {', '.join(PRECISIONS)}")
        if self.method_options is None:
            from . import options_class

            object.__setattr__(self, "method_options", options_class(self.method)())
        elif not dataclasses.is_dataclass(self.method_options):
            raise UsageError(f"method_options: expected the options dataclass of --method {self.method}")

    @property
    def mo(self):
        """The method's options (short name for method code)."""
        return self.method_options

    def shared_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method_options"}

    def to_dict(self) -> dict:
        """Both levels, for model files and summaries: shared fields plus ``method_options``."""
        return {**self.shared_dict(), "method_options": asdict(self.method_options)}

    def fingerprint(self) -> str:
        """What must match to resume: everything that changes the weights (not how often
        to checkpoint or log, the precision, or whether the step is compiled)."""
        shared = {k: v for k, v in self.shared_dict().items()
                  if k not in ("checkpoint_minutes", "log_every", "compile", "precision")}
        return json.dumps({"shared": shared, "method": asdict(self.method_options)}, sort_keys=True)


def opt(default, help: str, **kw):
    """A method option: a dataclass field with one line of help."""
    return field(default=default, metadata={"help": help, **kw})


def positive(o, *names: str) -> None:
    """Each named option a finite number > 0 (else a usage error naming it)."""
    for name in names:
        v = getattr(o, name)
        if not (math.isfinite(v) and v > 0):
            raise UsageError(f"--opt {name}={v}: expected a positive number")


def non_negative(o, *names: str) -> None:
    for name in names:
        v = getattr(o, name)
        if not (math.isfinite(v) and v >= 0):
            raise UsageError(f"--opt {name}={v}: expected a finite number >= 0")


def at_least(o, minimum: int, *names: str) -> None:
    """Each named integer option (None allowed: a default) at least ``minimum``."""
    for name in names:
        v = getattr(o, name)
        if v is not None and v < minimum:
            raise UsageError(f"--opt {name}={v}: must be at least {minimum}")


def one_of(o, name: str, allowed) -> None:
    if getattr(o, name) not in allowed:
        raise UsageError(f"--opt {name}={getattr(o, name)}: expected one of {', '.join(allowed)}")


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(text: str, tp) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if args and type(None) in args:  # Optional[X]: "none" clears it
        if text.strip().lower() in ("none", "null", ""):
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if text not in args:
            raise ValueError(f"expected one of {', '.join(map(str, args))}")
        return text
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if tp is int:
        return int(text)
    if tp is float:
        v = float(text)
        if not math.isfinite(v):
            raise ValueError("expected a finite number")
        return v
    if tp is str:
        return text
    raise ValueError(f"options of type {tp} cannot be set from the command line")


def describe(cls) -> str:
    """Every option of a method: name, type, default and its line of help."""
    types = _field_types(cls)
    lines = []
    for f in dataclasses.fields(cls):
        tp = types[f.name]
        if typing.get_origin(tp) is typing.Literal:
            tname = " | ".join(map(str, typing.get_args(tp)))
        else:
            tname = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        lines.append(f"  {f.name} ({tname}, default {f.default!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)


def valid_names(cls) -> str:
    return ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))


def parse_opts(method: str, pairs: list[str], aliases: dict[str, Any] | None = None,
               defaults: dict[str, Any] | None = None):
    """``["noise_std=0.3", ...]`` (plus values given through alias flags) -> the method's
    options dataclass. ``defaults`` replace the method's own defaults where they name its
    options (``train --init``: the model's network). Raises UsageError naming the option
    and the valid ones."""
    from . import options_class

    cls = options_class(method)
    names = {f.name for f in dataclasses.fields(cls)}
    types = _field_types(cls)
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise UsageError(f"--opt {pair}: expected NAME=VALUE (--method {method} options: {valid_names(cls)})")
        if name not in names:
            raise UsageError(f"--opt {name}: not an option of --method {method} (valid: {valid_names(cls)})")
        if name in values:
            raise UsageError(f"--opt {name}: given twice")
        try:
            values[name] = _convert(text, types[name])
        except ValueError as e:
            raise UsageError(f"--opt {name}={text}: {e}") from None
    for flag, (name, value) in (aliases or {}).items():
        if value is None:
            continue
        if name not in names:
            raise UsageError(f"{flag}: --method {method} has no option {name} (valid: {valid_names(cls)})")
        if name in values:
            raise UsageError(f"{flag} and --opt {name} both set {name}; give one")
        values[name] = value
    for name, value in (defaults or {}).items():
        if name in names:
            values.setdefault(name, value)
    return cls(**values)
