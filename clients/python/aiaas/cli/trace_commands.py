"""`aiaas trace`: read the spans the services wrote to their local JSON-lines files.

Every service (and its worker processes) appends one JSON object per span to
``$AIAAS_HOME/traces/<service>.jsonl`` (or ``$AIAAS_TRACE_DIR``). ``aiaas trace show TRACE_ID`` joins
those files into one tree across services, so "why was this slow?" is answered without a collector;
``aiaas trace list`` names the most recent traces. With the compose stack, use Jaeger instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


@dataclass
class SpanNode:
    """A span and the spans whose parent it is, ordered by start time."""

    span: dict[str, Any]
    children: list[SpanNode] = field(default_factory=list)
    orphan: bool = False  # its parent is named but not in any file (not exported, or sampled out)

    @property
    def duration_ms(self) -> float:
        """Wall time of the span in milliseconds."""
        return (int(self.span.get("end_ns") or 0) - int(self.span.get("start_ns") or 0)) / 1e6

    def walk(self, depth: int = 0) -> Iterator[tuple[int, SpanNode]]:
        """Depth-first, children in start order."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)

    def as_dict(self, trace_start_ns: int) -> dict[str, Any]:
        """JSON form with offsets and durations in milliseconds."""
        return {
            **self.span,
            "offset_ms": round((int(self.span["start_ns"]) - trace_start_ns) / 1e6, 3),
            "duration_ms": round(self.duration_ms, 3),
            "orphan": self.orphan,
            "children": [child.as_dict(trace_start_ns) for child in self.children],
        }


def default_trace_dir(home: str | None = None) -> Path:
    """``--dir``, else ``$AIAAS_TRACE_DIR``, else ``<home>/traces`` with home from ``$AIAAS_HOME`` or ~/.aiaas."""
    if os.environ.get("AIAAS_TRACE_DIR") and not home:
        return Path(os.environ["AIAAS_TRACE_DIR"]).expanduser()
    base = home or os.environ.get("AIAAS_HOME") or str(Path.home() / ".aiaas")
    return Path(base).expanduser() / "traces"


def read_spans(folder: Path) -> Iterator[dict[str, Any]]:
    """Every span in every ``*.jsonl`` under ``folder``; torn or foreign lines are skipped."""
    for path in sorted(Path(folder).glob("*.jsonl")):
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "trace_id" in record and "span_id" in record:
                    yield record


def build_tree(spans: Iterable[dict[str, Any]]) -> list[SpanNode]:
    """Roots of the span forest of one trace (a span whose parent is missing becomes an orphan root)."""
    nodes: dict[str, SpanNode] = {}
    for span in spans:
        nodes.setdefault(span["span_id"], SpanNode(span))
    roots: list[SpanNode] = []
    for node in nodes.values():
        parent_id = node.span.get("parent_id")
        parent = nodes.get(parent_id) if parent_id else None
        if parent is not None and parent is not node:
            parent.children.append(node)
        else:
            node.orphan = bool(parent_id)
            roots.append(node)
    for node in nodes.values():
        node.children.sort(key=lambda n: int(n.span.get("start_ns") or 0))
    roots.sort(key=lambda n: int(n.span.get("start_ns") or 0))
    return roots


def resolve_trace_id(prefix: str, folder: Path) -> tuple[str, list[dict[str, Any]]]:
    """The spans of the one trace whose id starts with ``prefix``; ValueError if none or several."""
    wanted = prefix.strip().lower()
    if not wanted or any(c not in "0123456789abcdef" for c in wanted):
        raise ValueError(f"trace id must be hex, got {prefix!r}")
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in read_spans(folder):
        if str(span["trace_id"]).startswith(wanted):
            by_trace.setdefault(span["trace_id"], []).append(span)
    if not by_trace:
        raise LookupError(f"no spans for trace {prefix} under {folder}")
    if len(by_trace) > 1:
        raise ValueError(f"trace id prefix {prefix} is ambiguous: {', '.join(sorted(by_trace)[:5])}")
    [(trace_id, spans)] = by_trace.items()
    return trace_id, spans


