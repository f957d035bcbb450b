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


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line (what is wrong, and where the help is), not the whole usage
    followed by the error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for launchers (--nproc)
    try:
        return int(args.run(args) or 0)
    except HotrecError as e:
        print(f"hotrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hotrec {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the machine's, not hotrec's: a path that cannot be made or opened
        where = f"{e.filename}: " if e.filename else ""
        print(f"hotrec {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        why = peer_failure(e)
        if why is None:
            raise
        print(f"hotrec {args.command}: stopped: {why}", file=sys.stderr)
        return 1


def peer_failure(e: RuntimeError) -> str | None:
    """A collective that failed because another rank stopped or stopped answering: one line
    (the failing rank reports its own error); None for any other error."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    text = str(e)
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "another rank stopped answering (a collective timed out: train.dist_timeout_s)"
    if "Connection closed by peer" in text or "Connection reset" in text or "NCCL" in text:
        return "another rank failed (its error says why)"
    return None


if __name__ == "__main__":
    sys.exit(main())
