"""Registry metadata on SQLAlchemy Core: models, versions and artifacts (aliases and events in
``store_aliases.py``, transactions and row mapping in ``store_base.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from aiaas_services.registry import db
from aiaas_services.registry.domain import (
    Artifact,
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
from aiaas_services.registry.store_aliases import AliasAndEventStore
from aiaas_services.registry.store_base import Tx, _dump
from aiaas_services.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from aiaas_services.runtime.names import check_name


class RegistryStore(AliasAndEventStore):
    """Models, versions, aliases and events in one SQL database."""

    # -- models -----------------------------------------------------------------------------------

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
