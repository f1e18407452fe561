"""Writing safetensors files atomically, and the epoch checkpoint without re-encoding (reading stays with
the ``safetensors`` package, which reads what this writes: the tests check it).

Why not ``safetensors.torch.save``: a job writes a checkpoint every epoch, on the training loop's clock,
and the library's per-tensor checks and copy showed in ``training.service_vs_bare_loop`` (numbers in this
file's git log). The format is simple (u64 header length, JSON header, raw bytes), so it is laid out here
and written with one ``writev``; a crash mid-write leaves the previous file (spare file + rename).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

DTYPE_NAMES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
MAX_PARTS_PER_WRITE = 512  # below every platform's IOV_MAX (1024 on Linux)


def encode(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> list[memoryview]:
    """The file as a list of buffers: header length, header, then each tensor's bytes (not copied when the
    tensor is already a contiguous CPU tensor)."""
    _check_dtypes(tensors)
    views = [_raw_bytes(tensor) for tensor in tensors.values()]
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    header.update(_entries(tensors, views))
    return [*_header_parts(json.dumps(header, separators=(",", ":"))), *views]


def _check_dtypes(tensors: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in tensors.items():
        if tensor.dtype not in DTYPE_NAMES:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors files cannot hold here")


def _entries(tensors: Mapping[str, torch.Tensor], views: list[memoryview]) -> dict[str, object]:
    """The header's entry for each tensor: dtype, shape and its byte range in the data section."""
    entries: dict[str, object] = {}
    offset = 0
    for (name, tensor), view in zip(tensors.items(), views, strict=True):
        entries[name] = {
            "dtype": DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + view.nbytes],
        }
        offset += view.nbytes
    return entries


def _header_parts(header_json: str) -> list[memoryview]:
    """The u64 little-endian header length and the header, padded with spaces to 8-byte alignment."""
    encoded = header_json.encode()
    encoded += b" " * (-len(encoded) % 8)
    return [memoryview(struct.pack("<Q", len(encoded))), memoryview(encoded)]


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes in row-major order, without a copy for a contiguous CPU tensor."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    if tensor.numel() == 0:
        return memoryview(b"")
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; the bytes are the same as int16's
        tensor = tensor.view(torch.int16)
    return tensor.numpy().data.cast("B")


def write_safetensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (and string ``metadata``) to ``path`` as a safetensors file, atomically, on the
    caller's thread: a job's result weights, written once (``Rewriter`` is the one for a file rewritten
    every epoch).

    The bytes go to a spare file, which is then renamed over ``path``, so ``path`` always names a whole
    file; a file it replaces is kept (a hard link) as the spare the next write overwrites in place.
    """
    _write_parts(path, encode(tensors, metadata))


def spare_path(path: Path) -> Path:
    """Where the writers keep the file they will overwrite next (delete it with ``path``)."""
    return path.with_name(path.name + ".spare")


def _swap_in(spare: Path, path: Path) -> None:
    previous = path.with_name(path.name + ".previous")
    previous.unlink(missing_ok=True)  # left by a crash between the link and the last rename below
    try:
        os.link(path, previous)
    except OSError:  # no file yet, or a file system without hard links: nothing to keep
        os.replace(spare, path)
        return
    os.replace(spare, path)
    os.replace(previous, spare)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_renameat2 = getattr(_libc, "renameat2", None)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2`` with RENAME_EXCHANGE); False when that is
    not possible here (no such call, a file system without it, or ``second`` does not exist yet)."""
    global _renameat2
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        _renameat2 = None  # not supported here: stop trying
        return False
    if error == errno.ENOENT:
        return False
    raise OSError(error, os.strerror(error), str(second))


def _write_all(fd: int, parts: list[memoryview]) -> int:
    """``writev`` until every byte is written (a regular file may take less than asked, e.g. on a signal);
    returns the number of bytes."""
    pending = [part.cast("B") for part in parts if part.nbytes]
    total = sum(part.nbytes for part in pending)
    while pending:
        written = os.writev(fd, pending[:MAX_PARTS_PER_WRITE])
        while written:
            if written >= pending[0].nbytes:
                written -= pending.pop(0).nbytes
            else:
                pending[0] = pending[0][written:]
                written = 0
    return total


