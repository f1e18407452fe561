"""`aiaas models|versions|alias|artifacts ...`: the registry from the command line.

aiaas versions push digits-mlp model.onnx --format onnx --variant fp32
aiaas alias set digits-mlp production 3 --reason "better f1"
aiaas alias rollback digits-mlp production
aiaas versions pull digits-mlp@production ./models
aiaas models watch --after 0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from aiaas.cli._common import (
    EXIT_OK,
    EXIT_REFUSED,
    ProgressBar,
    add_connection_flags,
    message_to_dict,
    print_json,
    print_table,
    run_command,
)
from aiaas.client.registry import ArtifactCorrupted, SyncRegistryClient, version_ref
from aiaas.registry.v1 import registry_pb2
from aiaas.wire import AUTHORIZATION_METADATA

FORMATS = {"checkpoint": 1, "pytorch": 1, "onnx": 2, "dataset": 3}
STATUSES = {"pending": 1, "ready": 2, "failed": 3, "rejected": 4}


def _client(args: argparse.Namespace) -> SyncRegistryClient:
    credentials = None
    if args.tls_ca:
        credentials = grpc.ssl_channel_credentials(
            Path(args.tls_ca).read_bytes(),
            Path(args.tls_key).read_bytes() if args.tls_key else None,
            Path(args.tls_cert).read_bytes() if args.tls_cert else None,
        )
    metadata = [(AUTHORIZATION_METADATA, f"Bearer {args.token}")] if args.token else []
    return SyncRegistryClient(args.target, timeout=args.timeout, credentials=credentials, metadata=metadata)


def _tags(pairs: list[str] | None) -> dict[str, str]:
    tags = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--tag {pair!r}: use KEY=VALUE")
        tags[key] = value
    return tags


def _status_name(value: int) -> str:
    return registry_pb2.VersionStatus.Name(value).removeprefix("VERSION_STATUS_").lower()  # type: ignore[arg-type]


def _format_name(value: int) -> str:
    return registry_pb2.ModelFormat.Name(value).removeprefix("MODEL_FORMAT_").lower()  # type: ignore[arg-type]


def _progress(label: str) -> Callable[[str, int, int], None]:
    bars: dict[str, ProgressBar] = {}

    def report(name: str, done: int, total: int) -> None:
        bar = bars.setdefault(name, ProgressBar(total, f"{label} {name}"))
        bar.update(done, f"{done / 1e6:.1f}/{total / 1e6:.1f} MB")
        if done >= total:
            bar.close()

    return report


def _print_versions(args: argparse.Namespace, versions: list[Any]) -> None:
    if args.json:
        print_json(list(versions))
        return
    rows = [
        (
            v.version,
            _status_name(v.status),
            _format_name(v.format),
            v.variant,
            ",".join(v.aliases),
            " ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())),
            v.created_by,
        )
        for v in versions
    ]
    print_table(["version", "status", "format", "variant", "aliases", "metrics", "by"], rows)


def _print_moves(args: argparse.Namespace, moves: list[Any]) -> None:
    if args.json:
        print_json(list(moves))
        return
    rows = [
        (m.alias, m.from_version or "-", m.to_version or "deleted", m.actor, m.moved_at.ToJsonString(), m.reason)
        for m in moves
    ]
    print_table(["alias", "from", "to", "actor", "when", "reason"], rows)


def _done(args: argparse.Namespace, message: Any, text: str) -> int:
    if args.json:
        print_json(message)
    else:
        print(text)
    return EXIT_OK


# -- models ------------------------------------------------------------------------------------------


@run_command
def models_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.list_models(args.prefix)
    if args.json:
        print_json(list(models))
        return EXIT_OK
    rows = [
        (m.name, m.latest_version, ",".join(f"{a}->{v}" for a, v in sorted(m.aliases.items())), m.description)
        for m in models
    ]
    print_table(["name", "latest", "aliases", "description"], rows)
    return EXIT_OK


@run_command
def models_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = client.get_model(args.name)
    print_json(model)
    return EXIT_OK


@run_command
def models_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = client.create_model(args.name, args.description, _tags(args.tag), exist_ok=args.exist_ok)
    return _done(args, model, f"created model {model.name}")


@run_command
def models_update(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = client.update_model(args.name, args.description, _tags(args.tag), args.remove_tag or [])
    return _done(args, model, f"updated model {model.name}")


@run_command
def models_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        count = client.delete_model(args.name, force=args.force)
    return _done(args, {"deleted_versions": count}, f"deleted model {args.name} ({count} versions)")


@run_command
def models_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for seen, event in enumerate(client.watch(args.after, args.model or [], reconnect=True), start=1):
            if args.json:
                print(message_to_dict(event), flush=True)
            else:
                kind = registry_pb2.EventType.Name(event.type).removeprefix("EVENT_TYPE_").lower()
                detail = f" alias={event.alias} from=v{event.from_version}" if event.alias else ""
                status = f" status={_status_name(event.status)}" if event.status else ""
                who = f" by {event.actor}" if event.actor else ""
                print(f"{event.sequence} {kind} {event.model_name} v{event.version}{detail}{status}{who}", flush=True)
            if args.count and seen >= args.count:
                break
    return EXIT_OK


# -- versions ----------------------------------------------------------------------------------------


@run_command
def versions_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        versions = client.list_versions(args.model, status=STATUSES.get(args.status or "", 0))
    _print_versions(args, versions)
    return EXIT_OK


@run_command
def versions_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        version = client.get_version(version_ref(args.ref))
    print_json(version)
    return EXIT_OK


@run_command
def versions_set_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        version = client.set_status(version_ref(args.ref), STATUSES[args.status], args.reason)
    return _done(args, version, f"{version.model_name} v{version.version} is {_status_name(version.status)}")


@run_command
def versions_push(args: argparse.Namespace) -> int:
    files: dict[str, Path] = {}
    for item in args.files:
        name, sep, path = item.partition("=")
        files[name if sep else Path(item).name] = Path(path if sep else item)
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
    with _client(args) as client:
        version = client.push(
            args.model,
            files,
            format=FORMATS[args.format] if args.format else 0,
            ready=not args.no_ready,
            progress=None if args.json else _progress("push"),
            variant=args.variant,
            description=args.description,
            tags=_tags(args.tag),
        )
    return _done(args, version, f"pushed {version.model_name} v{version.version} ({_status_name(version.status)})")


@run_command
def versions_pull(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            version = client.pull(version_ref(args.ref), args.folder, progress=None if args.json else _progress("pull"))
        except ArtifactCorrupted as exc:
            print(f"error: DATA_LOSS: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    names = ", ".join(a.name for a in version.artifacts)
    return _done(args, version, f"pulled {version.model_name} v{version.version} into {args.folder}: {names}")


# -- aliases -----------------------------------------------------------------------------------------


@run_command
def alias_set(args: argparse.Namespace) -> int:
    with _client(args) as client:
        move = client.set_alias(args.model, args.alias, args.version, reason=args.reason)
    return _done(args, move, f"{args.model}@{args.alias}: v{move.from_version or '-'} -> v{move.to_version}")


@run_command
def alias_rollback(args: argparse.Namespace) -> int:
    with _client(args) as client:
        move = client.rollback(args.model, args.alias, reason=args.reason)
    return _done(args, move, f"{args.model}@{args.alias} rolled back: v{move.from_version} -> v{move.to_version}")


@run_command
def alias_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        move = client.delete_alias(args.model, args.alias)
    return _done(args, move, f"deleted {args.model}@{args.alias} (was v{move.from_version})")


@run_command
def alias_history(args: argparse.Namespace) -> int:
    with _client(args) as client:
        moves = client.alias_history(args.model, args.alias or "")
    _print_moves(args, moves)
    return EXIT_OK


# -- artifacts ---------------------------------------------------------------------------------------


@run_command
def artifacts_upload(args: argparse.Namespace) -> int:
    bar = ProgressBar(Path(args.path).stat().st_size, f"upload {args.name}")
    with _client(args) as client:
        result = client.upload_file(args.model, args.version, args.name, args.path, args.media_type, bar.update)
    bar.close()
    note = " (deduplicated)" if result.deduplicated else ""
    return _done(args, result, f"stored {args.name} sha256={result.artifact.sha256}{note}")


@run_command
def artifacts_download(args: argparse.Namespace) -> int:
    bar = ProgressBar(1, f"download {args.name}")

    def progress(done: int, total: int) -> None:
        bar.total = max(total, 1)
        bar.update(done)

    with _client(args) as client:
        try:
            artifact = client.download_to(version_ref(args.ref), args.name, args.path, progress)
        except ArtifactCorrupted as exc:
            print(f"error: DATA_LOSS: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    bar.close()
    return _done(args, artifact, f"wrote {args.path} ({artifact.size_bytes} bytes, sha256 verified)")


@run_command
def artifacts_gc(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.collect_garbage(args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    return _done(args, report, f"{verb} {report.blobs_deleted} blobs ({report.bytes_freed} bytes)")


def _command(
    group: Any, name: str, func: Callable[[argparse.Namespace], int], help_text: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text, description=help_text)
    add_connection_flags(parser, "registry")
    parser.set_defaults(func=func)
    return parser


def register(subparsers: Any) -> None:
    """Add the models, versions, alias and artifacts command groups."""
    models = subparsers.add_parser("models", help="registered models").add_subparsers(dest="action", required=True)
    p = _command(models, "list", models_list, "list models")
    p.add_argument("--prefix", default="", help="only names starting with this")
    _command(models, "get", models_get, "show a model").add_argument("name")
    p = _command(models, "create", models_create, "register a model")
    p.add_argument("name")
    p.add_argument("--description", default="")
    p.add_argument("--tag", action="append", help="KEY=VALUE (repeatable)")
    p.add_argument("--exist-ok", action="store_true", help="no error when it exists")
    p = _command(models, "update", models_update, "change a model's description or tags")
    p.add_argument("name")
    p.add_argument("--description", default=None)
    p.add_argument("--tag", action="append", help="KEY=VALUE to set (repeatable)")
    p.add_argument("--remove-tag", action="append", help="tag key to remove (repeatable)")
    p = _command(models, "delete", models_delete, "delete a model and its versions")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="even when aliases point at it")
    p = _command(models, "watch", models_watch, "stream registry events")
    p.add_argument("--after", type=int, default=-1, help="events after this sequence (0 = all, -1 = only new)")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--count", type=int, default=0, help="stop after this many events (0 = never)")

    versions = subparsers.add_parser("versions", help="model versions").add_subparsers(dest="action", required=True)
    p = _command(versions, "list", versions_list, "list a model's versions, newest first")
    p.add_argument("model")
    p.add_argument("--status", choices=sorted(STATUSES))
    _command(versions, "get", versions_get, "show a version (MODEL:N or MODEL@ALIAS)").add_argument("ref")
    p = _command(versions, "set-status", versions_set_status, "mark a version ready, failed or rejected")
    p.add_argument("ref", help="MODEL:N or MODEL@ALIAS")
    p.add_argument("status", choices=["ready", "failed", "rejected"])
    p.add_argument("--reason", default="")
    p = _command(versions, "push", versions_push, "create a version from files, upload them, mark it ready")
    p.add_argument("model")
    p.add_argument("files", nargs="+", help="PATH or NAME=PATH")
    p.add_argument("--format", choices=sorted(FORMATS))
    p.add_argument("--variant", default="")
    p.add_argument("--description", default="")
    p.add_argument("--tag", action="append", help="KEY=VALUE (repeatable)")
    p.add_argument("--no-ready", action="store_true", help="leave it PENDING")
    p = _command(versions, "pull", versions_pull, "download every artifact of a version (verified)")
    p.add_argument("ref", help="MODEL:N or MODEL@ALIAS")
    p.add_argument("folder")

    alias = subparsers.add_parser("alias", help="aliases: deploy and roll back").add_subparsers(
        dest="action", required=True
    )
    p = _command(alias, "set", alias_set, "point an alias at a READY version")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("version", type=int)
    p.add_argument("--reason", default="")
    p = _command(alias, "rollback", alias_rollback, "move an alias back to its previous version")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("--reason", default="")
    p = _command(alias, "delete", alias_delete, "remove an alias")
    p.add_argument("model")
    p.add_argument("alias")
    p = _command(alias, "history", alias_history, "who moved an alias, when, from where")
    p.add_argument("model")
    p.add_argument("alias", nargs="?")

    artifacts = subparsers.add_parser("artifacts", help="artifact bytes").add_subparsers(dest="action", required=True)
    p = _command(artifacts, "upload", artifacts_upload, "upload a file into a PENDING version")
    p.add_argument("model")
    p.add_argument("version", type=int)
    p.add_argument("name")
    p.add_argument("path")
    p.add_argument("--media-type", default="")
    p = _command(artifacts, "download", artifacts_download, "download an artifact (verified, resumable)")
    p.add_argument("ref", help="MODEL:N or MODEL@ALIAS")
    p.add_argument("name")
    p.add_argument("path")
    p = _command(artifacts, "gc", artifacts_gc, "delete blobs no version references")
    p.add_argument("--dry-run", action="store_true")