def trace_summary(trace_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, services and wall time of one trace, plus its tree."""
    roots = build_tree(spans)
    start = min(int(s["start_ns"]) for s in spans)
    end = max(int(s.get("end_ns") or s["start_ns"]) for s in spans)
    return {
        "trace_id": trace_id,
        "span_count": len(spans),
        "services": sorted({str(s.get("service", "")) for s in spans}),
        "duration_ms": round((end - start) / 1e6, 3),
        "roots": [root.as_dict(start) for root in roots],
    }


def format_tree(trace_id: str, spans: list[dict[str, Any]]) -> list[str]:
    """Lines of ``aiaas trace show``: offset, duration, indented name, service, status and events."""
    roots = build_tree(spans)
    summary = trace_summary(trace_id, spans)
    start = min(int(s["start_ns"]) for s in spans)
    lines = [
        f"trace {trace_id}  {summary['span_count']} spans  {len(summary['services'])} services  "
        f"{summary['duration_ms']:.1f} ms",
        f"{'start ms':>10} {'duration ms':>12}  span",
    ]
    for root in roots:
        for depth, node in root.walk():
            span = node.span
            offset = (int(span["start_ns"]) - start) / 1e6
            marks = []
            if span.get("status", {}).get("code") == "ERROR":
                marks.append(f"ERROR {span['status'].get('description') or ''}".rstrip())
            if node.orphan:
                marks.append(f"parent {span.get('parent_id')} not found")
            if span.get("events"):
                marks.append(f"{len(span['events'])} events")
            if span.get("links"):
                marks.append(f"{len(span['links'])} links")
            suffix = f"  ({'; '.join(marks)})" if marks else ""
            lines.append(
                f"{offset:>10.1f} {node.duration_ms:>12.1f}  {'  ' * depth}{span.get('name')}  "
                f"[{span.get('service', '?')}]{suffix}"
            )
    return lines


def show(args: argparse.Namespace) -> int:
    """`aiaas trace show TRACE_ID`."""
    folder = Path(args.dir).expanduser() if args.dir else default_trace_dir(args.home)
    try:
        trace_id, spans = resolve_trace_id(args.trace_id, folder)
    except LookupError as exc:
        print(f"error: NOT_FOUND: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(trace_summary(trace_id, spans), indent=2))
    else:
        print("\n".join(format_tree(trace_id, spans)))
    return EXIT_OK


def list_traces(args: argparse.Namespace) -> int:
    """`aiaas trace list`: the most recent traces, newest first."""
    folder = Path(args.dir).expanduser() if args.dir else default_trace_dir(args.home)
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in read_spans(folder):
        by_trace.setdefault(span["trace_id"], []).append(span)
    rows: list[dict[str, Any]] = []
    for trace_id, spans in by_trace.items():
        roots = build_tree(spans)
        start = min(int(s["start_ns"]) for s in spans)
        end = max(int(s.get("end_ns") or s["start_ns"]) for s in spans)
        rows.append(
            {
                "trace_id": trace_id,
                "root": roots[0].span.get("name", "") if roots else "",
                "spans": len(spans),
                "services": sorted({str(s.get("service", "")) for s in spans}),
                "start_ns": start,
                "duration_ms": round((end - start) / 1e6, 3),
            }
        )
    rows.sort(key=lambda r: r["start_ns"], reverse=True)
    rows = rows[: args.limit]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        print(
            f"{row['trace_id']}  {row['duration_ms']:>10.1f} ms  {row['spans']:>4} spans  "
            f"{','.join(row['services'])}  {row['root']}"
        )
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `aiaas trace show|list`."""
    group = subparsers.add_parser("trace", help="read traces from the local span files")
    commands = group.add_subparsers(dest="trace_command", metavar="COMMAND", required=True)
    for name, func, help_text in (
        ("show", show, "print one trace's span tree across services"),
        ("list", list_traces, "list recent traces"),
    ):
        parser = commands.add_parser(name, help=help_text)
        if name == "show":
            parser.add_argument("trace_id", help="trace id (32 hex digits, or a unique prefix)")
        else:
            parser.add_argument("--limit", type=int, default=20, help="how many (default 20)")
        parser.add_argument("--home", default=None, help="AIAAS_HOME whose traces/ to read [env AIAAS_HOME]")
        parser.add_argument("--dir", default=None, help="read *.jsonl from this folder [env AIAAS_TRACE_DIR]")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        parser.set_defaults(func=func)
