"""Idempotency keys of the registry's mutating calls (``request_id``): a retry gets the first response.

The first call with a key claims it (a row with no response yet), runs, and stores its serialized
response; the run is shielded from the caller's deadline or cancellation, so work that commits after
the client gave up is still recorded under its key. A retry then gets that response; a retry that
arrives while the first call still runs gets ABORTED (retry shortly); the same key on a different
request gets FAILED_PRECONDITION. A failed call releases its key, so a retry runs again. Keys are kept
for ``KEEP`` and a claim older than ``STALE`` (a crash mid-call) may be taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aiaas_services.registry.db import request_keys
from aiaas_services.runtime.errors import Aborted, FailedPrecondition, InvalidArgument

KEEP = dt.timedelta(hours=24)
STALE = dt.timedelta(minutes=10)
MAX_KEY = 128


def fingerprint(data: bytes) -> str:
    """What identifies a request's content (its serialized form without the key)."""
    return hashlib.sha256(data).hexdigest()


class RequestKeys:
    """The ``request_keys`` table (blocking; run on the registry's thread pool)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A writing transaction (BEGIN IMMEDIATE on SQLite, so no lock upgrade can fail)."""
        with self.engine.connect().execution_options(registry_write=True) as conn, conn.begin():
            yield conn

    def claim(self, method: str, key: str, print_: str) -> bytes | None:
        """The stored response of an earlier call with this key, or None when this call may run now."""
        if len(key) > MAX_KEY:
            raise InvalidArgument(f"request_id is longer than {MAX_KEY} characters")
        now = dt.datetime.now(dt.UTC)
        try:
            with self._tx() as conn:
                conn.execute(request_keys.delete().where(request_keys.c.created_at < now - KEEP))
                conn.execute(
                    request_keys.insert().values(
                        method=method, request_id=key, fingerprint=print_, response=None, created_at=now
                    )
                )
            return None
        except sa.exc.IntegrityError:
            pass
        where = (request_keys.c.method == method) & (request_keys.c.request_id == key)
        with self._tx() as conn:
            row = conn.execute(sa.select(request_keys).where(where)).first()
            if row is None:  # released between our insert and this read: take it
                conn.execute(
                    request_keys.insert().values(
                        method=method, request_id=key, fingerprint=print_, response=None, created_at=now
                    )
                )
                return None
            if row.fingerprint != print_:
                raise FailedPrecondition(
                    f"request_id {key!r} was already used for a different {method} request; use a new request_id"
                )
            if row.response is not None:
                return bytes(row.response)
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=dt.UTC)
            if now - created > STALE:
                conn.execute(request_keys.update().where(where).values(created_at=now))
                return None
        raise Aborted(f"a {method} call with request_id {key!r} is still running; retry shortly for its result")

    def finish(self, method: str, key: str, response: bytes) -> None:
        """Record the response of the call that claimed the key."""
        where = (request_keys.c.method == method) & (request_keys.c.request_id == key)
        with self._tx() as conn:
            conn.execute(request_keys.update().where(where).values(response=response))

    def release(self, method: str, key: str) -> None:
        """Forget a claim whose call failed (a retry runs again)."""
        where = (request_keys.c.method == method) & (request_keys.c.request_id == key)
        with self._tx() as conn:
            conn.execute(request_keys.delete().where(where))


async def run_once(
    keys: RequestKeys,
    run: Callable[..., Awaitable[object]],
    method: str,
    key: str,
    print_: str,
    work: Callable[[], Awaitable[bytes]],
) -> bytes:
    """``work()``'s serialized response, or the stored one of an earlier call with the same key.

    ``run`` puts blocking calls on the registry's thread pool.
    """
    stored = await run(keys.claim, method, key, print_)
    if isinstance(stored, bytes):
        return stored

    async def first() -> bytes:
        try:
            response = await work()
        except BaseException:
            await run(keys.release, method, key)
            raise
        await run(keys.finish, method, key, response)
        return response

    return await asyncio.shield(asyncio.ensure_future(first()))
