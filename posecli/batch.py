"""Batch semantics shared by every command that processes several items.

- an existing output is refused unless ``overwrite`` (or skipped with ``skip_existing``);
- the batch stops at the first failing item unless ``keep_going``, which goes on
  and reports every failure at the end (exit code 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from .errors import OutputExistsError, PoseCliError

log = logging.getLogger("posecli")
T = TypeVar("T")


@dataclass
class BatchResult:
    done: list = field(default_factory=list)  # whatever each item's function returned
    skipped: list[str] = field(default_factory=list)  # outputs that existed (--skip-existing)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (item name, message)

    def raise_if_failed(self) -> None:
        if self.failed:
            for name, msg in self.failed:
                log.error(f"failed: {msg}")
            raise PoseCliError(f"{len(self.failed)} of {len(self.failed) + len(self.done) + len(self.skipped)} items failed")


def run_batch(items: Iterable[T], fn: Callable[[T], object], *, output_of: Callable[[T], Path | None] = lambda _: None,
              name_of: Callable[[T], str] = str, overwrite: bool = False, skip_existing: bool = False,
              keep_going: bool = False, bar=None) -> BatchResult:
    """Run ``fn`` on each item, honouring overwrite / skip-existing / keep-going."""
    res = BatchResult()
    for item in items:
        out = output_of(item)
        try:
            if out is not None and Path(out).exists() and not overwrite:
                if skip_existing:
                    res.skipped.append(str(out))
                    continue
                raise OutputExistsError(out)
            res.done.append(fn(item))
        except PoseCliError as e:
            if not keep_going:
                raise
            res.failed.append((name_of(item), str(e)))
        finally:
            if bar is not None:
                bar.update(1)
    return res
