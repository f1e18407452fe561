"""Domain rules and the SQL store on a real SQLite file (no gRPC)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from aiaas_services.registry import db
from aiaas_services.registry.domain import (
    Artifact,
    EventType,
    NewVersion,
    Status,
    decode_token,
    encode_token,
    page_size,
)
from aiaas_services.registry.store import RegistryStore
from aiaas_services.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from aiaas_services.runtime.names import check_alias, check_name


@pytest.fixture
def store(tmp_path: Path) -> RegistryStore:
    engine = db.create_db_engine(db.sqlite_url(tmp_path / "r.db"))
    db.migrate(engine)
    return RegistryStore(engine)


@pytest.mark.parametrize("name", ["digits-mlp", "a", "A_b.c-1", "x" * 128, "v1.onnx"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "a\\b", "..", "a..b", "x" * 129, "sp ace", "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid model name"):
        check_name(name)


def test_alias_rules() -> None:
    assert check_alias("production") == "production"
    for bad in ("3", "", "a.b", "x" * 65):
        with pytest.raises(InvalidArgument):
            check_alias(bad)


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    assert decode_token(encode_token("name-1")) == "name-1"
    assert decode_token("") is None
    with pytest.raises(InvalidArgument, match="page_token"):
        decode_token("not a token")
    assert page_size(0) == 50 and page_size(5000) == 1000
    with pytest.raises(InvalidArgument):
        page_size(-1)


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    engine = db.create_db_engine(db.sqlite_url(tmp_path / "again.db"))
    db.migrate(engine)
    db.migrate(engine)
    store = RegistryStore(engine)
    assert store.last_sequence() == 0
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_versions_number_without_gaps_from_threads(store: RegistryStore) -> None:
    store.create_model("m")
    numbers: list[int] = []

    def create() -> None:
        numbers.append(store.create_version("m", NewVersion()).number)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(numbers) == list(range(1, 17))
    events = store.events_after(0)
    assert [e.sequence for e in events] == list(range(1, 18))
    assert [e.type for e in events].count(EventType.VERSION_CREATED) == 16


def test_status_rules_and_alias_preconditions(store: RegistryStore) -> None:
    with pytest.raises(NotFound, match="create_model"):
        store.create_version("m", NewVersion())
    v = store.create_version("m", NewVersion(required_artifacts=["a.bin"]), create_model=True)
    with pytest.raises(AlreadyExists):
        store.create_model("m")
    with pytest.raises(FailedPrecondition, match="not uploaded"):
        store.set_status("m", v.number, status=Status.READY)
    with pytest.raises(FailedPrecondition, match="READY"):
        store.set_alias("m", "prod", v.number)
    store.add_artifact("m", v.number, Artifact("a.bin", "ab" * 32, 3, "x"))
    assert store.set_status("m", v.number, status=Status.READY).status == Status.READY
    with pytest.raises(FailedPrecondition, match="PENDING"):
        store.add_artifact("m", v.number, Artifact("b.bin", "cd" * 32, 3, "x"))
    move = store.set_alias("m", "prod", v.number, actor="me", reason="go")
    assert (move.from_version, move.to_version, move.actor) == (0, v.number, "me")
    assert store.get_version("m", alias="prod").number == v.number
    assert store.get_model("m").aliases == {"prod": v.number}
    with pytest.raises(FailedPrecondition, match="aliased"):
        store.set_status("m", v.number, status=Status.REJECTED)
    with pytest.raises(FailedPrecondition, match="force"):
        store.delete_model("m")
    assert store.unreferenced_blobs() == []
    assert store.delete_model("m", force=True) == 1
    assert store.unreferenced_blobs() == [("ab" * 32, 3)]
    assert store.forget_blobs(["ab" * 32]) == ["ab" * 32]
    assert store.events_after(0)[-1].type == EventType.MODEL_DELETED


def test_events_filter_by_model(store: RegistryStore) -> None:
    store.create_model("a")
    store.create_model("b")
    store.create_version("a", NewVersion())
    assert [(e.model_name, e.type) for e in store.events_after(0, ["a"])] == [
        ("a", EventType.MODEL_CREATED),
        ("a", EventType.VERSION_CREATED),
    ]
    assert [e.sequence for e in store.events_after(1, ["b"])] == [2]


def test_a_version_created_ready_with_its_artifacts_is_all_or_nothing(store: RegistryStore) -> None:
    weights, card = Artifact("w.bin", "ab" * 32, 3, "x"), Artifact("spec.json", "cd" * 32, 2, "y")
    spec = NewVersion(required_artifacts=["w.bin", "spec.json"])
    with pytest.raises(FailedPrecondition, match=r"not uploaded: \['spec.json'\]"):
        store.create_version("m", spec, create_model=True, artifacts=[weights], ready=True)
    with pytest.raises(NotFound):  # rolled back whole: not even the model exists
        store.get_model("m")
    assert store.events_after(0) == [] and store.unreferenced_blobs() == []
    with pytest.raises(InvalidArgument, match="repeat"):
        store.create_version("m", spec, create_model=True, artifacts=[weights, weights])

    version = store.create_version("m", spec, create_model=True, artifacts=[weights, card], ready=True)
    assert version.status == Status.READY and sorted(a.name for a in version.artifacts) == ["spec.json", "w.bin"]
    assert [(e.type, e.status) for e in store.events_after(0)] == [
        (EventType.MODEL_CREATED, Status.UNSPECIFIED),
        (EventType.VERSION_CREATED, Status.PENDING),
        (EventType.VERSION_STATUS_CHANGED, Status.READY),
    ]
