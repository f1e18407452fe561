"""Drift monitoring of served versions: sampled requests into a rolling window, scored off the hot path.

The hot path (``DriftMonitor.observe``) counts requests and, for one in ``sample_every``, copies the first
input's rows and the first output into a pending list (two array copies, nothing else). Off the response
path, ``refresh`` folds what is pending into each version's ring buffer in one vectorized step per version
(a thread; the classes come from one argmax over the batch). A background task does that and scores every
window each ``interval`` seconds against the version's reference statistics (``reference.json`` beside a
repository model, or the registry version's own / its ``source`` version's artifact), keeps a short
history of the largest feature PSI, and Prometheus reads the last scores when it scrapes
(``aiaas_drift_*``). ``GetDrift`` scores the window afresh.

With several worker processes (``share``), windows are scored as bin counts, and each worker adds the
counts the others published (``drift_share``), so scores describe the service's traffic, not one
worker's share of it; the predictions kept for feedback go to the workers' shared store
(``predictions.SharedPredictions``), so a feedback counts whichever worker receives it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aiaas_services.inference.drift_share import Counts, FleetShare, PeerEntry
from aiaas_services.inference.model import LoadedModel
from aiaas_services.inference.predictions import (
    PEER_WAITS,
    LocalPredictions,
    RowMismatch,
    SharedPredictions,
)
from aiaas_services.monitoring.drift import MIN_ROWS, PSI_THRESHOLD, TEXT_FEATURES, Reference, is_text, text_features
from aiaas_services.runtime.errors import InvalidArgument, NotFound, Unavailable

logger = logging.getLogger(__name__)

ReferenceLoader = Callable[[LoadedModel], Awaitable[tuple[dict[str, Any], str] | None]]
HISTORY = 60


class Window:
    """The last ``capacity`` sampled rows of one version (inputs flattened to features, predicted classes)."""

    def __init__(self, capacity: int, features: int) -> None:
        self.x = np.zeros((capacity, features), dtype=np.float32)
        self.predicted = np.zeros(capacity, dtype=np.int64)
        self.has_predictions = False
        self.next = 0
        self.rows = 0

    def add(self, x: np.ndarray, predicted: np.ndarray | None) -> None:
        capacity = len(self.x)
        x = x[-capacity:]
        n = len(x)
        end = self.next + n
        first = min(n, capacity - self.next)
        self.x[self.next : self.next + first] = x[:first]
        self.x[: n - first] = x[first:]
        if predicted is not None:
            predicted = predicted[-capacity:]
            self.predicted[self.next : self.next + first] = predicted[:first]
            self.predicted[: n - first] = predicted[first:]
            self.has_predictions = True
        self.next = end % capacity
        self.rows = min(capacity, self.rows + n)

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x[: self.rows].copy(), self.predicted[: self.rows].copy()


@dataclass
class Scores:
    """Drift of one window (or the workers' windows together) against its reference."""

    rows: int
    features: list[float]
    prediction: float | None
    windows: int = 1  # worker windows with rows that these scores cover

    @property
    def max_psi(self) -> float:
        return max(self.features, default=0.0)

    @property
    def drifted(self) -> bool:
        worst = max(self.max_psi, self.prediction or 0.0)
        return self.rows >= MIN_ROWS and worst > PSI_THRESHOLD


@dataclass
class Tracked:
    """A served version under watch (``model`` is None when only other workers have seen its traffic)."""

    name: str
    version: str
    model: LoadedModel | None
    window: Window
    reference: Reference | None = None
    reference_stats: dict[str, Any] | None = None
    reference_source: str = ""
    last: Scores | None = None
    history: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=HISTORY))

    def counts(self, feedback: tuple[int, int]) -> Counts | None:
        """This process's window as bin counts (None without a reference or with the wrong width). A
        reference without input features (an older text model's) still scores the predictions."""
        reference = self.reference
        if reference is None:
            return None
        if reference.num_features and self.window.x.shape[1] != reference.num_features:
            return None
        x, predicted = self.window.view()
        x = x[:, : reference.num_features]
        classes = reference.class_counts(predicted) if self.window.has_predictions else None
        return Counts(len(x), reference.bin_counts(x), classes, feedback)


