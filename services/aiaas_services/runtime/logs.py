"""Logging configured once in main(): text or JSON lines, with request context from contextvars."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
model_name: contextvars.ContextVar[str] = contextvars.ContextVar("model_name", default="")
model_version: contextvars.ContextVar[str] = contextvars.ContextVar("model_version", default="")


class _ContextFilter(logging.Filter):
    """Copies the request context onto every record so formatters can print it."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = request_id.get()
        record.model = model_name.get()
        record.model_version = model_version.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; easy to ship to a log store."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": getattr(record, "service", ""),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "model", "model_version", "trace_id"):
            value = getattr(record, key, "")
            if value:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class TextFormatter(logging.Formatter):
    """Readable single lines; context fields only when set."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(service)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "model", "model_version")
            if getattr(record, key, "")
        ]
        return line + (" [" + " ".join(extras) + "]" if extras else "")


def configure_logging(service: str, level: str = "INFO", as_json: bool = False) -> None:
    """Send logs to stderr in the chosen format. Call once, from main()."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
