"""`tinyforge` subcommands of this area; see tinyforge/cli.py."""


def register(subparsers) -> None:
    """Add this area's subcommands to the `tinyforge` parser."""
