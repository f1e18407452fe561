"""Name rules every service enforces on the names it passes to the registry (model, artifact, alias)."""

from __future__ import annotations

from aiaas.wire import is_valid_alias, is_valid_name
from aiaas_services.runtime.errors import InvalidArgument


def check_name(value: str, what: str = "model name") -> str:
    """A model or artifact name: letters, digits, '-', '_', '.', 1-128 chars, not starting with '.'."""
    if not is_valid_name(value):
        raise InvalidArgument(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '-', '_' or '.', not starting with '.'"
            " (no '/', spaces or '..')"
        )
    return value


def check_alias(value: str) -> str:
    """An alias: letters, digits, '-', '_', 1-64 chars, and not a plain number (that means a version)."""
    if not is_valid_alias(value):
        raise InvalidArgument(f"invalid alias {value!r}: use 1-64 letters, digits, '-' or '_', not only digits")
    return value
