"""Settings: one frozen dataclass per service, read from environment variables, overridden by flags.

Each field's env var is ``<PREFIX><FIELD_NAME_UPPER>`` (e.g. ``AIAAS_REGISTRY_PORT``) and its flag is
``--field-name``. Fields shared by every service (``ServiceSettings``) also fall back to the unprefixed
``AIAAS_<FIELD>`` variable, so one ``AIAAS_HOME`` or ``AIAAS_LOG_LEVEL`` configures the whole suite.
Settings are built once in ``main()`` and passed in, never read at import time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="ServiceSettings")


def default_home() -> Path:
    """Where data lives when AIAAS_HOME is not set: ``~/.aiaas``."""
    return Path.home() / ".aiaas"


def setting(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    """A dataclass field with a one-line help text for --help and the README's table."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: default, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """Settings every service shares."""

    env_prefix: typing.ClassVar[str] = "AIAAS_"
    service_name: typing.ClassVar[str] = "aiaas"

    host: str = setting("127.0.0.1", "Address to listen on (0.0.0.0 for all interfaces).")
    port: int = setting(0, "Port to listen on; 0 picks a free one (see port_file).")
    port_file: str = setting("", "Write the bound port to this file once serving (for tests and scripts).")
    home: str = setting(str(default_home()), "Data directory (database, blobs, logs, traces).")
    grace_seconds: float = setting(10.0, "Seconds in-flight RPCs get to finish on SIGTERM.")
    drain_delay_seconds: float = setting(
        0.5, "On SIGTERM, seconds to keep serving after health turns NOT_SERVING, so balancers stop sending."
    )
    max_message_bytes: int = setting(64 * 1024 * 1024, "Largest gRPC message accepted or sent.")
    log_level: str = setting("INFO", "Log level: DEBUG, INFO, WARNING, ERROR.")
    log_json: bool = setting(False, "Log one JSON object per line instead of text.")
    tls_cert: str = setting("", "PEM certificate chain; with tls_key enables TLS.")
    tls_key: str = setting("", "PEM private key for tls_cert.")
    tls_client_ca: str = setting("", "PEM CA bundle; when set, clients must present a certificate (mTLS).")
    trace_dir: str = setting("", "Folder for the JSON-lines span files (<service>.jsonl); default <home>/traces.")
    metrics_port: int = setting(-1, "Prometheus /metrics HTTP port; -1 off, 0 picks a free one (see port_file).")
    auth_tokens_file: str = setting("", "JSON file of bearer tokens and scopes; empty = no authentication.")
    service_token: str = setting(
        "", "Bearer token this service presents when it calls the others (when they use auth)."
    )
    audit_log: bool = setting(
        True, "Append every write RPC (who, what, when, outcome) to <home>/audit/<service>.jsonl."
    )

    @property
    def home_path(self) -> Path:
        """The data directory as a Path (created on demand by whoever writes there)."""
        return Path(self.home).expanduser()


def _field_type(cls: type, field: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[field.name]


def _convert(raw: str, kind: Any, name: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = args[0]
        origin = typing.get_origin(kind)
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{name}: expected true/false, got {raw!r}")
    if origin in (list, tuple) or kind in (list, tuple):
        item = (typing.get_args(kind) or (str,))[0]
        return [_convert(part.strip(), item, name) for part in raw.split(",") if part.strip()]
    try:
        return kind(raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot read {raw!r} as {getattr(kind, '__name__', kind)}") from exc


def load_settings(cls: type[T], argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from defaults, then environment variables, then command-line flags."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    # Ports are per service: an unprefixed AIAAS_PORT would give all four the same one.
    shared = {f.name for f in dataclasses.fields(ServiceSettings)} - {"port", "port_file"}
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        for var in (cls.env_prefix + field.name.upper(), "AIAAS_" + field.name.upper()):
            if var == "AIAAS_" + field.name.upper() and field.name not in shared:
                continue
            if var in env:
                values[field.name] = _convert(env[var], kind, var)
                break

    parser = argparse.ArgumentParser(prog=f"aiaas-{cls.service_name}", description=cls.__doc__)
    for field in dataclasses.fields(cls):
        kind = _field_type(cls, field)
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} [env {cls.env_prefix}{field.name.upper()}]"
        parser.add_argument(flag, dest=field.name, default=None, type=str, help=help_text)
    args = parser.parse_args(list(argv) if argv is not None else None)
    for field in dataclasses.fields(cls):
        raw = getattr(args, field.name)
        if raw is not None:
            try:
                values[field.name] = _convert(raw, _field_type(cls, field), "--" + field.name)
            except ValueError as exc:
                parser.error(str(exc))
    return cls(**values)


def settings_table(cls: type[ServiceSettings]) -> list[tuple[str, str, str]]:
    """(env var, default, help) rows, for documentation."""
    rows = []
    for field in dataclasses.fields(cls):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[operator]
        rows.append((cls.env_prefix + field.name.upper(), repr(default), field.metadata.get("help", "")))
    return rows
