"""The segment stream inside an encrypted blob: cutting plaintext into AES-256-GCM segments and opening them.

A blob's bytes are sealed in fixed-size segments under its data key, each with the nonce ``segment number |
last-segment flag`` (the STREAM construction: a reordered, dropped or truncated segment fails to open). The
writer seals each segment on the shared pipeline (``pipeline.py``) while its caller hashes the next chunk (the
cipher releases the GIL on large buffers). Nothing opened is handed out before its tag has been checked, so
no plaintext follows a segment that fails.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aiaas_services.registry.pipeline import PIPELINE
from aiaas_services.runtime.errors import DigestMismatch

MAGIC = b"AIAASE\x01\x00"  # format 1 (also the associated data of every segment)
TAG_BYTES = 16
SEGMENT_BYTES = 1024 * 1024

Sealed = bytes | bytearray | memoryview


def nonce(index: int, last: bool) -> bytes:
    """The nonce of segment ``index``; the flag marks the final segment, so a cut stream cannot pass for whole."""
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Sealer:
    """Cuts written chunks into segments and seals them into ``sink``, each on the pipeline while the caller
    goes on (``feed``'s ``beside`` runs meanwhile). Chunks are held by reference until sealed, and the
    ciphertext of every segment goes through one reused buffer."""

    def __init__(self, cipher: AESGCM, segment_bytes: int, sink: Callable[[bytes], object]) -> None:
        self._cipher = cipher
        self._segment = segment_bytes
        self._sink = sink
        self._held: collections.deque[memoryview] = collections.deque()
        self._held_bytes = 0
        self._out = bytearray(segment_bytes + TAG_BYTES)
        self._index = 0

    def feed(self, chunk: bytes | memoryview, beside: Callable[[], object]) -> None:
        """Hold ``chunk``; seal every full segment but the newest on the pipeline while ``beside()`` runs here."""
        if chunk:
            # Kept until sealed: an immutable copy of anything a caller could change afterwards.
            self._held.append(memoryview(chunk if isinstance(chunk, bytes) else bytes(chunk)))
            self._held_bytes += len(chunk)
        ready = []
        # Keep at least one byte back: only the final segment may be sealed as the last one.
        while self._held_bytes > self._segment:
            ready.append(self._take(self._segment))
        if not ready:
            beside()
            return
        sealing = PIPELINE.submit(self._seal_all, ready)
        try:
            beside()
        finally:
            sealing.result()  # its error, if any, surfaces here (after beside's)

    def finish(self) -> None:
        """Seal what is held as the final segment (an empty one for an empty blob)."""
        self._seal(self._take(self._held_bytes), last=True)

    def drop(self) -> None:
        self._held.clear()
        self._held_bytes = 0

    def _take(self, count: int) -> memoryview:
        """The next ``count`` held bytes: a view into one chunk when they lie in it, else joined."""
        if count == 0:
            return memoryview(b"")
        first = self._held[0]
        if len(first) >= count:
            if len(first) == count:
                self._held.popleft()
            else:
                self._held[0] = first[count:]
            self._held_bytes -= count
            return first[:count]
        joined = bytearray()
        while len(joined) < count:
            piece = self._held.popleft()
            need = count - len(joined)
            if len(piece) > need:
                self._held.appendleft(piece[need:])
                piece = piece[:need]
            joined += piece
        self._held_bytes -= count
        return memoryview(joined)

    def _seal_all(self, segments: list[memoryview]) -> None:
        for plain in segments:
            self._seal(plain, last=False)

    def _seal(self, plain: memoryview, last: bool) -> None:
        out = memoryview(self._out)[: len(plain) + TAG_BYTES]
        self._cipher.encrypt_into(nonce(self._index, last), plain, MAGIC, out)
        self._sink(cast(bytes, out))  # a view: the sink copies the bytes out (a file write, a multipart part)
        self._index += 1


def sealed_segments(
    reader: Iterator[bytes], first: int, size: int, segment_bytes: int, what: str
) -> Iterator[tuple[int, Sealed]]:
    """``(index, sealed bytes)`` of each segment from ``first`` on, out of ``reader``'s pieces, with no copy
    when a read holds whole segments (the usual case: one read, one segment); a segment cut across reads is
    joined first.
    Raises DigestMismatch after the last whole segment when the stored bytes are cut short or padded."""
    count = max(1, -(-size // segment_bytes))
    index = first
    pending = bytearray()  # the start of a segment that the previous read cut
    for chunk in reader:
        if pending:
            pending += chunk
        data: bytes | bytearray = pending if pending else chunk
        with memoryview(data) as view:
            done = 0
            while index < count:
                need = (size - index * segment_bytes if index == count - 1 else segment_bytes) + TAG_BYTES
                if len(view) - done < need:
                    break
                # A view: its consumer opens it before this generator resumes (and can change the buffer).
                yield index, (data if need == len(data) else view[done : done + need])
                done += need
                index += 1
            if done or data is not pending:
                pending = bytearray(view[done:])
        if index == count and pending:
            break  # bytes past the last segment: refused below
    if index < count or pending:
        raise DigestMismatch(f"stored bytes of {what} are truncated or padded; nothing more was served")


def opened_segments(cipher: AESGCM, segments: Iterator[tuple[int, Sealed]], count: int, what: str) -> Iterator[bytes]:
    """The plaintext of each sealed segment, in order; a segment that fails authentication raises
    DigestMismatch where its plaintext would come (downloads run this on the pipeline, ``read_ahead``)."""
    for index, sealed in segments:
        try:
            yield cipher.decrypt(nonce(index, index == count - 1), sealed, MAGIC)
        except InvalidTag:
            raise DigestMismatch(
                f"stored bytes of {what} fail authentication at segment {index} (altered or corrupt); nothing "
                "more was served"
            ) from None
