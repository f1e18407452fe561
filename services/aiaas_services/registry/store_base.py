"""The registry store's foundation: its transactions and how rows become domain models and versions.

Blocking code, called from threads. Every mutation runs in one transaction that first locks the state
row (see ``db``), checks its preconditions inside that transaction, and appends its events there too,
so a caller either sees the whole change and its events or neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from aiaas_services.registry import db
from aiaas_services.registry.domain import (
    Artifact,
    EventType,
    Model,
    ModelFormat,
    Status,
    Version,
)
from aiaas_services.runtime.errors import InvalidArgument, NotFound


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class Tx:
    """A writing transaction: its connection and the event sequence it appends to."""

    def __init__(self, conn: Connection, last_sequence: int, actor: str) -> None:
        self.conn = conn
        self.sequence = last_sequence
        self.actor = actor
        self.time = now()

    def emit(
        self,
        kind: EventType,
        model_name: str,
        version: int = 0,
        alias: str = "",
        from_version: int = 0,
        status: Status = Status.UNSPECIFIED,
    ) -> None:
        """Append an event with the next sequence number."""
        self.sequence += 1
        self.conn.execute(
            db.events.insert().values(
                sequence=self.sequence,
                type=int(kind),
                model_name=model_name,
                version=version,
                alias=alias,
                from_version=from_version,
                status=int(status),
                actor=self.actor,
                time=self.time,
            )
        )


class StoreBase:
    """Transactions, and rows read as domain objects (the operations are in ``store.py``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- transactions -----------------------------------------------------------------------------

    @contextmanager
    def _write(self, actor: str) -> Iterator[Tx]:
        with self.engine.connect().execution_options(registry_write=True) as conn, conn.begin():
            row = conn.execute(sa.select(db.state.c.last_sequence).where(db.state.c.id == 1).with_for_update()).one()
            tx = Tx(conn, int(row.last_sequence), actor)
            yield tx
            if tx.sequence != row.last_sequence:
                conn.execute(db.state.update().where(db.state.c.id == 1).values(last_sequence=tx.sequence))

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # -- rows -> domain ---------------------------------------------------------------------------

    def _model_row(self, conn: Connection, name: str) -> RowMapping:
        row = conn.execute(sa.select(db.models).where(db.models.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"model {name!r} not found")
        return row

    def _model(self, conn: Connection, row: RowMapping) -> Model:
        alias_rows = conn.execute(
            sa.select(db.aliases.c.name, db.aliases.c.version_number).where(db.aliases.c.model_id == row["id"])
        ).all()
        return Model(
            name=row["name"],
            description=row["description"],
            tags=json.loads(row["tags"]),
            aliases={a.name: int(a.version_number) for a in alias_rows},
            latest_version=int(row["latest_version"]),
            created_at=_utc(row["created_at"]),
            updated_at=_utc(row["updated_at"]),
        )

    def _version_row(self, conn: Connection, model_name: str, number: int = 0, alias: str = "") -> RowMapping:
        model = self._model_row(conn, model_name)
        if alias:
            target = conn.execute(
                sa.select(db.aliases.c.version_number).where(
                    db.aliases.c.model_id == model["id"], db.aliases.c.name == alias
                )
            ).first()
            if target is None:
                raise NotFound(f"model {model_name!r} has no alias {alias!r}")
            number = int(target.version_number)
        if number <= 0:
            raise InvalidArgument("a version reference needs a version number >= 1 or an alias")
        row = (
            conn.execute(
                sa.select(db.versions, db.models.c.name.label("model_name"))
                .join(db.models, db.models.c.id == db.versions.c.model_id)
                .where(db.versions.c.model_id == model["id"], db.versions.c.number == number)
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"model {model_name!r} has no version {number}")
        return row

    def _versions(self, conn: Connection, rows: Sequence[RowMapping]) -> list[Version]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        artifacts: dict[int, list[Artifact]] = {i: [] for i in ids}
        for a in conn.execute(
            sa.select(db.artifacts).where(db.artifacts.c.version_id.in_(ids)).order_by(db.artifacts.c.name)
        ).mappings():
            artifacts[a["version_id"]].append(Artifact(a["name"], a["sha256"], int(a["size_bytes"]), a["media_type"]))
        aliases: dict[tuple[int, int], list[str]] = {}
        for a in conn.execute(
            sa.select(db.aliases).where(db.aliases.c.model_id.in_({row["model_id"] for row in rows}))
        ).mappings():
            aliases.setdefault((a["model_id"], int(a["version_number"])), []).append(a["name"])
        return [
            Version(
                model_name=row["model_name"],
                number=int(row["number"]),
                format=ModelFormat(row["format"]),
                variant=row["variant"],
                status=Status(row["status"]),
                status_reason=row["status_reason"],
                signature=json.loads(row["signature"]),
                metrics=json.loads(row["metrics"]),
                tags=json.loads(row["tags"]),
                lineage=json.loads(row["lineage"]),
                description=row["description"],
                required_artifacts=json.loads(row["required_artifacts"]),
                artifacts=artifacts[row["id"]],
                aliases=sorted(aliases.get((row["model_id"], int(row["number"])), [])),
                created_by=row["created_by"],
                created_at=_utc(row["created_at"]),
                updated_at=_utc(row["updated_at"]),
            )
            for row in rows
        ]

    def _version(self, conn: Connection, model_name: str, number: int = 0, alias: str = "") -> Version:
        return self._versions(conn, [self._version_row(conn, model_name, number, alias)])[0]
