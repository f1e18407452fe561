"""``python -m aiaas_services.serialization``: run the serialization service."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from aiaas_services.runtime.server import run_service
from aiaas_services.runtime.settings import load_settings
from aiaas_services.serialization.app import SerializationApp
from aiaas_services.serialization.settings import SerializationSettings


def main(argv: Sequence[str] | None = None) -> None:
    """Read settings from the environment and flags, then serve until SIGTERM/SIGINT."""
    settings = load_settings(SerializationSettings, sys.argv[1:] if argv is None else argv)
    run_service(settings, SerializationApp(settings))


if __name__ == "__main__":
    main()
