#!/usr/bin/env python3
"""Generate man/posecli.1 (roff, man(7) macros) from the Typer app.

    python scripts/gen_man.py                      # the page on stdout
    python scripts/gen_man.py -o man/posecli.1     # write it (atomically)
    python scripts/gen_man.py --check man/posecli.1  # exit 1 if it is stale

Typer >= 0.26 vendors its own Click (click-man cannot read the app), so this
walks the objects ``typer.main.get_command`` returns. The output depends only
on the CLI definition and ``posecli.__version__`` (no date), so a test can
compare the committed page with a fresh one.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROG = "posecli"

DESCRIPTION_EXTRA = """\
Inputs may be a file, a folder, a quoted glob or \\- (stdin, for a single image).
\\-o/\\-\\-output is a file, or a folder when there are several results; \\- writes a
single image to stdout. Existing outputs are never replaced without \\-\\-overwrite;
\\-\\-skip\\-existing keeps them and skips their items. With \\-\\-json, results go to
stdout as JSON and logs and progress to stderr. Errors are one line on stderr;
\\-\\-debug adds the traceback."""

EXIT_STATUS = [
    ("0", "Success."),
    ("1", "An item or the whole job failed (the error is one line on stderr); an output that cannot be "
     "written says \\fIOUT\\fR: cannot write (permission denied | disk full)."),
    ("2", "Usage error: bad options or arguments (the argument parser's too: one line with a hint)."),
    ("130", "Interrupted (Ctrl\\-C); no half\\-written outputs are left behind."),
    ("143", "Terminated (SIGTERM, as sent by kill, timeout, systemd or docker stop), handled like Ctrl\\-C: "
     "nothing is left behind."),
]

ENVIRONMENT = [
    ("TORCH_HOME", "Pretrained VGG and LPIPS backbones are cached under "
     "\\fI$TORCH_HOME/hub/checkpoints\\fR (default \\fI~/.cache/torch\\fR). "
     "Offline, place the weight files there."),
    ("U2NET_HOME", "Background\\-removal (rembg) matting models: \\fI$U2NET_HOME/models/u2net/u2net.onnx\\fR "
     "(without it rembg uses REMBG_HOME, XDG_DATA_HOME/rembg or ~/.rembg); the notice names the exact path."),
    ("POSECLI_OFFLINE", "When set (not 0): never download pretrained weights (VGG16, LPIPS's AlexNet, "
     "rembg's U\\^2\\-Net); use them only when already in place, else fall back as documented."),
    ("POSECLI_RETRY_DOWNLOADS", "When set (not 0): try a download of pretrained weights again even though "
     "one failed within the last day (failures are remembered in posecli's cache folder)."),
    ("POSECLI_CACHE_DIR", "posecli's cache folder (default: the platform's user cache folder, "
     "\\fI~/.cache/posecli\\fR on Linux); it remembers failed downloads."),
    ("POSECLI_WEIGHTS", "Overrides the bundled \\fIweights/\\fR folder searched for model names."),
    ("OPENCV_IO_MAX_IMAGE_PIXELS", "Largest image (in pixels) OpenCV agrees to decode; "
     "a guard against decompression bombs."),
]

FILES = [
    ("weights/", "Bundled models next to the installed package; "
     "\\fB\\-m\\fR \\fINAME\\fR resolves to \\fINAME\\fR.safetensors here "
     "(or in \\fB$POSECLI_WEIGHTS\\fR)."),
    ("~/.local/share/posecli/models/", "The user data folder for trained models "
     "(platformdirs user_data_path('posecli')/models); searched before the bundled "
     "weights, so a model here shadows a bundled one of the same name."),
]


# ---------------------------------------------------------------- roff text

def esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, non-ASCII characters."""
    out = []
    for ch in text.replace("\\", "\\e").replace("-", "\\-"):
        out.append(ch if ord(ch) < 128 else f"\\[u{ord(ch):04X}]")
    return "".join(out)


def line(text: str) -> str:
    """One escaped text line; a leading . or ' would be read as a request."""
    text = esc(text)
    return "\\&" + text if text[:1] in (".", "'") else text


def is_literal(ln: str) -> bool:
    """Lines kept as they are: indented, shell prompts and example commands."""
    s = ln.lstrip()
    return ln != s or s.startswith(("$ ", f"{PROG} "))


