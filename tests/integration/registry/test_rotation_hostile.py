"""Key rotation (``python -m aiaas_services.registry rotate-keys``) against what goes wrong: the old key left
out of the keyring, a corrupt envelope, a malformed key file, encryption off. Each answers with a clear
message and a non-zero exit, never a traceback; what could not be rotated is left as it was and nothing
is lost (the blobs are served afterwards with the right keyring)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiaas_services.registry.sealing import SEGMENT_BYTES
from tests.integration.registry.test_encryption_at_rest import content_of, fetch, new_key, push_and_check, start


def rotate(home: Path, key_file: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIAAS_HOME": str(home), "AIAAS_REGISTRY_ENCRYPTION_KEY_FILE": str(key_file or "")}
    return subprocess.run(
        [sys.executable, "-m", "aiaas_services.registry", "rotate-keys"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def envelopes(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((home / "registry" / "blobs" / "keys").glob("*/*")) if p.is_file()}


async def test_rotation_refusals_are_clear_and_lose_nothing(tmp_path: Path) -> None:
    home, keys = tmp_path / "home", tmp_path / "registry.keys"
    old, new = new_key(), new_key()
    keys.write_text(old + "\n")
    first, second = content_of(SEGMENT_BYTES + 7), content_of(3000)
    service = start(home, keys)
    try:
        v1, _ = await push_and_check(service.address, first, "rot-a")
        v2, _ = await push_and_check(service.address, second, "rot-b")
    finally:
        service.terminate()
    before = envelopes(home)
    assert len(before) == 2

    # The old key left out: nothing can be re-wrapped, every envelope stays as it was.
    keys.write_text(new + "\n")
    done = rotate(home, keys)
    assert done.returncode == 1, done
    assert "keyring does not hold" in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert envelopes(home) == before

    # One envelope corrupt: the other is rotated, the corrupt one is named and left alone.
    corrupt = next(iter(before))
    (path,) = (home / "registry" / "blobs" / "keys").glob(f"*/{corrupt}")
    path.write_bytes(b"{not json")
    keys.write_text(f"{new}\n{old}\n")
    done = rotate(home, keys)
    assert done.returncode == 1, done
    assert "1 re-wrapped" in done.stdout and "unreadable (corrupt)" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    path.write_bytes(before[corrupt])  # the operator restores it from backup: rotation then completes
    done = rotate(home, keys)
    assert done.returncode == 0 and "1 re-wrapped, 1 already under it" in done.stdout, done

    # A key file that is not base64, and encryption off: refused with the reason, nothing touched.
    rotated = envelopes(home)
    bad = tmp_path / "bad.keys"
    bad.write_text("this is not a key!\n")
    done = rotate(home, bad)
    assert done.returncode == 2 and "not valid base64" in done.stderr and "Traceback" not in done.stderr, done
    done = rotate(home, None)  # no key at all, over a store of encrypted blobs
    assert done.returncode == 2 and "no encryption key is configured" in done.stderr, done
    assert envelopes(home) == rotated

    # Nothing lost: with only the new key, both blobs come back whole.
    keys.write_text(new + "\n")
    service = start(home, keys)
    try:
        assert await fetch(service.address, "rot-a", v1) == first
        assert await fetch(service.address, "rot-b", v2) == second
    finally:
        service.terminate()
