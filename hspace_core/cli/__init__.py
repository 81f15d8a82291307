"""Command line: ``python -m hspace_core COMMAND`` (also installed as ``hspace``).

One module per subcommand, each holding its arguments (``register``) and what it runs; this module only
registers them. Strings and argparse live in this package only: each command builds the engine's
dataclasses and calls the same functions the ComfyUI nodes call. Bad input ends with a one-line
``error:`` message and exit status 2; an interrupt (Ctrl-C) with one line and status 130.
"""

from __future__ import annotations

import argparse

from ..errors import HSpaceError
from .common import say
from . import (demo, demo_directions, direction, edit, edit_folder, info, invert, train_demo, train_probe,
               train_tiny_clip)

COMMANDS = (demo, demo_directions, info, edit, edit_folder, invert, direction, train_demo, train_probe, train_tiny_clip)
INTERRUPTED = 130  # the shell's status for a process ended by SIGINT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hspace_core",
                                description="h-space (Asyrp) editing of unconditional pixel DDPMs")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HSpaceError as e:
        say(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        say(getattr(args, "interrupted", None) or "interrupted")
        return INTERRUPTED
