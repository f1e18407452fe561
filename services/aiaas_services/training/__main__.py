"""``python -m aiaas_services.training``: run the training service."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from aiaas_services.runtime.server import run_service
from aiaas_services.runtime.settings import load_settings
from aiaas_services.training.app import TrainingApp
from aiaas_services.training.settings import TrainingSettings


def main(argv: Sequence[str] | None = None) -> None:
    """Read settings from the environment and flags, then serve until SIGTERM/SIGINT."""
    settings = load_settings(TrainingSettings, sys.argv[1:] if argv is None else argv)
    run_service(settings, TrainingApp(settings))


if __name__ == "__main__":
    main()