def help_text(text: str | None) -> list[str]:
    """A docstring as roff: paragraphs filled, example lines kept verbatim.

    Click's ``\\b`` marker (a paragraph not to rewrap) is honoured too.
    """
    if not text:
        return []
    text = inspect.cleandoc(text).partition("\f")[0]
    out: list[str] = []
    for para in text.split("\n\n"):
        lines = []
        for ln in para.split("\n"):
            if not ln.strip():
                continue
            # "Example: posecli ..." -> the label as text, the command verbatim
            label, _, rest = ln.strip().partition(" ")
            if label in ("Example:", "Examples:") and rest.strip().startswith(f"{PROG} "):
                lines += [label, "  " + rest.strip()]
            else:
                lines.append(ln.rstrip())
        if not lines:
            continue
        raw = lines[0].strip() == "\b"
        if raw:
            lines = lines[1:]
        out.append(".PP")
        prose: list[str] = []
        i = 0
        while i < len(lines):
            if raw or is_literal(lines[i]):
                block = []
                while i < len(lines) and (raw or is_literal(lines[i])):
                    block.append(lines[i])
                    i += 1
                if prose:
                    out.extend(line(p) for p in prose)
                    prose = []
                width = min(len(b) - len(b.lstrip()) for b in block)
                out += [".RS 4", ".nf"] + [line(b[width:]) for b in block] + [".fi", ".RE"]
            else:
                prose.append(lines[i].strip())
                i += 1
        out.extend(line(p) for p in prose)
    return out


# ------------------------------------------------------------ the Typer app

def make_ctx(cmd, name: str, parent=None):
    """A context without parsing anything (so no callbacks run)."""
    return cmd.context_class(cmd, info_name=name, parent=parent, **cmd.context_settings)


def subcommands(cmd, ctx) -> list[tuple[str, object]]:
    if not hasattr(cmd, "commands"):
        return []
    subs = ((n, cmd.get_command(ctx, n)) for n in cmd.list_commands(ctx))
    return [(n, c) for n, c in subs if c is not None and not c.hidden]


def walk(cmd, ctx):
    """Every visible (sub)command below ``cmd``, depth first, as (cmd, ctx)."""
    for name, sub in subcommands(cmd, ctx):
        sctx = make_ctx(sub, name, ctx)
        yield sub, sctx
        yield from walk(sub, sctx)


def root_command(app=None):
    import typer.main

    if app is None:
        from posecli.cli.app import app

    cmd = typer.main.get_command(app)
    return cmd, make_ctx(cmd, PROG)


def opt_names(opts) -> str:
    # Short options first (as click's help does); this also fixes the order of the
    # help option's names, which click builds from a set.
    return ", ".join(f"\\fB{esc(o)}\\fR" for o in sorted(opts, key=lambda o: o.startswith("--")))


def param_value(p, ctx) -> str:
    """The metavar or type shown after an option taking a value."""
    if getattr(p, "display_type_rich", None):
        return p.display_type_rich(ctx) or ""
    return p.metavar or (p.name or "").upper()


def default_text(p) -> str | None:
    d = p.default
    if callable(d):
        return "(dynamic)"
    if d is None or d is False or d in ((), []) or (getattr(p, "count", False) and d == 0):
        return None
    if getattr(p, "is_flag", False):
        if not p.secondary_opts:
            return None  # a plain flag defaulting to on cannot be turned off: not worth saying
        return p.opts[0] if d else p.secondary_opts[0]
    if isinstance(d, (list, tuple)):
        return ", ".join(str(getattr(x, "value", x)) for x in d)
    return str(getattr(d, "value", d))


def params(cmd, ctx) -> list[str]:
    out: list[str] = []
    visible = [p for p in cmd.get_params(ctx) if not getattr(p, "hidden", False)]
    args = [p for p in visible if p.param_type_name == "argument"]
    opts = [p for p in visible if p.param_type_name == "option"]
    for title, group in (("Arguments:", args), ("Options:", opts)):
        if not group:
            continue
        out += [".PP", title]
        for p in group:
            if p.param_type_name == "argument":
                tag = f"\\fI{esc(p.metavar or p.name)}\\fR" + ("..." if p.nargs != 1 else "")
                tag += f" {esc(param_value(p, ctx))}"
            else:
                tag = opt_names(p.opts)
                if p.secondary_opts:
                    tag += " / " + opt_names(p.secondary_opts)
                if not p.is_flag and not getattr(p, "count", False):
                    tag += f" \\fI{esc(param_value(p, ctx))}\\fR"
            extra = []
            default = default_text(p)
            if default is not None:
                extra.append(f"Default: {default}.")
            said = (getattr(p, "help", None) or "").lower()
            if (getattr(p, "count", False) or getattr(p, "multiple", False)) and "repeat" not in said:
                extra.append("Repeatable.")
            if p.required:
                extra.append("Required.")
            if p.envvar:
                envs = [p.envvar] if isinstance(p.envvar, str) else list(p.envvar)
                extra.append("Environment: " + ", ".join(envs) + ".")
            text = " ".join(filter(None, [(getattr(p, "help", None) or "").strip()] + extra))
            out += [".TP", tag] + [line(t.strip()) for t in text.split("\n") if t.strip()]
    return out


def usage(cmd, ctx) -> list[str]:
    pieces = " ".join(cmd.collect_usage_pieces(ctx))
    return [".PP", f"\\fB{esc(ctx.command_path)}\\fR {esc(pieces)}".rstrip()]


def short_help(cmd) -> str:
    return cmd.get_short_help_str(limit=120)


# ------------------------------------------------------------------ the page

