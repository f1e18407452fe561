"""``python -m tests.support.faulty_registry``: the registry with disk faults injected at our blob seam.

The fault is injected in ``aiaas_services.registry.blobs`` (our code, not the kernel): ``LocalWriter.write``
(``AIAAS_FAULT=write``), the file's ``fsync`` at commit (``fsync``) or the rename that publishes a blob
(``commit``) raise ``OSError(AIAAS_FAULT_ERRNO)`` (ENOSPC or EIO) while the file ``AIAAS_FAULT_FLAG``
exists, so a test can switch the fault on and off under a running process.
"""

from __future__ import annotations

import errno
import os
import types
from pathlib import Path
from typing import Any

from aiaas_services.registry import blobs

FAULT = os.environ.get("AIAAS_FAULT", "write")
CODE = getattr(errno, os.environ.get("AIAAS_FAULT_ERRNO", "ENOSPC"))
FLAG = Path(os.environ.get("AIAAS_FAULT_FLAG", "/nonexistent"))


def _maybe_fail(step: str) -> None:
    if step == FAULT and FLAG.exists():
        raise OSError(CODE, os.strerror(CODE))


_write = blobs.LocalWriter.write


def _faulty_write(self: blobs.LocalWriter, chunk: bytes) -> None:
    _maybe_fail("write")
    _write(self, chunk)


def _fsync(fd: int) -> None:
    _maybe_fail("fsync")
    os.fsync(fd)


def _replace(src: Any, dst: Any) -> None:
    _maybe_fail("commit")
    os.replace(src, dst)


blobs.LocalWriter.write = _faulty_write  # type: ignore[method-assign]
setattr(blobs, "os", types.SimpleNamespace(**{**vars(os), "fsync": _fsync, "replace": _replace}))  # noqa: B010

if __name__ == "__main__":
    from aiaas_services.registry.__main__ import main

    main()
