"""The `remedies` command line: one module per verb group, each with `register(sub)`."""

from remedies.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
