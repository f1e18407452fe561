"""The codecs' one repeated move: copy a domain object's fields into a message whose fields have the same names."""

from __future__ import annotations

from typing import Any


def same_named(source: object, *names: str) -> dict[str, Any]:
    """``{name: source.<name>}`` for each of ``names``: keyword arguments for a message constructor.

    A codec passes these for the fields that need no conversion and spells out the rest; a name the
    message does not have fails at once (the constructor raises ValueError), as a misspelt keyword would.
    """
    return {name: getattr(source, name) for name in names}
