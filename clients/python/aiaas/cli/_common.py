"""What every CLI command shares: target/TLS/token flags, channels, error handling, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from aiaas.client.channels import channel_options, dial
from aiaas.wire import AUTHORIZATION_METADATA

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOT_ACCEPTED = 4  # the job ran, but a requested variant was REJECTED or FAILED (aiaas export)

DEFAULT_TARGETS = {
    "registry": "127.0.0.1:50051",
    "training": "127.0.0.1:50052",
    "serialization": "127.0.0.1:50053",
    "inference": "127.0.0.1:8001",
}


def add_connection_flags(parser: argparse.ArgumentParser, service: str) -> None:
    """--target, --tls-ca, --tls-cert, --tls-key, --token, --timeout and --json for one service."""
    env = f"AIAAS_{service.upper()}_TARGET"
    parser.add_argument(
        "--target",
        default=os.environ.get(env, DEFAULT_TARGETS[service]),
        help=f"{service} address host:port, several as a:p,b:p, or dns:///name:port "
        f"[env {env}, default {DEFAULT_TARGETS[service]}]",
    )
    parser.add_argument("--tls-ca", default=os.environ.get("AIAAS_TLS_CA", ""), help="CA bundle; enables TLS")
    parser.add_argument("--tls-cert", default=os.environ.get("AIAAS_TLS_CERT", ""), help="client cert (mTLS)")
    parser.add_argument("--tls-key", default=os.environ.get("AIAAS_TLS_KEY", ""), help="client key (mTLS)")
    parser.add_argument("--token", default=os.environ.get("AIAAS_TOKEN", ""), help="bearer token [env AIAAS_TOKEN]")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default 30)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_job_actions(actions: Any, service: str, commands: Sequence[tuple[str, Any, str]]) -> dict[str, Any]:
    """One subcommand per (name, function, help) taking a job id, e.g. show / watch / cancel; the parsers
    by name, for options of their own."""
    parsers = {}
    for name, func, text in commands:
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id")
        add_connection_flags(action, service)
        action.set_defaults(func=func)
        parsers[name] = action
    return parsers


def open_channel(args: argparse.Namespace, health_check: bool | None = None) -> grpc.Channel:
    """A synchronous channel to --target with the TLS and token options applied.

    --target may list several replicas (``a:p,b:p``) or be a ``dns:///`` name: calls are balanced
    round-robin over the healthy ones and reads retried (aiaas.client.channels). ``health_check=False``
    is for probes that must reach a NOT_SERVING server.
    """
    target, options = dial(args.target)
    if health_check is not None:
        options = channel_options(health_check=health_check)
    if args.tls_ca:
        creds = grpc.ssl_channel_credentials(
            Path(args.tls_ca).read_bytes(),
            Path(args.tls_key).read_bytes() if args.tls_key else None,
            Path(args.tls_cert).read_bytes() if args.tls_cert else None,
        )
        if args.token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(args.token))
        return grpc.secure_channel(target, creds, options=options)
    channel = grpc.insecure_channel(target, options=options)
    if args.token:
        channel = grpc.intercept_channel(channel, _TokenInterceptor(args.token))
    return channel


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` on plaintext channels (tests, loopback)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def _with_token(self, details: Any) -> Any:
        metadata = [*(details.metadata or []), (AUTHORIZATION_METADATA, f"Bearer {self.token}")]
        return details._replace(metadata=metadata) if hasattr(details, "_replace") else details

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)


def run_command(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Decorator: turn gRPC errors into one line on stderr and a meaningful exit code."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if (
                code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                and "connect" in (details or "").lower()
            ):
                print(f"error: cannot reach {getattr(args, 'target', '?')}: {details}", file=sys.stderr)
                return EXIT_UNREACHABLE
            if code == grpc.StatusCode.UNAVAILABLE:
                print(f"error: UNAVAILABLE: {details} (target {getattr(args, 'target', '?')})", file=sys.stderr)
                return EXIT_UNREACHABLE
            print(f"error: {code.name}: {details}", file=sys.stderr)
            return EXIT_REFUSED
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def message_to_dict(message: Message) -> dict[str, Any]:
    """A proto message as a JSON-ready dict (field names as in the .proto)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Any) -> None:
    """Print JSON (proto messages converted) for --json."""
    if isinstance(value, Message):
        value = message_to_dict(value)
    elif isinstance(value, list):
        value = [message_to_dict(v) if isinstance(v, Message) else v for v in value]
    print(json.dumps(value, indent=2, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


class ProgressBar:
    """A one-line progress bar on stderr (no dependency), quiet when stderr is not a terminal."""

    def __init__(self, total: float, label: str = "", width: int = 30) -> None:
        self.total = max(total, 1e-9)
        self.label = label
        self.width = width
        self.enabled = sys.stderr.isatty()

    def update(self, done: float, suffix: str = "") -> None:
        """Redraw at `done` out of total."""
        if not self.enabled:
            return
        share = min(1.0, done / self.total)
        filled = int(share * self.width)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {share:4.0%} {suffix}")
        sys.stderr.flush()

    def close(self) -> None:
        """End the line."""
        if self.enabled:
            sys.stderr.write("\n")
