"""Checks before ONNX Runtime opens a model file, and client-safe reasons when a load fails.

External data (initializers stored beside model.onnx) is resolved and checked here, not left to ONNX
Runtime: every location must name a regular file inside the model's folder, reached without links —
no absolute paths, no ``..``, no symbolic link anywhere on the way, and no hard link (a file with more
than one name could be another model's bytes) — and each offset/length must lie inside that file.

A load failure is described by ``LoadFailure``: a short reason the client may see (no paths, no class
names) and an error id that is also in the server log, beside the full traceback. A registry download
that fails (the registry's stored copy damaged, a status code) is a load failure of that version too.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from aiaas.client.refs import ArtifactCorrupted
from aiaas_services.runtime.errors import DomainError, FailedPrecondition

logger = logging.getLogger(__name__)

_ORT_MESSAGE = re.compile(r"\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*(\w+)\s*:\s*(.*)", re.S)
_SOURCE_LOCATION = re.compile(r"\S+\.(?:cc|cpp|h):\d+\s+[\w:~<>]+\([^)]*\)\s*")
_PATHS = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:/[^\s/:'\"]+)+/?")


class UnsafeModelFile(FailedPrecondition):
    """The model's files break a rule checked before ONNX Runtime sees them (e.g. external data)."""


def _external_locations(model: Any) -> list[tuple[str, str, int, int]]:
    """(tensor name, location, offset, length) of every initializer stored outside the file, subgraphs too."""
    found: list[tuple[str, str, int, int]] = []

    def tensors(graph: Any) -> Any:
        yield from graph.initializer
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    yield attribute.t
                elif attribute.type == onnx.AttributeProto.GRAPH:
                    yield from tensors(attribute.g)
                elif attribute.type == onnx.AttributeProto.GRAPHS:
                    for sub in attribute.graphs:
                        yield from tensors(sub)

    for tensor in tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        try:
            offset = int(entries.get("offset", "0") or 0)
            length = int(entries.get("length", "-1") or -1)
        except ValueError:
            raise UnsafeModelFile(f"initializer {tensor.name!r}: external data offset/length are not numbers") from None
        found.append((tensor.name, entries.get("location", ""), offset, length))
    return found


def check_external_data(path: Path) -> int:
    """Refuse a model whose external data could reach outside its folder; returns how many tensors use it."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UnsafeModelFile(
            f"{path.name} is not a readable ONNX model (protobuf parsing failed: {_clean(str(exc), path)})"
        ) from exc
    folder = path.parent.resolve()
    entries = _external_locations(model)
    for tensor, location, offset, length in entries:
        what = f"initializer {tensor!r}: external data location {location!r}"
        parts = Path(location).parts
        if not location or Path(location).is_absolute() or ".." in parts or "\x00" in location:
            raise UnsafeModelFile(f"{what} must be a relative path inside the model's folder")
        current = folder
        for part in parts:
            current = current / part
            try:
                info = os.lstat(current)
            except OSError:
                raise UnsafeModelFile(f"{what} does not exist beside the model") from None
            if stat.S_ISLNK(info.st_mode):
                raise UnsafeModelFile(f"{what} goes through a symbolic link; links are refused")
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeModelFile(f"{what} is not a regular file")
        if info.st_nlink > 1:
            raise UnsafeModelFile(f"{what} is a hard link ({info.st_nlink} names); links are refused")
        if offset < 0 or (length >= 0 and offset + length > info.st_size) or offset > info.st_size:
            raise UnsafeModelFile(
                f"{what}: offset {offset} and length {length} lie outside the file ({info.st_size} bytes)"
            )
    return len(entries)


@dataclass(frozen=True)
class LoadFailure:
    """Why a model version did not load: a client-safe reason and the id of its log entry."""

    reason: str
    error_id: str

    def __str__(self) -> str:
        return f"{self.reason} (error id {self.error_id})"


def describe_failure(exc: BaseException, path: Path | None, what: str) -> LoadFailure:
    """Log the failure with a fresh error id (traceback only for the unexpected) and return its reason."""
    error_id = uuid.uuid4().hex[:12]
    reason = _reason(exc, path)
    expected = isinstance(exc, (DomainError, OSError, ArtifactCorrupted)) or _rpc_code(exc) is not None
    expected |= _ORT_MESSAGE.search(str(exc)) is not None
    logger.error("%s failed to load (error id %s): %s", what, error_id, reason, exc_info=None if expected else exc)
    if expected:
        logger.info("%s: load error %s raw message: %s", what, error_id, exc)
    return LoadFailure(reason, error_id)


def _rpc_code(exc: BaseException) -> str | None:
    """The status code name of a gRPC error (a registry download that failed), else None."""
    code = getattr(exc, "code", None)
    if not callable(getattr(exc, "details", None)) or not callable(code):
        return None
    return str(getattr(code(), "name", code()))


def _reason(exc: BaseException, path: Path | None) -> str:
    if isinstance(exc, DomainError):
        return _clean(str(exc), path)
    if isinstance(exc, ArtifactCorrupted):
        return f"the download did not verify: {_clean(str(exc), path)}"
    code = _rpc_code(exc)
    if code is not None:
        return f"the download from the registry failed: registry said {code}: {_clean(str(exc.details()), path)}"  # type: ignore[attr-defined]
    if isinstance(exc, OSError):
        return f"cannot read the model file: {exc.strerror or 'I/O error'}"
    match = _ORT_MESSAGE.search(str(exc))
    if match:
        kind, text = match.groups()
        text = re.sub(r"Load model from \S+ failed:\s*", "", text.strip())
        text = _SOURCE_LOCATION.sub("", text)  # ORT's C++ file:line and function name say nothing to a user
        return f"ONNX Runtime refused the model ({kind}): {_clean(text, path)[:300]}"
    return "unexpected error while loading the model"


def _clean(text: str, path: Path | None) -> str:
    """Drop server paths from a message (a model file is named by its file name only)."""
    if path is not None:
        text = text.replace(str(path), path.name).replace(str(path.parent), ".")
    return _PATHS.sub("<path>", text).strip()
