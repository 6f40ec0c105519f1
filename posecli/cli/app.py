"""The Typer app: every command is registered here, one module per command.

Command modules import only typer and the standard library at import time, so
``posecli --help`` stays instant; torch, cv2 and friends load inside command bodies.
"""

from __future__ import annotations

import typer

from posecli import __version__
from typer.core import TyperGroup


class _PoseCliGroup(TyperGroup):
    """The root command: argument-parser errors (missing or unknown options, unknown
    commands, range checks) become one ``posecli: error:`` line with a hint and exit 2,
    like posecli's own checks; ``posecli`` alone prints the help and exits 0."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        import sys

        from typer._click import exceptions as cx

        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except cx.NoArgsIsHelpError as e:
            typer.echo(e.ctx.get_help())
            code = 0
        except cx.UsageError as e:
            from posecli.cli.common import error_line

            error_line(usage_message(e))
            code = 2
        except cx.Abort:
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def usage_message(e) -> str:
    """``swap: missing option '--pose' (see 'posecli swap --help')`` from a parser error."""
    message = e.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = getattr(e, "ctx", None)
    path = ctx.command_path if ctx is not None else "posecli"
    where = path.split(" ", 1)[1] + ": " if " " in path else ""
    return f"{where}{message} (see '{path} --help')"


app = typer.Typer(
    name="posecli",
    cls=_PoseCliGroup,
    help="Learn identity/pose models from images and videos, and edit with them: "
    "swap identities, animate an image with a video, composite objects into scenes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"posecli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """posecli: identity/pose editing of images and videos."""


# One module per command, posecli/cli/cmd_<name>.py, each defining `register(app)`.
# The order here is the order in --help.
COMMANDS = ["train", "encode", "swap", "animate", "composite", "eval", "synth", "data", "models"]


def _register() -> None:
    import importlib
    import importlib.util

    for name in COMMANDS:
        modname = f"posecli.cli.cmd_{name}"
        if importlib.util.find_spec(modname) is not None:
            importlib.import_module(modname).register(app)


_register()


def main() -> None:
    app(prog_name="posecli")
