"""User-facing errors: one line, naming the field and what is allowed; the CLI exits 2 on them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
    """Bad user input (config, data file, CLI argument). The message is a single line."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


def describe(e: Mapping[str, Any], allowed: str | None = None) -> str:
    """The message (without the field) for one pydantic error: an unknown key says what is
    allowed, a type or range error quotes the bad value. Shared by every config parser."""
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        return f"unknown key; {allowed}" if allowed else "unknown key"
    got = e.get("input")
    if e["type"] != "value_error" and not isinstance(got, dict):
        msg += f" (got {got!r})"
    return msg
