"""Runs the REST app under uvicorn inside the service's own event loop, on its own port.

We bind the socket ourselves (so a taken port is a clear start-up error, and port 0 reports the port it
got) and leave signals to the runtime: uvicorn's own handlers would race the gRPC server's ordered
shutdown. TLS uses the service's certificate settings (mutual TLS when a client CA is set). A request the
HTTP parser itself refuses (a control character in a header, broken framing) is answered 400 in JSON, as
every other refusal is, not with uvicorn's plain-text line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from aiaas_services.runtime.settings import ServiceSettings

logger = logging.getLogger(__name__)


_UNPARSEABLE = orjson.dumps(
    {
        "error": "the request is not valid HTTP/1.1 (its request line, a header name or value, or its framing; "
        "for example a control character in a header value); fix the client"
    }
)


class _JsonErrorsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering a request it cannot parse with a JSON error."""

    def send_400_response(self, msg: str) -> None:
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(_UNPARSEABLE)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            _UNPARSEABLE,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling (the runtime owns SIGTERM/SIGINT)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on host:port (0 = a free port); OSError says which address was refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP, and with
    # Nagle on, a response's second write waits for the client's delayed ACK (~40 ms per keep-alive request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # workers of one server share the port (inference/supervisor.py)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen for HTTP on {host}:{port}: {exc.strerror}; set --http-port") from None
    sock.set_inheritable(False)
    return sock


class HttpServer:
    """One uvicorn server for ``app`` on ``host:port``; ``start`` returns the bound port."""

    def __init__(self, app: Any, settings: ServiceSettings, port: int) -> None:
        self.app = app
        self.settings = settings
        self.port = port
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    def _config(self) -> uvicorn.Config:
        s = self.settings
        extra: dict[str, Any] = {}
        if s.tls_cert:
            extra = {"ssl_certfile": s.tls_cert, "ssl_keyfile": s.tls_key}
            if s.tls_client_ca:
                extra |= {"ssl_ca_certs": s.tls_client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            http=_JsonErrorsProtocol,
            server_header=False,
            timeout_graceful_shutdown=max(1, int(s.grace_seconds)),
            timeout_keep_alive=30,
            **extra,
        )

    async def start(self) -> int:
        """Bind, start serving, and return the port."""
        sock = bind(self.settings.host, self.port, bool(getattr(self.settings, "reuse_port", False)))
        bound = int(sock.getsockname()[1])
        self._server = _EmbeddedServer(self._config())
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        scheme = "https" if self.settings.tls_cert else "http"
        logger.info("REST (KServe V2) on %s://%s:%d/v2", scheme, self.settings.host, bound)
        if self.settings.port_file:
            target = Path(self.settings.port_file + ".http")
            tmp = target.with_suffix(".tmp-http")
            tmp.write_text(str(bound))
            os.replace(tmp, target)
        return bound

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the grace period), close connections."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._server = None
        self._task = None