class DriftMonitor:
    """Per-version windows, reference loading and scoring."""

    def __init__(self, load_reference: ReferenceLoader, sample_every: int = 8, capacity: int = 2048) -> None:
        self.load_reference = load_reference
        self.sample_every = max(1, sample_every)
        self.capacity = max(MIN_ROWS, capacity)
        self.tracked: dict[tuple[str, str], Tracked] = {}
        self.share: FleetShare | None = None
        self._peers: dict[tuple[str, str], list[PeerEntry]] = {}
        self.predictions: LocalPredictions | SharedPredictions = LocalPredictions()
        self.feedback: dict[tuple[str, str], list[int]] = {}  # (model, version) -> [correct, total]
        self._count = 0
        self._pending: list[tuple[LoadedModel, np.ndarray, np.ndarray | None]] = []
        self._lock = threading.Lock()  # windows are written and read in threads (refresh, scoring)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def observe(
        self,
        model: LoadedModel,
        inputs: Mapping[str, np.ndarray],
        outputs: Sequence[np.ndarray],
        request_id: str = "",
    ) -> None:
        """On the hot path: count, and keep one request in ``sample_every`` (a copy of its rows and first
        output, folded into the window later by ``refresh``); remember the predicted classes of a request
        that carries an id, for later feedback."""
        if request_id and outputs and np.ndim(outputs[0]) == 2:
            self.predictions.remember(model.name, request_id, model.version, np.asarray(outputs[0]).argmax(axis=1))
        self._count += 1
        if self._count % self.sample_every or not inputs:
            return
        if len(self._pending) >= self.capacity:  # the background has not caught up: this sample is dropped
            return
        signature = getattr(model, "inputs", None)  # the model's first input, as the reference has it
        first = inputs.get(signature[0].name) if signature else None
        output = outputs[0] if outputs else None
        x = np.array(first if first is not None else next(iter(inputs.values())))
        self._pending.append((model, x, None if output is None else np.array(output)))
        if len(self._pending) == self.capacity // 2:  # busy: fold now rather than at the next round
            self._spawn(self.refresh())

    def _take_pending(self) -> list[tuple[Tracked, list[tuple[np.ndarray, np.ndarray | None]]]]:
        """On the event loop: what observe kept, by version (new versions are tracked here, where their
        reference starts loading)."""
        pending, self._pending = self._pending, []
        groups: dict[tuple[str, str], tuple[Tracked, list[tuple[np.ndarray, np.ndarray | None]]]] = {}
        for model, x, output in pending:
            if x.ndim == 0:
                continue
            key = (model.name, model.version)
            group = groups.get(key)
            if group is None:
                tracked = self.tracked.get(key)
                if tracked is None:
                    # Strings (a text model's input) are described by their lengths (TEXT_FEATURES).
                    width = len(TEXT_FEATURES) if is_text(x) else x[:1].size
                    tracked = self.tracked[key] = Tracked(
                        model.name, model.version, model, Window(self.capacity, width)
                    )
                    self._spawn(self._attach_reference(tracked))
                elif tracked.model is None:  # known from another worker's traffic until now
                    tracked.model = model
                group = groups[key] = (tracked, [])
            group[1].append((x, output))
        return list(groups.values())

    def _fold(self, batches: list[tuple[Tracked, list[tuple[np.ndarray, np.ndarray | None]]]]) -> None:
        """Add pending samples to their windows: one concatenate and one argmax per version (a thread)."""
        for tracked, samples in batches:
            width = tracked.window.x.shape[1]
            rows = [(text_features(x) if is_text(x) else x.reshape(len(x), -1), y) for x, y in samples]
            rows = [(x, y) for x, y in rows if x.shape[1] == width]
            if not rows:
                continue
            x = np.concatenate([features for features, _ in rows])
            classified = [y for features, y in rows if y is not None and y.ndim == 2 and len(y) == len(features)]
            predicted = None
            if (
                len(classified) == len(rows)
                and len({y.shape[1] for y in classified}) == 1
                and classified[0].shape[1] > 1
            ):
                predicted = np.concatenate(classified).argmax(axis=1)
            with self._lock:
                tracked.window.add(x, predicted)

    async def refresh(self) -> None:
        """Fold what observe kept into the windows (off the event loop)."""
        batches = self._take_pending()
        if batches:
            await asyncio.to_thread(self._fold, batches)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach_reference(self, tracked: Tracked) -> None:
        if tracked.model is None:
            return
        try:
            found = await self.load_reference(tracked.model)
            if found is not None:
                stats, source = found
                tracked.reference = Reference(stats)
                tracked.reference_stats = stats
                tracked.reference_source = source
        except Exception as exc:  # noqa: BLE001 - no reference: no scores, the model still serves
            logger.warning("no drift reference for %s:%s: %s", tracked.name, tracked.version, exc)

    def share_with_workers(self, folder: Path, worker: str, interval: float) -> None:
        """Score together with the other workers that publish into ``folder`` (see ``drift_share``)."""
        self.share = FleetShare(folder, worker, max_age_s=max(30.0, 6 * interval))
        try:
            self.predictions = SharedPredictions(folder / "predictions.sqlite")
        except sqlite3.Error as exc:  # feedback then works for the requests this worker answered
            logger.warning("feedback predictions not shared with the other workers: %s", exc)

    def score(self, tracked: Tracked, fresh_peers: bool = False) -> Scores | None:
        """Scores of a version: this window now plus, with workers, the others' last published counts
        (re-read first when ``fresh_peers``). None without a reference or rows. Blocking: run in a thread."""
        if fresh_peers and self.share is not None:
            self._peers = self.share.peers()
        reference = tracked.reference
        if reference is None:
            return None
        with self._lock:
            own = tracked.counts((0, 0))
        peers = [p.counts for p in self._peers.get((tracked.name, tracked.version), [])]
        shape = (reference.num_features, reference.bins)
        parts = [c for c in [own, *peers] if c is not None and c.rows > 0 and c.features.shape == shape]
        if not parts:
            return None
        features = np.sum([c.features for c in parts], axis=0)
        classes = [c.classes for c in parts if c.classes is not None and len(c.classes) == reference.num_classes]
        prediction = reference.prediction_psi_of_counts(np.sum(classes, axis=0) if classes else None)
        return Scores(sum(c.rows for c in parts), reference.psi_of_counts(features), prediction, len(parts))

    def feedback_totals(self, name: str, version: str) -> tuple[int, int]:
        """(correct, total) labelled rows of a version: this worker's plus the others' last published."""
        correct, total = self.feedback.get((name, version), (0, 0))
        for peer in self._peers.get((name, version), []):
            correct, total = correct + peer.counts.feedback[0], total + peer.counts.feedback[1]
        return correct, total

    async def record_feedback(
        self, name: str, request_id: str, labels: Sequence[int]
    ) -> tuple[str, int, tuple[int, int]]:
        """Score the remembered prediction of a request against its labels: (version, correct rows, totals).
        The prediction is consumed: each request's feedback counts once."""
        store = self.predictions
        try:
            if store.shared:  # a file read in a thread; a peer's write may be a moment behind its answer
                remembered = None
                for pause in (0.0, *PEER_WAITS):
                    await asyncio.sleep(pause)
                    remembered = await asyncio.to_thread(store.take, name, request_id, len(labels))
                    if remembered is not None:
                        break
            else:
                remembered = store.take(name, request_id, len(labels))
        except RowMismatch as exc:
            raise InvalidArgument(f"request {request_id!r} had {exc.rows} rows but {len(labels)} labels came") from None
        except sqlite3.Error as exc:
            raise Unavailable(f"the feedback store is busy ({exc}); send the feedback again") from None
        if remembered is None:
            raise NotFound(
                f"no prediction of model {name!r} remembered for request id {request_id!r}: send the inference "
                "request with this id (ModelInferRequest.id) first; feedback counts once per request, and only "
                f"the newest {store.capacity} requests that carried an id are kept"
            )
        version, predicted = remembered
        correct = int(np.sum(predicted == np.asarray(labels, dtype=np.int64)))
        totals = self.feedback.setdefault((name, version), [0, 0])
        totals[0] += correct
        totals[1] += len(labels)
        return version, correct, self.feedback_totals(name, version)

    def find(self, name: str, version: str = "") -> Tracked:
        """The tracked version (newest observed when ``version`` is empty)."""
        if version:
            found = self.tracked.get((name, version))
        else:
            candidates = [t for (n, _), t in self.tracked.items() if n == name]
            found = candidates[-1] if candidates else None
        if found is None:
            raise NotFound(
                f"no sampled traffic for model {name!r}{' version ' + version if version else ''} yet; "
                "drift is scored once requests have been served"
            )
        return found

    def start(self, interval: float) -> None:
        """Score every window each ``interval`` seconds in the background."""
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(interval))

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.refresh()
            await asyncio.to_thread(self.tick)
            self._adopt_peers()

    def tick(self) -> None:
        """One background round (in a thread): publish this worker's counts and read the others' (with
        workers), then score every version for Prometheus and the history."""
        if self.share is not None:
            mine = {}
            for key, tracked in list(self.tracked.items()):
                if tracked.model is None:
                    continue
                correct, total = self.feedback.get(key, (0, 0))
                with self._lock:
                    counts = tracked.counts((correct, total))
                if counts is None:  # no reference here: only the feedback counts travel
                    counts = Counts(0, np.zeros((0, 0), np.int64), None, (correct, total))
                mine[key] = (counts, tracked.reference_stats, tracked.reference_source)
            try:
                self.share.publish(mine)
            except OSError as exc:  # the shared folder full or gone: scored with what there is, tried again
                logger.warning("drift counts not shared with the other workers: %s", exc)
            self._peers = self.share.peers()
        for tracked in list(self.tracked.values()):
            scores = self.score(tracked)
            if scores is not None:
                tracked.last = scores
                tracked.history.append(scores.max_psi)

    def _adopt_peers(self) -> None:
        """Versions only other workers have served so far: tracked here too (on the event loop, where
        ``observe`` adds versions), scored from the others' counts with the reference they loaded."""
        for (name, version), entries in self._peers.items():
            if (name, version) in self.tracked:
                continue
            for entry in entries:
                if entry.reference is None:
                    continue
                try:
                    reference = Reference(entry.reference)
                except (ValueError, KeyError, TypeError):
                    continue
                window = Window(self.capacity, reference.num_features)
                self.tracked[(name, version)] = Tracked(
                    name, version, None, window, reference, entry.reference, entry.reference_source
                )
                break

    async def close(self) -> None:
        """Stop the background work."""
        for task in [*self._tasks, *([self._loop_task] if self._loop_task else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._loop_task] if self._loop_task else []), return_exceptions=True)
        await asyncio.to_thread(self.predictions.close)


