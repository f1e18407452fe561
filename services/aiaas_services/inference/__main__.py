"""``python -m aiaas_services.inference``: run the inference service."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from aiaas_services.inference.app import InferenceApp
from aiaas_services.inference.settings import InferenceSettings
from aiaas_services.inference.supervisor import resolve_workers, supervise
from aiaas_services.runtime.server import run_service
from aiaas_services.runtime.settings import load_settings


def main(argv: Sequence[str] | None = None) -> None:
    """Read settings from the environment and flags, then serve until SIGTERM/SIGINT."""
    args = list(sys.argv[1:] if argv is None else argv)
    settings = load_settings(InferenceSettings, args)
    try:
        workers = resolve_workers(settings.workers)
    except ValueError as exc:
        sys.exit(f"aiaas-inference: error: {exc}")
    if workers > 1:
        sys.exit(supervise(settings, args, workers))
    run_service(settings, InferenceApp(settings))


if __name__ == "__main__":
    main()
