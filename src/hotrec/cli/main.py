"""`hotrec` entry point: dispatches to subcommands, turns user errors into one-line messages."""

from __future__ import annotations

import argparse
import sys

from hotrec import __version__
from hotrec.cli import (
    demo,
    evaluate,
    info,
    loadtest,
    plan,
    prepare,
    profile,
    serve,
    serve_profile,
    synth,
    train,
)
from hotrec.errors import HotrecError

COMMANDS = (
    synth,
    prepare,
    info,
    profile,
    plan,
    train,
    evaluate,
    demo,
    serve_profile,
    serve,
    loadtest,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotrec",
        description="Train and serve DLRM-family recommendation models fast on CPU-GPU machines.",
    )
    parser.add_argument("--version", action="version", version=f"hotrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except HotrecError as e:
        print(f"hotrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hotrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
