"""posecli models: list the available models and their metadata."""

from __future__ import annotations

import typer

from posecli.cli.common import Debug, Json, Quiet, Verbose, cli_errors, emit_json


def models(
    json_out: Json = False,
    debug: Debug = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
) -> None:
    """List models: the user data folder first, then the bundled weights/ folder.

    A NAME given to -m/--model resolves to NAME.safetensors in these folders.

    Example: posecli models --json
    """
    with cli_errors(debug, quiet, verbose):
        from posecli.modelfile import list_models, search_dirs

        found = list_models()
        if json_out:
            emit_json({"search_dirs": [str(d) for d in search_dirs()], "models": found})
            return
        if not found:
            typer.echo("no models found in: " + ", ".join(str(d) for d in search_dirs()), err=True)
            return
        for m in found:
            if "error" in m:
                typer.echo(f"{m['name']:<16} unreadable: {m['error']}")
                continue
            meta = m["meta"]
            tr = meta.get("training", {})
            extra = ", ".join(f"{k} {tr[k]}" for k in ("data", "loss", "epochs") if k in tr)
            typer.echo(f"{m['name']:<16} {meta['method']:<6} {meta['image_size']}px  identity {meta['identity_dim']}"
                       f"  pose {meta['pose_dim']}  {m['size_bytes'] / 1e6:.1f} MB  {m['path']}"
                       + (f"  ({extra})" if extra else ""))


def register(app: typer.Typer) -> None:
    app.command("models")(models)
