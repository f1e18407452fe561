"""Usage metering in the registry's database: counts per principal, model and hour, and reports of them.

Services count in memory and send their counts here in the background (``RecordUsage``); each entry is
added to its (principal, model, hour) row, so repeated flushes and several replicas sum up exactly.
No gRPC here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from aiaas_services.registry import db
from aiaas_services.runtime.errors import InvalidArgument

MAX_ENTRIES = 10_000
LIMIT = 10**12  # per entry: far above a flush interval's worth, far below int64 overflow of the sums

usage = sa.Table(
    "usage",
    db.metadata,
    sa.Column("principal", sa.String(256), primary_key=True),
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("hour", sa.BigInteger, primary_key=True),  # unix seconds of the hour's start
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("compute_seconds", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class UsageCount:
    """Counts of one principal on one model from ``period_start`` (an hour's start, unix seconds) on."""

    principal: str
    model: str
    requests: int
    rows: int
    compute_seconds: float
    period_start: int


def check_entries(entries: Sequence[UsageCount]) -> None:
    """InvalidArgument for counts that cannot be real (negative, absurd names, too many at once)."""
    if len(entries) > MAX_ENTRIES:
        raise InvalidArgument(f"at most {MAX_ENTRIES} usage entries per call, got {len(entries)}")
    for entry in entries:
        if not entry.principal or len(entry.principal) > 256 or not entry.principal.isprintable():
            raise InvalidArgument("usage entry principal must be 1-256 printable characters")
        if not entry.model or len(entry.model) > 128 or not entry.model.isprintable():
            raise InvalidArgument("usage entry model must be 1-128 printable characters")
        if entry.requests < 0 or entry.rows < 0 or not entry.compute_seconds >= 0:
            raise InvalidArgument(f"usage counts must be >= 0 (principal {entry.principal!r}, model {entry.model!r})")
        if entry.requests > LIMIT or entry.rows > LIMIT or entry.compute_seconds > LIMIT:
            raise InvalidArgument(f"usage counts must be <= {LIMIT} per entry")
        if not 0 <= entry.period_start < 253402300800:  # year 10000
            raise InvalidArgument("usage period_start is outside 1970..9999")


def record(engine: Engine, entries: Sequence[UsageCount]) -> int:
    """Add each entry to its (principal, model, hour) row in one transaction; returns how many."""
    check_entries(entries)
    merged: dict[tuple[str, str, int], list[float]] = {}
    for entry in entries:
        key = (entry.principal, entry.model, entry.period_start - entry.period_start % 3600)
        total = merged.setdefault(key, [0, 0, 0.0])
        total[0] += entry.requests
        total[1] += entry.rows
        total[2] += entry.compute_seconds
    for attempt in range(3):
        try:
            with engine.connect().execution_options(registry_write=True) as conn, conn.begin():
                for (principal, model, hour), (requests, rows, seconds) in merged.items():
                    where = (usage.c.principal == principal) & (usage.c.model == model) & (usage.c.hour == hour)
                    updated = conn.execute(
                        usage.update()
                        .where(where)
                        .values(
                            requests=usage.c.requests + int(requests),
                            rows=usage.c.rows + int(rows),
                            compute_seconds=usage.c.compute_seconds + seconds,
                        )
                    )
                    if updated.rowcount == 0:
                        conn.execute(
                            usage.insert().values(
                                principal=principal,
                                model=model,
                                hour=hour,
                                requests=int(requests),
                                rows=int(rows),
                                compute_seconds=seconds,
                            )
                        )
            return len(entries)
        except IntegrityError:  # another replica inserted the same row first: add to it instead
            if attempt == 2:
                raise
    return 0  # pragma: no cover


def totals(engine: Engine, principal: str = "", model: str = "", since: datetime | None = None) -> list[UsageCount]:
    """Sums per (principal, model) over the hours starting at or after ``since``."""
    query = sa.select(
        usage.c.principal,
        usage.c.model,
        sa.func.sum(usage.c.requests),
        sa.func.sum(usage.c.rows),
        sa.func.sum(usage.c.compute_seconds),
        sa.func.min(usage.c.hour),
    ).group_by(usage.c.principal, usage.c.model)
    if principal:
        query = query.where(usage.c.principal == principal)
    if model:
        query = query.where(usage.c.model == model)
    if since is not None:
        start = int(since.astimezone(UTC).timestamp())
        query = query.where(usage.c.hour >= start - start % 3600)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(usage.c.principal, usage.c.model)).all()
    return [UsageCount(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), int(r[5])) for r in rows]
