"""A small shared thread pool for blob streams: work one step ahead of the thread that consumes it.

A download reads (and, when blobs are encrypted, opens) the next chunk here while the current one is hashed
and sent; an encrypted upload seals a segment here while its caller hashes the next chunk. The file reads,
hashing and AES-GCM all release the GIL on large buffers, so the steps overlap on separate cores.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

T = TypeVar("T")

# One step in flight per open stream; more streams than threads wait their turn (no task waits on another).
PIPELINE = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="registry-pipeline")


def ahead(produce: Callable[[], T | None]) -> Generator[T, None, None]:
    """``produce()``'s results until it returns None, each computed on the pipeline while the previous one is
    consumed; an error ``produce`` raises comes out where its result would have. Closing the iterator early
    waits for the step in flight (it may be using the caller's reader)."""
    upcoming = PIPELINE.submit(produce)
    try:
        while (item := upcoming.result()) is not None:
            upcoming = PIPELINE.submit(produce)
            yield item
    finally:
        upcoming.cancel()
        concurrent.futures.wait([upcoming])


def read_ahead(chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
    """``chunks``, each pulled on the pipeline while the previous one is consumed."""
    return ahead(lambda: next(chunks, None))
