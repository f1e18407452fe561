"""A TCP proxy between two services that can cut a connection part-way (the network failing mid-stream).

``FaultProxy(upstream)`` listens on 127.0.0.1:<port> and forwards bytes both ways. With ``cut_after``
set, the first connection whose upstream-to-client bytes pass that count is closed abruptly (RST) on
both sides; later connections pass untouched. It runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream`` (host:port), optionally cutting one connection."""

    def __init__(self, upstream: str, cut_after: int = 0) -> None:
        self.upstream_host, _, port = upstream.rpartition(":")
        self.upstream_port = int(port)
        self.cut_after = cut_after
        self.cuts: list[int] = []  # downstream bytes at each cut
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-proxy")
        self._thread.start()
        self._ready.wait(10)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        armed = self.cut_after > 0 and not self.cuts
        down = 0
        cut = asyncio.Event()

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, downstream: bool) -> None:
            nonlocal down
            with contextlib.suppress(ConnectionError, OSError):
                while not cut.is_set() and (data := await reader.read(65536)):
                    if downstream:
                        down += len(data)
                        if armed and down > self.cut_after and not self.cuts:
                            self.cuts.append(down)
                            cut.set()
                            return
                    writer.write(data)
                    await writer.drain()

        tasks = [
            asyncio.ensure_future(pipe(client_reader, up_writer, False)),
            asyncio.ensure_future(pipe(up_reader, client_writer, True)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_writer, up_writer):
            if cut.is_set():
                sock = writer.get_extra_info("socket")
                if sock is not None:  # RST, not FIN: the peer sees the connection break, not end
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()

    def close(self) -> None:
        """Stop listening and the loop."""

        def stop() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
