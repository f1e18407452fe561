"""Registry store operations on aliases (with their move history) and the event log."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from aiaas_services.registry import db
from aiaas_services.registry.domain import (
    AliasMove,
    Event,
    EventType,
    Status,
    decode_token,
    encode_token,
    page_size,
)
from aiaas_services.registry.store_base import StoreBase, Tx, _utc
from aiaas_services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from aiaas_services.runtime.names import check_alias, check_name


class AliasAndEventStore(StoreBase):
    """Aliases point at READY versions; every move is recorded and emits an event."""

    # -- aliases ----------------------------------------------------------------------------------

    def _current_alias(self, conn: Connection, model_id: int, alias: str) -> int:
        row = conn.execute(
            sa.select(db.aliases.c.version_number).where(db.aliases.c.model_id == model_id, db.aliases.c.name == alias)
        ).first()
        return int(row.version_number) if row else 0

    def _move(self, tx: Tx, model: RowMapping, alias: str, target: int, reason: str) -> AliasMove:
        current = self._current_alias(tx.conn, model["id"], alias)
        if target:
            version = self._version_row(tx.conn, model["name"], target)
            if Status(version["status"]) != Status.READY:
                raise FailedPrecondition(
                    f"{model['name']} v{target} is {Status(version['status']).name};"
                    " aliases only point at READY versions"
                )
        if current:
            tx.conn.execute(db.aliases.delete().where(db.aliases.c.model_id == model["id"], db.aliases.c.name == alias))
        if target:
            tx.conn.execute(db.aliases.insert().values(model_id=model["id"], name=alias, version_number=target))
        move = AliasMove(model["name"], alias, current, target, tx.actor, reason, tx.time)
        tx.conn.execute(
            db.alias_moves.insert().values(
                model_id=model["id"],
                alias=alias,
                from_version=current,
                to_version=target,
                actor=tx.actor,
                reason=reason,
                moved_at=tx.time,
            )
        )
        if target:
            tx.emit(EventType.ALIAS_MOVED, model["name"], target, alias, current, Status.READY)
        else:
            tx.emit(EventType.ALIAS_DELETED, model["name"], 0, alias, current)
        return move

    def set_alias(self, model_name: str, alias: str, version: int, actor: str = "", reason: str = "") -> AliasMove:
        """Point an alias at a READY version, recording the move."""
        check_name(model_name)
        check_alias(alias)
        if version <= 0:
            raise InvalidArgument("version must be >= 1")
        with self._write(actor) as tx:
            return self._move(tx, self._model_row(tx.conn, model_name), alias, version, reason)

    def delete_alias(self, model_name: str, alias: str, actor: str = "") -> AliasMove:
        """Remove an alias, recording the move (to_version 0)."""
        check_name(model_name)
        check_alias(alias)
        with self._write(actor) as tx:
            model = self._model_row(tx.conn, model_name)
            if not self._current_alias(tx.conn, model["id"], alias):
                raise NotFound(f"model {model_name!r} has no alias {alias!r}")
            return self._move(tx, model, alias, 0, "deleted")

    def rollback_alias(self, model_name: str, alias: str, actor: str = "", reason: str = "") -> AliasMove:
        """Point an alias back at the version it pointed at before its last move."""
        check_name(model_name)
        check_alias(alias)
        with self._write(actor) as tx:
            model = self._model_row(tx.conn, model_name)
            last = tx.conn.execute(
                sa.select(db.alias_moves)
                .where(db.alias_moves.c.model_id == model["id"], db.alias_moves.c.alias == alias)
                .order_by(db.alias_moves.c.id.desc())
                .limit(1)
            ).first()
            if last is None:
                raise NotFound(f"model {model_name!r} has no alias {alias!r}")
            if not last.from_version:
                raise FailedPrecondition(f"alias {alias!r} of {model_name!r} has no earlier version to roll back to")
            return self._move(tx, model, alias, int(last.from_version), reason or f"rollback from v{last.to_version}")

    def alias_history(
        self, model_name: str, alias: str = "", size: int = 0, token: str = ""
    ) -> tuple[list[AliasMove], str]:
        """Moves of one alias (or all of a model's), newest first."""
        check_name(model_name)
        if alias:
            check_alias(alias)
        limit = page_size(size)
        before = decode_token(token)
        with self._read() as conn:
            model = self._model_row(conn, model_name)
            query = (
                sa.select(db.alias_moves)
                .where(db.alias_moves.c.model_id == model["id"])
                .order_by(db.alias_moves.c.id.desc())
                .limit(limit + 1)
            )
            if alias:
                query = query.where(db.alias_moves.c.alias == alias)
            if before is not None:
                query = query.where(db.alias_moves.c.id < int(before))
            rows = conn.execute(query).mappings().all()
        moves = [
            AliasMove(
                model_name,
                r["alias"],
                int(r["from_version"]),
                int(r["to_version"]),
                r["actor"],
                r["reason"],
                _utc(r["moved_at"]),
            )
            for r in rows[:limit]
        ]
        return moves, encode_token(rows[limit - 1]["id"]) if len(rows) > limit else ""

    # -- events -----------------------------------------------------------------------------------

    def last_sequence(self) -> int:
        """Sequence number of the newest event (0 when none)."""
        with self._read() as conn:
            return int(conn.execute(sa.select(db.state.c.last_sequence).where(db.state.c.id == 1)).scalar_one())

    def events_after(self, after: int, model_names: Sequence[str] = (), limit: int = 500) -> list[Event]:
        """Events with sequence > ``after``, oldest first."""
        query = sa.select(db.events).where(db.events.c.sequence > after).order_by(db.events.c.sequence).limit(limit)
        if model_names:
            query = query.where(db.events.c.model_name.in_(list(model_names)))
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Event(
                sequence=int(r["sequence"]),
                type=EventType(r["type"]),
                model_name=r["model_name"],
                version=int(r["version"]),
                alias=r["alias"],
                from_version=int(r["from_version"]),
                status=Status(r["status"]),
                actor=r["actor"],
                time=_utc(r["time"]),
            )
            for r in rows
        ]