def examples(root, rctx) -> list[str]:
    """Example commands from the docstrings (lines that start with 'posecli ')."""
    found: list[str] = []
    for cmd, _ in walk(root, rctx):
        for ln in inspect.cleandoc(cmd.help or "").split("\n"):
            s = ln.strip()
            for label in ("Examples:", "Example:", "$ "):
                s = s.removeprefix(label).strip()
            if s.startswith(f"{PROG} ") and s not in found:
                found.append(s)
    base = [f"{PROG} \\-\\-help", f"{PROG} COMMAND \\-\\-help"]
    out = [".PP", "Show the help of the program and of one command:", ".RS 4", ".nf"] + base + [".fi", ".RE"]
    if found:
        out += [".PP", "From the commands' descriptions:", ".RS 4", ".nf"]
        out += [line(f) for f in found] + [".fi", ".RE"]
    return out


def method_options() -> list[str]:
    """Every training method's options (train --opt NAME=VALUE), from the registry."""
    import dataclasses

    from posecli.training import METHODS, options_class

    out = [".SH METHOD OPTIONS", ".PP", "Set with \\fBtrain \\-\\-method\\fR \\fIMETHOD\\fR "
           "\\fB\\-\\-opt\\fR \\fINAME=VALUE\\fR (repeatable); "
           "\\fBtrain \\-\\-method\\fR \\fIMETHOD\\fR \\fB\\-\\-list\\-opts\\fR prints them. "
           "LORD's flags of 0.1.0 (\\-\\-lr\\-generator, \\-\\-noise\\-std, ...) are aliases for one more "
           "release; \\-\\-opt is preferred."]
    for name in METHODS:
        out += [".SS " + esc(name)]
        for f in dataclasses.fields(options_class(name)):
            out += [".TP", f"\\fB{esc(f.name)}\\fR (default {esc(repr(f.default))})", line(f.metadata["help"])]
    return out


def render(app=None) -> str:
    """The whole page for ``app`` (default: posecli's own Typer app)."""
    from posecli import __version__

    root, rctx = root_command(app)
    desc = inspect.cleandoc(root.help or "")
    summary = desc.split("\n\n")[0].replace("\n", " ").split(": ")[0].split(". ")[0].rstrip(".")
    summary = summary[:1].lower() + summary[1:]
    top = subcommands(root, rctx)

    out = [
        f'.\\" Generated by scripts/gen_man.py from the posecli CLI; do not edit, run: make man',
        f'.TH POSECLI 1 "" "{PROG} {esc(__version__)}" "User Commands"',
        ".SH NAME",
        f"{PROG} \\- {esc(summary)}",
        ".SH SYNOPSIS",
        ".nf",
        f"\\fB{PROG}\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
    ]
    out += [f"\\fB{PROG} {esc(n)}\\fR [\\fIOPTIONS\\fR] ..." for n, _ in top]
    out += [".fi", ".SH DESCRIPTION"] + help_text(root.help)
    out += [".PP"] + DESCRIPTION_EXTRA.split("\n")

    out += [".SH COMMANDS"]
    for name, cmd in top:
        out += [".TP", f"\\fB{esc(name)}\\fR", line(short_help(cmd))]
    for cmd, ctx in walk(root, rctx):
        out += [f'.SS "{esc(ctx.command_path)}"'] + usage(cmd, ctx) + help_text(cmd.help)
        subs = subcommands(cmd, ctx)
        if subs:
            out += [".PP", "Commands:"]
            for n, sub in subs:
                out += [".TP", f"\\fB{esc(n)}\\fR", line(short_help(sub))]
        out += params(cmd, ctx)

    out += method_options()
    out += [".SH OPTIONS", ".PP", f"Options of \\fB{PROG}\\fR itself, given before the command:"]
    out += params(root, rctx)[2:]  # without the "Options:" heading
    out += [".SH EXIT STATUS"]
    for code, text in EXIT_STATUS:
        out += [".TP", f"\\fB{code}\\fR", text]
    out += [".SH ENVIRONMENT"]
    for var, text in ENVIRONMENT:
        out += [".TP", f"\\fB{esc(var)}\\fR", text]
    out += [".SH FILES"]
    for path, text in FILES:
        out += [".TP", f"\\fI{esc(path)}\\fR", text]
    out += [".SH EXAMPLES"] + examples(root, rctx)
    out += [".SH SEE ALSO", f"\\fB{PROG} COMMAND \\-\\-help\\fR,", ".BR ffmpeg (1)"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, help="write the page here (atomically) instead of stdout")
    ap.add_argument("--check", type=Path, metavar="PAGE", help="exit 1 if PAGE differs from a fresh page")
    a = ap.parse_args(argv)
    page = render()
    if a.check:
        try:
            same = a.check.read_text(encoding="utf-8") == page
        except OSError:
            same = False
        if not same:
            print(f"{a.check} is out of date: run make man", file=sys.stderr)
            return 1
        return 0
    if a.output:
        # Not fileio.atomic_path: its mkstemp file is mode 0600; a man page is 0644.
        tmp = a.output.with_name(f".{a.output.name}.tmp")
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, a.output)
        return 0
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
