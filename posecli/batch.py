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

    def raise_if_failed(self, where: str | None = None) -> None:
        if self.failed:
            raise failure_summary([msg for _, msg in self.failed], len(self.done), len(self.skipped), where)


def failure_summary(failed: list[str], written: int, skipped: int = 0, where: str | None = None) -> PoseCliError:
    """The end of a --keep-going batch with failures, in the one wording every command uses:
    each failure on its own line, then ``F of N items failed (listed above); the other W
    were written to OUT``. Returned to raise (exit 1)."""
    for msg in failed:
        log.error(f"failed: {msg}")
    total = len(failed) + written + skipped
    done = (f"the other {written} were written" + (f" to {where}" if where and where != "-" else "")) if written \
        else "nothing was written"
    kept = f", {skipped} existed (--skip-existing)" if skipped else ""
    return PoseCliError(f"{len(failed)} of {total} items failed (listed above); {done}{kept}")


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


# -- --shard I/N: N independent runs (or the ranks of a torchrun job) share one batch ---------

@dataclass(frozen=True)
class Shard:
    """This run's part ``index`` of ``count``: the items whose name hashes to ``index``."""

    index: int
    count: int
    source: str = "--shard"  # or "torchrun" (from RANK / WORLD_SIZE)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, name: str) -> bool:
        return shard_index(name, self.count) == self.index


def shard_index(name: str, count: int) -> int:
    """The part ``name`` belongs to: SHA-1 of its UTF-8 bytes modulo ``count``, the same on
    every machine, run and Python (unlike ``hash()``, which is salted per process)."""
    import hashlib

    digest = hashlib.sha1(str(name).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """'I/N' with 0 <= I < N; a UsageError otherwise."""
    import re

    from .errors import UsageError

    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise UsageError(f"--shard {text}: expected I/N, this run's part I of N (0 <= I < N), e.g. --shard 0/4")
    index, count = int(m[1]), int(m[2])
    if count < 1 or index >= count:
        raise UsageError(f"--shard {text}: I must be 0 to N-1 (parts are numbered from 0)")
    return Shard(index, count)


def resolve_shard(text: str | None, env=None) -> Shard | None:
    """--shard when given (``0/1``: every item); else, under torchrun (RANK and WORLD_SIZE
    set, WORLD_SIZE > 1), this process's rank; else None (every item)."""
    import os

    from .errors import UsageError

    if text is not None:
        shard = parse_shard(text)
        return None if shard.count == 1 else shard
    env = os.environ if env is None else env
    if env.get("WORLD_SIZE") and env.get("RANK"):
        try:
            rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        except ValueError:
            raise UsageError(f"RANK={env['RANK']!r} WORLD_SIZE={env['WORLD_SIZE']!r}: expected numbers "
                             f"(set by torchrun)") from None
        if world > 1:
            if not 0 <= rank < world:
                raise UsageError(f"RANK={rank} is outside WORLD_SIZE={world}")
            return Shard(rank, world, "torchrun")
    return None


def take_shard(items: Iterable[T], shard: Shard | None, key: Callable[[T], str] = str) -> list[T]:
    """The items this run owns (all when ``shard`` is None), in their order; ``key`` gives each
    item's name (a file name, not a machine-dependent absolute path)."""
    items = list(items)
    if shard is None:
        return items
    mine = [it for it in items if shard.owns(key(it))]
    log.info(f"shard {shard} ({shard.source}): {len(mine)} of {len(items)} item(s)")
    return mine


def shard_path(path: str | Path, shard: Shard | None) -> Path:
    """A single output file of a sharded run: ``codes.npz`` -> ``codes.shard0of4.npz`` (each
    part writes its own; unchanged without a shard)."""
    p = Path(path)
    return p if shard is None else p.with_name(f"{p.stem}.shard{shard.index}of{shard.count}{p.suffix}")
