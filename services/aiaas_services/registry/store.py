"""Registry metadata on SQLAlchemy Core: models, versions, artifacts, aliases and the event log.

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
    AliasMove,
    Artifact,
    Event,
    EventType,
    Model,
    ModelFormat,
    NewVersion,
    Status,
    Version,
    check_complete,
    decode_token,
    encode_token,
    page_size,
)
from aiaas_services.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from aiaas_services.runtime.names import check_alias, check_name


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


class RegistryStore:
    """Models, versions, aliases and events in one SQL database."""

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

    # -- models -----------------------------------------------------------------------------------

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

    def _insert_model(self, tx: Tx, name: str, description: str, tags: dict[str, str]) -> RowMapping:
        tx.conn.execute(
            db.models.insert().values(
                name=name,
                description=description,
                tags=_dump(tags),
                latest_version=0,
                created_by=tx.actor,
                created_at=tx.time,
                updated_at=tx.time,
            )
        )
        tx.emit(EventType.MODEL_CREATED, name)
        return self._model_row(tx.conn, name)

    def create_model(
        self,
        name: str,
        description: str = "",
        tags: dict[str, str] | None = None,
        exist_ok: bool = False,
        actor: str = "",
    ) -> Model:
        """Register a model; ALREADY_EXISTS unless ``exist_ok``."""
        check_name(name)
        with self._write(actor) as tx:
            existing = tx.conn.execute(sa.select(db.models).where(db.models.c.name == name)).mappings().first()
            if existing is not None:
                if not exist_ok:
                    raise AlreadyExists(f"model {name!r} already exists (pass exist_ok to reuse it)")
                return self._model(tx.conn, existing)
            return self._model(tx.conn, self._insert_model(tx, name, description, dict(tags or {})))

    def get_model(self, name: str) -> Model:
        """One model by name."""
        check_name(name)
        with self._read() as conn:
            return self._model(conn, self._model_row(conn, name))

    def list_models(self, size: int = 0, token: str = "", prefix: str = "") -> tuple[list[Model], str]:
        """A page of models ordered by name, and the next page's token."""
        limit = page_size(size)
        after = decode_token(token)
        query = sa.select(db.models).order_by(db.models.c.name).limit(limit + 1)
        if prefix:
            query = query.where(db.models.c.name.startswith(prefix, autoescape=True))
        if after is not None:
            query = query.where(db.models.c.name > str(after))
        with self._read() as conn:
            rows = conn.execute(query).mappings().all()
            page = [self._model(conn, row) for row in rows[:limit]]
        return page, encode_token(page[-1].name) if len(rows) > limit else ""

    def update_model(
        self,
        name: str,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        remove_tags: Sequence[str] = (),
        actor: str = "",
    ) -> Model:
        """Change a model's description or tags (merged, then removed)."""
        check_name(name)
        with self._write(actor) as tx:
            row = self._model_row(tx.conn, name)
            merged = {**json.loads(row["tags"]), **(tags or {})}
            for key in remove_tags:
                merged.pop(key, None)
            values: dict[str, Any] = {"tags": _dump(merged), "updated_at": tx.time}
            if description is not None:
                values["description"] = description
            tx.conn.execute(db.models.update().where(db.models.c.id == row["id"]).values(**values))
            tx.emit(EventType.MODEL_UPDATED, name)
            return self._model(tx.conn, self._model_row(tx.conn, name))

    def delete_model(self, name: str, force: bool = False, actor: str = "") -> int:
        """Delete a model with its versions; returns how many versions went. Blobs wait for GC."""
        check_name(name)
        with self._write(actor) as tx:
            row = self._model_row(tx.conn, name)
            aliased = tx.conn.execute(sa.select(db.aliases.c.name).where(db.aliases.c.model_id == row["id"])).all()
            if aliased and not force:
                names = ", ".join(sorted(a.name for a in aliased))
                raise FailedPrecondition(f"model {name!r} has aliases ({names}); delete them or pass force")
            version_ids = sa.select(db.versions.c.id).where(db.versions.c.model_id == row["id"])
            count = len(tx.conn.execute(version_ids).all())
            # Explicit deletes, children first: does not rely on the database enforcing ON DELETE CASCADE.
            tx.conn.execute(db.artifacts.delete().where(db.artifacts.c.version_id.in_(version_ids)))
            tx.conn.execute(db.aliases.delete().where(db.aliases.c.model_id == row["id"]))
            tx.conn.execute(db.alias_moves.delete().where(db.alias_moves.c.model_id == row["id"]))
            tx.conn.execute(db.versions.delete().where(db.versions.c.model_id == row["id"]))
            tx.conn.execute(db.models.delete().where(db.models.c.id == row["id"]))
            tx.emit(EventType.MODEL_DELETED, name)
            return count

    # -- versions ---------------------------------------------------------------------------------

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

    def create_version(
        self,
        model_name: str,
        spec: NewVersion,
        create_model: bool = False,
        actor: str = "",
        artifacts: Sequence[Artifact] = (),
        ready: bool = False,
    ) -> Version:
        """Add the next version of a model; numbers are 1, 2, 3 ... with no gaps or repeats.

        The version is PENDING, with ``artifacts`` (blobs already stored) recorded; with ``ready`` it is
        made READY in the same transaction, so it is whole or absent (and never seen PENDING)."""
        check_name(model_name)
        for name in spec.required_artifacts:
            check_name(name, "artifact name")
        names = [artifact.name for artifact in artifacts]
        for name in names:
            check_name(name, "artifact name")
        if len(set(names)) != len(names):
            raise InvalidArgument(f"artifact names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        with self._write(actor) as tx:
            model = tx.conn.execute(sa.select(db.models).where(db.models.c.name == model_name)).mappings().first()
            if model is None:
                if not create_model:
                    raise NotFound(f"model {model_name!r} not found (set create_model to create it)")
                model = self._insert_model(tx, model_name, "", {})
            number = int(model["latest_version"]) + 1
            tx.conn.execute(
                db.models.update()
                .where(db.models.c.id == model["id"])
                .values(latest_version=number, updated_at=tx.time)
            )
            required = sorted(set(spec.required_artifacts))
            version_id = tx.conn.execute(
                db.versions.insert()
                .values(
                    model_id=model["id"],
                    number=number,
                    format=int(spec.format),
                    variant=spec.variant,
                    status=int(Status.PENDING),
                    status_reason="",
                    signature=_dump(spec.signature),
                    metrics=_dump(spec.metrics),
                    tags=_dump(spec.tags),
                    lineage=_dump(spec.lineage),
                    description=spec.description,
                    required_artifacts=_dump(required),
                    created_by=tx.actor,
                    created_at=tx.time,
                    updated_at=tx.time,
                )
                .returning(db.versions.c.id)
            ).scalar_one()
            tx.emit(EventType.VERSION_CREATED, model_name, number, status=Status.PENDING)
            for artifact in artifacts:
                self._record_artifact(tx, version_id, artifact)
            if ready:
                check_complete(f"{model_name} v{number}", required, names)
                tx.conn.execute(
                    db.versions.update()
                    .where(db.versions.c.id == version_id)
                    .values(status=int(Status.READY), status_reason="created with its artifacts")
                )
                tx.emit(EventType.VERSION_STATUS_CHANGED, model_name, number, status=Status.READY)
            return self._version(tx.conn, model_name, number)

    def get_version(self, model_name: str, number: int = 0, alias: str = "") -> Version:
        """One version by number or alias."""
        check_name(model_name)
        with self._read() as conn:
            return self._version(conn, model_name, number, alias)

    def list_versions(
        self,
        model_name: str,
        size: int = 0,
        token: str = "",
        status: Status = Status.UNSPECIFIED,
        fmt: ModelFormat = ModelFormat.UNSPECIFIED,
        parent_version: int = 0,
    ) -> tuple[list[Version], str]:
        """A page of a model's versions, newest first, optionally filtered."""
        check_name(model_name)
        limit = page_size(size)
        before = decode_token(token)
        with self._read() as conn:
            model = self._model_row(conn, model_name)
            query = (
                sa.select(db.versions, db.models.c.name.label("model_name"))
                .join(db.models, db.models.c.id == db.versions.c.model_id)
                .where(db.versions.c.model_id == model["id"])
                .order_by(db.versions.c.number.desc())
            )
            if before is not None:
                query = query.where(db.versions.c.number < int(before))
            if status:
                query = query.where(db.versions.c.status == int(status))
            if fmt:
                query = query.where(db.versions.c.format == int(fmt))
            rows = list(conn.execute(query).mappings())
            if parent_version:
                rows = [r for r in rows if int(json.loads(r["lineage"]).get("parent_version", 0)) == parent_version]
            page = self._versions(conn, rows[:limit])
        return page, encode_token(page[-1].number) if len(rows) > limit else ""

    def update_version(
        self,
        model_name: str,
        number: int = 0,
        alias: str = "",
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
        actor: str = "",
    ) -> Version:
        """Merge metrics and tags into a version, or replace its description."""
        check_name(model_name)
        with self._write(actor) as tx:
            row = self._version_row(tx.conn, model_name, number, alias)
            values: dict[str, Any] = {
                "metrics": _dump({**json.loads(row["metrics"]), **(metrics or {})}),
                "tags": _dump({**json.loads(row["tags"]), **(tags or {})}),
                "updated_at": tx.time,
            }
            if description is not None:
                values["description"] = description
            tx.conn.execute(db.versions.update().where(db.versions.c.id == row["id"]).values(**values))
            tx.emit(EventType.VERSION_UPDATED, model_name, int(row["number"]), status=Status(row["status"]))
            return self._version(tx.conn, model_name, int(row["number"]))

    def set_status(
        self,
        model_name: str,
        number: int = 0,
        alias: str = "",
        status: Status = Status.READY,
        reason: str = "",
        actor: str = "",
    ) -> Version:
        """Move a version out of PENDING (or a READY, un-aliased one to FAILED/REJECTED)."""
        check_name(model_name)
        if status not in (Status.READY, Status.FAILED, Status.REJECTED):
            raise InvalidArgument("status must be READY, FAILED or REJECTED")
        with self._write(actor) as tx:
            row = self._version_row(tx.conn, model_name, number, alias)
            number = int(row["number"])
            current = Status(row["status"])
            if current == status:
                return self._version(tx.conn, model_name, number)
            if current in (Status.FAILED, Status.REJECTED):
                raise FailedPrecondition(f"{model_name} v{number} is {current.name}, a final state")
            if current == Status.READY:
                if status == Status.READY:  # pragma: no cover - handled above
                    pass
                pointing = tx.conn.execute(
                    sa.select(db.aliases.c.name).where(
                        db.aliases.c.model_id == row["model_id"], db.aliases.c.version_number == number
                    )
                ).all()
                if pointing:
                    names = ", ".join(sorted(a.name for a in pointing))
                    raise FailedPrecondition(f"{model_name} v{number} is aliased ({names}); move the aliases first")
            if status == Status.READY:
                stored = {
                    a.name
                    for a in tx.conn.execute(
                        sa.select(db.artifacts.c.name).where(db.artifacts.c.version_id == row["id"])
                    )
                }
                check_complete(f"{model_name} v{number}", json.loads(row["required_artifacts"]), stored)
            tx.conn.execute(
                db.versions.update()
                .where(db.versions.c.id == row["id"])
                .values(status=int(status), status_reason=reason, updated_at=tx.time)
            )
            tx.emit(EventType.VERSION_STATUS_CHANGED, model_name, number, status=status)
            return self._version(tx.conn, model_name, number)

    # -- artifacts --------------------------------------------------------------------------------

    def check_uploadable(self, model_name: str, number: int, artifact_name: str) -> None:
        """Raise unless the version exists and is PENDING (checked again when the upload commits)."""
        check_name(model_name)
        check_name(artifact_name, "artifact name")
        with self._read() as conn:
            row = self._version_row(conn, model_name, number)
            if Status(row["status"]) != Status.PENDING:
                raise FailedPrecondition(
                    f"{model_name} v{number} is {Status(row['status']).name}; artifacts can only be added while PENDING"
                )

    def add_artifact(self, model_name: str, number: int, artifact: Artifact, actor: str = "") -> None:
        """Record a stored blob as a version's artifact (replacing one of the same name)."""
        with self._write(actor) as tx:
            row = self._version_row(tx.conn, model_name, number)
            if Status(row["status"]) != Status.PENDING:
                raise FailedPrecondition(f"{model_name} v{number} stopped being PENDING during the upload")
            self._record_artifact(tx, row["id"], artifact)
            tx.conn.execute(db.versions.update().where(db.versions.c.id == row["id"]).values(updated_at=tx.time))
            tx.emit(EventType.VERSION_UPDATED, model_name, number, status=Status.PENDING)  # audit: who uploaded

    def _record_artifact(self, tx: Tx, version_id: int, artifact: Artifact) -> None:
        """Reference a stored blob from a version (replacing its artifact of the same name)."""
        known = tx.conn.execute(sa.select(db.blobs.c.sha256).where(db.blobs.c.sha256 == artifact.sha256)).first()
        if known is None:
            tx.conn.execute(
                db.blobs.insert().values(sha256=artifact.sha256, size_bytes=artifact.size_bytes, created_at=tx.time)
            )
        tx.conn.execute(
            db.artifacts.delete().where(db.artifacts.c.version_id == version_id, db.artifacts.c.name == artifact.name)
        )
        tx.conn.execute(
            db.artifacts.insert().values(
                version_id=version_id,
                name=artifact.name,
                sha256=artifact.sha256,
                size_bytes=artifact.size_bytes,
                media_type=artifact.media_type,
                created_at=tx.time,
            )
        )

    def find_artifact(self, model_name: str, number: int, alias: str, artifact_name: str) -> tuple[Artifact, int]:
        """An artifact of a version, and the version number the reference resolved to."""
        version = self.get_version(model_name, number, alias)
        for artifact in version.artifacts:
            if artifact.name == artifact_name:
                return artifact, version.number
        names = [a.name for a in version.artifacts]
        raise NotFound(f"{model_name} v{version.number} has no artifact {artifact_name!r} (it has {names})")

    def blob_is_recorded(self, digest: str) -> bool:
        """Whether a blob row exists."""
        with self._read() as conn:
            return conn.execute(sa.select(db.blobs.c.sha256).where(db.blobs.c.sha256 == digest)).first() is not None

    def unreferenced_blobs(self) -> list[tuple[str, int]]:
        """Blobs no artifact points at: (sha256, size)."""
        referenced = sa.select(db.artifacts.c.sha256)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(db.blobs.c.sha256, db.blobs.c.size_bytes).where(db.blobs.c.sha256.not_in(referenced))
            ).all()
        return [(r.sha256, int(r.size_bytes)) for r in rows]

    def all_blob_digests(self) -> set[str]:
        """Every recorded blob digest."""
        with self._read() as conn:
            return {r.sha256 for r in conn.execute(sa.select(db.blobs.c.sha256))}

    def forget_blobs(self, digests: Sequence[str]) -> list[str]:
        """Delete blob rows that are still unreferenced; returns the ones deleted (safe to remove)."""
        if not digests:
            return []
        with self._write("gc") as tx:
            referenced = {
                r.sha256
                for r in tx.conn.execute(sa.select(db.artifacts.c.sha256).where(db.artifacts.c.sha256.in_(digests)))
            }
            gone = [d for d in digests if d not in referenced]
            if gone:
                tx.conn.execute(db.blobs.delete().where(db.blobs.c.sha256.in_(gone)))
            return gone

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
