"""The Typer app: every command is registered here, one module per command.

Command modules import only typer and the standard library at import time, so
``posecli --help`` stays instant; torch, cv2 and friends load inside command bodies.
"""

from __future__ import annotations

import typer

from posecli import __version__

app = typer.Typer(
    name="posecli",
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
COMMANDS = ["train", "encode", "swap", "animate", "composite", "eval", "synth", "models"]


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
