"""`aiaas`: the command line for the suite.

Each command group lives in its own module under ``aiaas.cli`` exposing ``register(subparsers)``; it
adds its sub-commands with ``set_defaults(func=...)`` where ``func(args) -> int`` is the exit code.
Exit codes: 0 success, 1 the server said no (the message is printed), 2 bad usage, 3 unreachable target.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command-group modules, in help order. Add yours here.
COMMAND_MODULES: tuple[str, ...] = (
    "suite_commands",
    "registry_commands",
    "trace_commands",
    "inference_commands",
    "training_commands",
    "serialization_commands",
    "usage_commands",
    "monitor_commands",
    "explain_commands",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command group registered."""
    parser = argparse.ArgumentParser(prog="aiaas", description="AI models as a service: command line.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"aiaas.cli.{module_name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
