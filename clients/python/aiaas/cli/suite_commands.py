"""`aiaas up` (start the suite locally) and `aiaas health` (grpc.health.v1 of any service)."""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aiaas.cli._common import (
    DEFAULT_TARGETS,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_connection_flags,
    open_channel,
    print_json,
    print_table,
    run_command,
)


def register(subparsers: Any) -> None:
    """Add `up` and `health`."""
    up = subparsers.add_parser("up", help="start the four services locally until Ctrl-C")
    up.add_argument("--home", default=os.environ.get("AIAAS_HOME", ""), help="data directory (AIAAS_HOME)")
    up.add_argument("--ephemeral-ports", action="store_true", help="let each service pick a free port")
    up.add_argument(
        "--inference-replicas", type=int, default=1, help="inference processes, on consecutive ports (default 1)"
    )
    up.set_defaults(func=cmd_up)

    health = subparsers.add_parser("health", help="health of one service (--target) or all four (--all)")
    add_connection_flags(health, "registry")
    health.add_argument("--all", action="store_true", help="check the four services at their default addresses")
    health.add_argument("--service", default="", help="service name inside the server ('' = overall)")
    health.set_defaults(func=cmd_health)


SUITE_ENTRY_POINTS = "aiaas.suite"
"""Entry-point group where a services distribution offers ``up`` (a ``main(argv) -> int``)."""


def cmd_up(args: argparse.Namespace) -> int:
    """Run the suite supervisor that an installed services distribution offers as an entry point."""
    found = entry_points(group=SUITE_ENTRY_POINTS, name="up")
    if not found:
        print("error: `aiaas up` needs the services installed (pip install aiaas-services)", file=sys.stderr)
        return EXIT_USAGE
    main = next(iter(found)).load()
    argv = [
        *(["--home", args.home] if args.home else []),
        *(["--ephemeral-ports"] if args.ephemeral_ports else []),
        *(["--inference-replicas", str(args.inference_replicas)] if args.inference_replicas != 1 else []),
    ]
    return int(main(argv))


def _status(args: argparse.Namespace, target: str) -> str:
    args.target = target
    with open_channel(args, health_check=False) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return "UNREACHABLE"
            raise
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


@run_command
def cmd_health(args: argparse.Namespace) -> int:
    """Print SERVING / NOT_SERVING / UNREACHABLE; exit 0 only when all are SERVING."""
    args.timeout = min(args.timeout, 5.0)
    targets = (
        {name: os.environ.get(f"AIAAS_{name.upper()}_TARGET", t) for name, t in DEFAULT_TARGETS.items()}
        if args.all
        else {"target": args.target}
    )
    results = {name: (target, _status(args, target)) for name, target in targets.items()}
    if args.json:
        print_json({name: {"target": t, "status": s} for name, (t, s) in results.items()})
    else:
        print_table(["service", "target", "status"], [(n, t, s) for n, (t, s) in results.items()])
    statuses = {s for _, s in results.values()}
    if statuses == {"SERVING"}:
        return EXIT_OK
    if "UNREACHABLE" in statuses:
        return EXIT_UNREACHABLE
    return EXIT_REFUSED
