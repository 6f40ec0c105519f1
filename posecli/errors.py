"""One error family for everything a user can get wrong, and the exit codes.

Library code raises these; the CLI turns them into one line on stderr and the
exit code they carry. Anything else reaching the CLI is a bug (exit 1, with a
traceback under --debug).
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # an item or the whole job failed
    USAGE = 2  # bad flags or arguments
    INTERRUPTED = 130  # Ctrl-C (SIGINT)
    TERMINATED = 143  # SIGTERM (kill, timeout, systemd, docker stop)


class PoseCliError(Exception):
    """A problem the user can fix; the message names the file and the fix."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class UsageError(PoseCliError):
    """Flags or arguments that do not fit together (exit code 2)."""

    exit_code = ExitCode.USAGE


class InputError(PoseCliError):
    """An input file that is missing, unreadable or of the wrong kind."""


class OutputExistsError(PoseCliError):
    """An output path exists and neither --overwrite nor --skip-existing was given."""

    def __init__(self, path: str | Path):
        super().__init__("exists; pass --overwrite to replace it or --skip-existing to keep it", path)


class OutputWriteError(PoseCliError):
    """An output that cannot be written: a read-only folder, a full disk (``fileio.write_errors``)."""


class ModelFileError(PoseCliError):
    """A model file that cannot be read as a posecli model."""


class MissingWeightsError(PoseCliError):
    """Pretrained weights that cannot be downloaded here; the message says where to put them.
    ``short``: the one-line notice where a fallback is used (the full message goes to -v)."""

    def __init__(self, message: str, path: str | Path | None = None, short: str | None = None):
        super().__init__(message, path)
        self.short = short or str(self)