def repository_or_registry_loader(
    registry: Callable[[str, int], Awaitable[bytes | None]] | None,
) -> ReferenceLoader:
    """``reference.json`` beside a repository model; for a registry model, the version's own artifact or
    that of the version its ``source`` tag names (the training checkpoint an export came from), read with
    ``registry(name, number)`` (None when that version has none; see inference/reference_channel.py)."""

    async def load(model: LoadedModel) -> tuple[dict[str, Any], str] | None:
        source = model.source
        if source.origin != "registry":
            path = source.path.parent / "reference.json"
            return (json.loads(path.read_text()), str(path)) if path.is_file() else None
        if registry is None:
            return None
        candidates = [(source.name, int(source.version))]
        parent = source.tags.get("source", "")
        parent_name, _, parent_number = parent.rpartition(":")
        if parent_name and parent_number.isdigit():
            candidates.append((parent_name, int(parent_number)))
        for name, number in candidates:
            data = await registry(name, number)
            if data is not None:
                return json.loads(data), f"registry {name}:{number}/reference.json"
        return None

    return load


class _DriftCollector(Collector):
    def __init__(self, monitors: list[DriftMonitor]) -> None:
        self.monitors = monitors

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version"]
        feature = GaugeMetricFamily(
            "aiaas_drift_feature_psi", "PSI of an input feature against training.", labels=[*labels, "feature"]
        )
        worst = GaugeMetricFamily("aiaas_drift_max_psi", "Largest feature PSI of a served version.", labels=labels)
        prediction = GaugeMetricFamily(
            "aiaas_drift_prediction_psi", "PSI of the predicted-class distribution against training.", labels=labels
        )
        rows = GaugeMetricFamily(
            "aiaas_drift_window_rows", "Sampled rows in the drift window (all workers').", labels=labels
        )
        for monitor in self.monitors:
            for (name, version), tracked in list(monitor.tracked.items()):
                scores = tracked.last
                rows.add_metric([name, version], tracked.window.rows if scores is None else scores.rows)
                if scores is None:
                    continue
                worst.add_metric([name, version], scores.max_psi)
                for index, value in enumerate(scores.features):
                    feature.add_metric([name, version, str(index)], value)
                if scores.prediction is not None:
                    prediction.add_metric([name, version], scores.prediction)
        yield from (feature, worst, prediction, rows)


_MONITORS: list[DriftMonitor] = []
REGISTRY.register(_DriftCollector(_MONITORS))


def new_monitor(load_reference: ReferenceLoader, sample_every: int, capacity: int) -> DriftMonitor:
    """A monitor whose scores Prometheus exports."""
    monitor = DriftMonitor(load_reference, sample_every, capacity)
    _MONITORS.append(monitor)
    return monitor
