"""Options and behaviour every command shares; see README "Conventions".

Import-light: only typer and the standard library.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from typing import Annotated, Iterator

import typer

from posecli.errors import ExitCode, PoseCliError

log = logging.getLogger("posecli")

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable results on stdout.")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps (auto: CUDA when present).")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors on stderr; no progress bars.")]
Verbose = Annotated[int, typer.Option("-v", "--verbose", count=True, help="More detail on stderr (repeatable).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
SkipExisting = Annotated[bool, typer.Option("--skip-existing", help="Keep existing outputs and skip their items (resume a batch).")]
KeepGoing = Annotated[bool, typer.Option("--keep-going", help="Do not stop at the first failing item; report all failures at the end.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed.")]
ModelName = Annotated[str, typer.Option("-m", "--model", help="Model name (see `posecli models`) or .safetensors file.",
                                        metavar="NAME|FILE")]
Crop = Annotated[str, typer.Option("--crop", help="center | face | none: how images become the model's square input.",
                                   metavar="MODE")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.", metavar="N")]


def default_model_option(default: str):
    """-m for commands that fall back on a bundled model when it is not given."""
    from typing import Optional

    return Annotated[Optional[str], typer.Option(
        "-m", "--model", metavar="NAME|FILE",
        help=f"Model name (see `posecli models`) or .safetensors file [default: {default}].")]


NOTICE = 25  # between INFO and WARNING: shown at the default level, silenced by -q
logging.addLevelName(NOTICE, "NOTICE")


def confirm(message: str) -> None:
    """The one line a command prints on success (stderr; -q silences it)."""
    log.log(NOTICE, message)


def setup_logging(quiet: bool = False, verbose: int = 0) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else NOTICE)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("posecli: %(message)s"))
    root = logging.getLogger("posecli")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Notices (fallbacks chosen, files skipped) are warnings: shown unless -q.


def error_line(message: str) -> None:
    # One line even for multi-line messages (torch's RuntimeErrors have several).
    message = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    typer.echo(f"posecli: error: {message}", err=True)


@contextlib.contextmanager
def cli_errors(debug: bool = False, quiet: bool = False, verbose: int = 0) -> Iterator[None]:
    """Turn library errors into one line on stderr and an exit code.

    SIGTERM is handled like Ctrl-C here, for every command (``posecli.signals``):
    cleanups run, nothing is left behind, exit 143 (Ctrl-C: 130).
    """
    from posecli.signals import Terminated, sigterm_as_interrupt

    setup_logging(quiet, verbose)
    try:
        with sigterm_as_interrupt():
            yield
    except typer.Exit:
        raise
    except PoseCliError as e:
        if debug:
            traceback.print_exc()
        error_line(str(e))
        raise typer.Exit(int(e.exit_code)) from None
    except KeyboardInterrupt as e:
        if debug:
            traceback.print_exc()
        term = isinstance(e, Terminated)
        error_line("terminated (SIGTERM)" if term else "interrupted")
        raise typer.Exit(int(ExitCode.TERMINATED if term else ExitCode.INTERRUPTED)) from None
    except OSError as e:  # a write error no writer mapped is the user's; other OSErrors are bugs
        if debug:
            traceback.print_exc()
        message = os_error_message(e)
        error_line(message or f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        raise typer.Exit(int(ExitCode.FAILED)) from None
    except Exception as e:  # a bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        error_line(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        raise typer.Exit(int(ExitCode.FAILED)) from None


def os_error_message(e: OSError) -> str | None:
    """A write error no writer mapped (``fileio.write_errors``): ``OUT: cannot write (disk full)``,
    naming the user's output rather than a temporary file; None for other OSErrors (bugs)."""
    from posecli.fileio import WRITE_ERRNOS, user_path

    reason = WRITE_ERRNOS.get(e.errno)
    if reason is None:
        return None
    name = user_path(e.filename)
    if reason.startswith("permission denied") and e.errno in (1, 13):  # EPERM, EACCES: reading too
        return f"{name}: {reason}" if name else reason
    return f"{name}: cannot write ({reason})" if name else f"cannot write ({reason})"


def emit_json(obj) -> None:
    import json

    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


# -- --shard (issue 16 item 17): one option for every batch command; posecli.batch has the rule ----

def shard_option():
    """--shard I/N, shared by swap, encode and composite (and any batch command)."""
    from typing import Optional

    return Annotated[Optional[str], typer.Option(
        "--shard", metavar="I/N", show_default=False,
        help="Do part I of N (0 <= I < N) of the items, picked by a stable hash of each item's file name: N runs "
             "with the same arguments (on any machines) cover the job exactly once; add --skip-existing to resume. "
             "Under torchrun the rank and world size are used when --shard is not given (--shard 0/1: all items).")]
