"""SIGTERM handled like Ctrl-C, in every command.

``kill``, ``timeout``, systemd and ``docker stop`` send SIGTERM, whose default
action ends Python at once: no ``finally`` runs, so temporary files and ffmpeg
children would stay behind. Inside ``sigterm_as_interrupt()`` SIGTERM raises
``Terminated``, a KeyboardInterrupt, so every cleanup written for Ctrl-C runs;
the CLI then exits 143 (Ctrl-C: 130).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (see ``sigterm_as_interrupt``)."""


def _on_sigterm(signum, frame):
    # once: a second SIGTERM during the cleanup would cut it short (SIGKILL still works)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread (no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    prev = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception a stop requested by signal ``signum`` ends with (loops that stop
    at a safe point raise this once they are there)."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def workers_ignore_sigint() -> Iterator[None]:
    """Start worker processes inside this block: they inherit SIGINT blocked, and
    ``ignore_sigint_in_worker`` (their initializer) then ignores it. Ctrl-C reaches the
    whole process group; the parent alone handles it (stopping its pool), so no worker
    prints a ``KeyboardInterrupt`` traceback. A Ctrl-C that arrives meanwhile is
    delivered to the parent when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_sigint_in_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
