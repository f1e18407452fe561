"""Drift counts shared by the worker processes of one inference service (``--workers N``).

The kernel spreads connections over the workers, so each sees only its share of a model's traffic. PSI is
not additive, but the bin counts it is computed from are: every scoring interval each worker writes its
windows' counts (per feature and bin, per predicted class, rows, feedback totals) to
``<run dir>/drift/w<index>.json`` (atomically: write, then rename), and scores its own fresh counts plus
the others' last ones. Every worker therefore reports, exports and answers ``GetDrift`` with the drift of
the whole service's traffic, up to one interval behind for the other workers' part.

Why files rather than Prometheus multiprocess mode or the supervisor: a multiprocess registry sums or
picks gauges, and a PSI of the sum cannot be made from per-worker PSIs; the supervisor is a plain
process loop that serves nothing. The workers already share the supervisor's run folder (its fleet
file), and a few kilobytes a worker per interval is all this needs. No gRPC here.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

FORMAT = 1


@dataclass
class Counts:
    """One worker's window of one version, as counts (what adds up across workers)."""

    rows: int
    features: np.ndarray  # features x bins
    classes: np.ndarray | None  # predicted rows per class
    feedback: tuple[int, int]  # (correct, total)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rows": self.rows,
            "features": self.features.tolist(),
            "classes": None if self.classes is None else self.classes.tolist(),
            "feedback": list(self.feedback),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        """Parsed back (ValueError/TypeError/KeyError on a malformed entry)."""
        classes = data.get("classes")
        correct, total = data.get("feedback", (0, 0))
        return cls(
            int(data["rows"]),
            np.asarray(data["features"], dtype=np.int64),
            None if classes is None else np.asarray(classes, dtype=np.int64),
            (int(correct), int(total)),
        )


@dataclass
class PeerEntry:
    """What another worker published about one version."""

    counts: Counts
    reference: dict[str, Any] | None  # its reference statistics (so a worker without traffic can score)
    reference_source: str


class FleetShare:
    """This worker's file in the shared folder, and the other workers' recent ones."""

    def __init__(self, folder: Path, worker: str, max_age_s: float) -> None:
        self.folder = folder
        self.worker = worker
        self.max_age_s = max_age_s
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"w{worker}.json"

    def publish(self, versions: dict[tuple[str, str], tuple[Counts, dict[str, Any] | None, str]]) -> None:
        """Replace this worker's file with the counts of its versions (blocking file I/O: run in a thread)."""
        entries = [
            {"model": name, "version": version, "counts": counts.as_json(), "reference": stats, "source": source}
            for (name, version), (counts, stats, source) in versions.items()
        ]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "pid": os.getpid(), "entries": entries}))
        os.replace(tmp, self.path)

    def peers(self) -> dict[tuple[str, str], list[PeerEntry]]:
        """The other workers' entries by version; files older than ``max_age_s`` (a worker gone) are skipped."""
        found: dict[tuple[str, str], list[PeerEntry]] = {}
        now = time.time()
        for path in self.folder.glob("w*.json"):
            if path == self.path:
                continue
            try:
                if now - path.stat().st_mtime > self.max_age_s:
                    continue
                data = json.loads(path.read_text())
                if data.get("format") != FORMAT:
                    continue
                for entry in data["entries"]:
                    key = (str(entry["model"]), str(entry["version"]))
                    peer = PeerEntry(Counts.from_json(entry["counts"]), entry.get("reference"), str(entry["source"]))
                    found.setdefault(key, []).append(peer)
            except (OSError, ValueError, TypeError, KeyError) as exc:  # replaced mid-read, or not ours
                logger.debug("drift share %s skipped: %s", path, exc)
        return found
