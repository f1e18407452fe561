"""`aiaas usage`: what each caller used of each model (requests, rows, compute seconds), from the registry.

The inference service counts per principal (the bearer token's owner) and model and sends the counts to
the registry in the background; this reads the totals. ``--since`` takes ``30m``, ``6h``, ``7d`` or an
ISO 8601 time; counts are kept per hour, so a window starts at the hour holding that time.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from aiaas.cli._common import EXIT_OK, add_connection_flags, open_channel, print_json, print_table, run_command

_RELATIVE = re.compile(r"^(\d+)([mhd])$")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m`` / ``6h`` / ``7d`` before now, or an ISO 8601 time (UTC when it names no zone)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        unit_name = {"m": "minutes", "h": "hours", "d": "days"}[unit]
        return now - timedelta(**{unit_name: amount})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: use 30m, 6h, 7d or an ISO time like 2026-01-31T12:00") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@run_command
def usage(args: argparse.Namespace) -> int:
    """Print usage totals per principal and model."""
    from aiaas.usage.v1 import usage_pb2, usage_pb2_grpc

    request = usage_pb2.ListUsageRequest(principal=args.principal, model=args.model)
    if args.since:
        request.since.FromDatetime(parse_since(args.since))
    with open_channel(args) as channel:
        response = usage_pb2_grpc.UsageServiceStub(channel).ListUsage(request, timeout=args.timeout)
    if args.json:
        print_json(list(response.totals))
        return EXIT_OK
    rows: list[list[Any]] = [
        [t.principal, t.model, t.requests, t.rows, f"{t.compute_seconds:.3f}", t.period_start.ToDatetime().isoformat()]
        for t in response.totals
    ]
    print_table(["principal", "model", "requests", "rows", "compute_s", "since"], rows)
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add `aiaas usage`."""
    parser = subparsers.add_parser("usage", help="usage per caller and model (requests, rows, compute seconds)")
    add_connection_flags(parser, "registry")
    parser.add_argument("--principal", default="", help="only this caller (a token's principal)")
    parser.add_argument("--model", default="", help="only this model")
    parser.add_argument("--since", default="", help="30m, 6h, 7d or an ISO time (default: all time)")
    parser.set_defaults(func=usage)