class Rewriter:
    """Writes successive versions of one safetensors file (an epoch checkpoint) on the caller's thread.

    Between two epochs a checkpoint holds the same CPU tensors, updated in place: while the tensors' names,
    dtypes, shapes and addresses repeat, their memory views and header entries are reused (tensors off the
    CPU or not contiguous are encoded every time). The file and its spare stay open; a write goes into the
    spare and one ``renameat2(RENAME_EXCHANGE)`` swaps the names atomically (elsewhere: a link and two
    renames). It stays on the training thread: a background writer thread measured worse (git log).
    ``close`` releases the two descriptors.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: list[tuple[str, int, torch.Size, torch.dtype]] | None = None
        self._views: list[memoryview] = []
        self._entries = ""  # the header's tensor entries, encoded once per key
        self._spare_fd: int | None = None  # open on the file named spare_path(path)
        self._path_fd: int | None = None  # open on the file named path, once this writer wrote it
        self._sizes: dict[int, int] = {}  # bytes in each open file

    def write(self, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
        """Replace ``path`` with ``tensors`` and ``metadata``, atomically."""
        key = [(name, tensor.data_ptr(), tensor.shape, tensor.dtype) for name, tensor in tensors.items()]
        if key != self._key:
            self._prepare(tensors, key)
        header = f'{{"__metadata__":{json.dumps(dict(metadata), separators=(",", ":"))}{self._entries}}}'
        self._replace([*_header_parts(header), *self._views])
        if self._key is None:
            self._views = []  # copies of device or strided tensors: not kept for the next write

    def close(self) -> None:
        """Close the file descriptors (the files stay)."""
        for fd in (self._spare_fd, self._path_fd):
            if fd is not None:
                os.close(fd)
        self._spare_fd = self._path_fd = None
        self._sizes.clear()

    def _prepare(
        self, tensors: Mapping[str, torch.Tensor], key: list[tuple[str, int, torch.Size, torch.dtype]]
    ) -> None:
        _check_dtypes(tensors)
        self._views = [_raw_bytes(tensor) for tensor in tensors.values()]
        entries = _entries(tensors, self._views)
        self._entries = "," + json.dumps(entries, separators=(",", ":"))[1:-1] if entries else ""
        # the views alias the tensors' own memory (and keep it alive) only for contiguous CPU tensors
        aliased = all(t.device.type == "cpu" and t.is_contiguous() for t in tensors.values())
        self._key = key if aliased else None

    def _replace(self, parts: list[memoryview]) -> None:
        spare = spare_path(self.path)
        if self._spare_fd is None:
            self._spare_fd = os.open(spare, os.O_WRONLY | os.O_CREAT, 0o644)
            self._sizes[self._spare_fd] = os.fstat(self._spare_fd).st_size
        fd = self._spare_fd
        os.lseek(fd, 0, os.SEEK_SET)
        size = _write_all(fd, parts)
        if self._sizes[fd] > size:
            os.ftruncate(fd, size)
        self._sizes[fd] = size
        replaced = self._path_fd
        if _exchange(spare, self.path):  # the file it replaced, which ``replaced`` has open, is the spare now
            self._spare_fd, self._path_fd = replaced, fd
            return
        _swap_in(spare, self.path)
        if replaced is not None:  # a spare that _swap_in kept is opened again by its name
            os.close(replaced)
            del self._sizes[replaced]
        self._spare_fd, self._path_fd = None, fd


def _write_parts(path: Path, parts: list[memoryview]) -> None:
    spare = spare_path(path)
    fd = os.open(spare, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        try:
            os.ftruncate(fd, _write_all(fd, parts))
        finally:
            os.close(fd)
    except BaseException:
        spare.unlink(missing_ok=True)
        raise
    _swap_in(spare, path)
