"""``python -m aiaas_services.registry``: run the registry service.

Two operator commands share its settings: ``generate-key`` prints a new key-encryption key, and
``rotate-keys`` re-wraps every blob's data key with the keyring's first key (blobs are not rewritten).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from aiaas_services.registry.app import RegistryApp, open_blobs
from aiaas_services.registry.encryption import EncryptedBlobStore
from aiaas_services.registry.keyring import EncryptionConfigError, generate_key
from aiaas_services.registry.settings import RegistrySettings
from aiaas_services.runtime.errors import DomainError
from aiaas_services.runtime.server import run_service
from aiaas_services.runtime.settings import load_settings


def rotate_keys(settings: RegistrySettings) -> int:
    """Re-wrap data keys not under the primary key; prints what it did. Safe to run while the registry serves."""
    blobs = open_blobs(settings, settings.home_path / "registry")
    if not isinstance(blobs, EncryptedBlobStore):
        print("registry: encryption is off (no encryption_key_file / encryption_keys); nothing to rotate")
        return 2
    report = blobs.rotate()
    print(f"rotated to key {blobs.keyring.primary}: {report.rewrapped} re-wrapped, {report.already} already under it")
    for reason in report.failed:
        print(f"registry: not re-wrapped (left as it was): {reason}", file=sys.stderr)
    if report.failed:
        print(
            f"registry: {len(report.failed)} envelopes were not rotated; fix the keyring and run again", file=sys.stderr
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Read settings from the environment and flags, then serve until SIGTERM/SIGINT (or run a command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in ("generate-key", "rotate-keys") else "serve"
    if command == "generate-key":
        print(generate_key())
        return
    settings = load_settings(RegistrySettings, args)
    try:
        if command == "rotate-keys":
            raise SystemExit(rotate_keys(settings))
        app = RegistryApp(settings)
    except (EncryptionConfigError, DomainError) as exc:
        print(f"registry: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run_service(settings, app)


if __name__ == "__main__":
    main()
