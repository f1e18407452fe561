"""Run the benchmark suites, write bench/results/latest.json and print a table.

Each suite is a module ``bench/<suite>.py`` with ``run(quick: bool) -> list[Record]``. Suites run one
after another so they do not disturb each other's numbers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from bench.common import Record, machine

SUITES = [
    "registry",
    "training",
    "serialization",
    "inference",
    "cancellation",
    "overhead",
    "tracing",
    "hotpath",
    "workers",
    "text",
    "distill",
]
RESULTS = Path(__file__).parent / "results"


def main() -> int:
    """Entry point of ``python -m bench``."""
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short form (same record names)")
    parser.add_argument("--only", default="", help="comma-separated suites to run")
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s] or SUITES
    records: list[Record] = []
    failed: list[str] = []
    for suite in chosen:
        try:
            module = importlib.import_module(f"bench.{suite}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{suite}":
                print(f"[bench] suite {suite}: not present, skipped", file=sys.stderr)
                continue
            raise
        started = time.monotonic()
        print(f"[bench] {suite} ...", file=sys.stderr, flush=True)
        try:
            records.extend(module.run(quick=args.quick))
        except Exception:  # noqa: BLE001 - one broken suite must not hide the others' numbers
            traceback.print_exc()
            failed.append(suite)
        print(f"[bench] {suite} done in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "machine": machine(),
        "records": [r.as_dict() for r in records],
        "failed_suites": failed,
    }
    (RESULTS / "latest.json").write_text(json.dumps(payload, indent=2))
    width = max([len(r.name) for r in records] + [4])
    print(f"{'name':<{width}}  {'value':>12}  unit     better")
    for r in records:
        print(f"{r.name:<{width}}  {r.value:>12.4g}  {r.unit:<8} {r.better}")
    print(f"\nwrote {RESULTS / 'latest.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
