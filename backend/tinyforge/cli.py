"""The `tinyforge` command.

Each area of the product registers its own subcommands (`register(subparsers)` in the
module named below), so the ML engine, connectors, serving and the platform stay separate
and none of them imports another to get a command line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tinyforge import __version__
from tinyforge.errors import TinyforgeError

COMMAND_MODULES = [
    "tinyforge.ml.commands",  # train, generate, validate
    "tinyforge.exports.commands",  # export
    "tinyforge.llama_cpp",  # llama-cpp install: llama.cpp's programs and converter, built from source
    "tinyforge.evaluation.commands",  # eval
    "tinyforge.connectors.commands",  # ingest
    "tinyforge.serving.commands",  # serve
    "tinyforge.demo",  # demo: the whole platform on one machine
    "tinyforge.deployments.commands",  # serve-platform (the platform's inference service)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyforge",
        description="TinyForgeAI: fine-tune small language models on your own data and serve them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tinyforge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TinyforgeError as exc:
        # A user's mistake: say what is wrong, no traceback, exit 2 like argparse does.
        print(f"tinyforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
