"""Spans as JSON lines: the file exporter, and the tracer provider that feeds it light spans through the
SDK's ``BatchSpanProcessor`` (see ``light.py`` for why light spans)."""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
)

from aiaas_services.runtime.tracing.light import LightSpan, LightTracer
from aiaas_services.runtime.tracing.spanjson import compact_json, span_to_json

logger = logging.getLogger(__name__)


class JsonLinesSpanExporter(SpanExporter):
    """Appends spans to a file, one JSON object per line, one ``write`` per batch.

    The file is opened with ``O_APPEND`` and each batch goes out in a single ``write`` call, so a service
    and its worker processes can share one file without interleaving lines.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def export(self, spans: Sequence[ReadableSpan | LightSpan]) -> SpanExportResult:
        """Encode and write the batch (on the batch processor's thread); FAILURE (logged) if the disk refuses."""
        lines = []
        for span in spans:
            try:
                lines.append(span.to_json() if isinstance(span, LightSpan) else span_to_json(span))
            except (TypeError, ValueError, RuntimeError):  # e.g. an attribute mutated by another thread
                logger.warning("tracing: span %r could not be encoded; dropped", getattr(span, "name", "?"))
        ok = self.write_lines(lines) if lines else True
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def write_lines(self, lines: Sequence[str]) -> bool:
        """Append JSON lines with one ``write``; False (logged) if the disk refuses."""
        payload = ("\n".join(lines) + "\n").encode()
        with self._lock:
            try:
                fd = self._open()
                view = memoryview(payload)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            except OSError:
                logger.exception("tracing: cannot append spans to %s", self.path)
                return False
        return True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Writes are unbuffered; nothing to do."""
        return True

    def shutdown(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class JsonLinesTracerProvider(trace.TracerProvider):
    """Light spans, exported by the SDK's ``BatchSpanProcessor`` to the JSON-lines file (the default).

    Ending a span is a queue append on the request's path; the processor's thread encodes and writes
    them every ``schedule_delay`` seconds, or sooner once a batch is waiting, and at
    ``force_flush``/``shutdown`` (also registered at exit). A full queue drops spans (the SDK logs it).
    """

    def __init__(
        self,
        resource: Resource,
        sampler: Sampler,
        path: Path,
        schedule_delay: float = 5.0,
        max_queue: int = 16384,
        batch_size: int = 512,
    ) -> None:
        self.resource = resource
        self.sampler = sampler
        default = ParentBased(ALWAYS_ON).get_description()  # type: ignore[no-untyped-call]  # unannotated in the SDK
        self.parent_or_always_on = sampler.get_description() == default
        self.service_json = compact_json(str(resource.attributes.get("service.name", "")))
        self.exporter = JsonLinesSpanExporter(path)
        self.processor = BatchSpanProcessor(
            self.exporter,
            max_queue_size=max_queue,
            schedule_delay_millis=schedule_delay * 1000,
            max_export_batch_size=max(1, min(batch_size, max_queue)),
        )
        self._on_end = self.processor.on_end
        self._stopped = False
        self._tracer = LightTracer(self)
        atexit.register(self.shutdown)

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        """One tracer serves every module (the scope is not written to the file)."""
        return self._tracer

    def finished(self, span: LightSpan) -> None:
        """Queue an ended span (called by ``LightSpan.end``)."""
        if not self._stopped:
            self._on_end(span)  # type: ignore[arg-type]  # a LightSpan has what the processor reads

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write every queued span now."""
        return self.processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Write what is queued, stop the processor's thread and close the file (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self.processor.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
