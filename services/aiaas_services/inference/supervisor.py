"""Worker processes on one port: ``workers`` = N inference processes behind one gRPC address.

One Python process tops out near one core of gRPC handling, so the supervisor (this module's
``supervise``) starts N copies of the inference service that all bind the same port with
``SO_REUSEPORT`` (the kernel spreads incoming *connections* over them, as gunicorn-style servers do).
Each worker has its own ONNX Runtime sessions, with intra-op threads divided by N.

The supervisor holds the port (a bound, never-listening SO_REUSEPORT socket, so port 0 works and no one
else takes it) and keeps one line of fleet state in ``<run>/fleet``; every worker answers grpc.health.v1
from it (``WorkerApp.serving_gate``), so health is SERVING only when all workers are:

- all workers started                         -> SERVING
- a worker that was serving crashes           -> restarted at once (logged); health stays SERVING
- a worker that cannot start (bad model ...)  -> NOT_SERVING with the reason in the log and the fleet
  file; the supervisor retries with backoff and, after ``START_ATTEMPTS`` failures in a row, stops
  everything and exits 1 with that reason (as a single process that cannot start does).
- SIGTERM/SIGINT                              -> forwarded to every worker, each drains as usual.

Workers share the data folder, so the registry watch and hot swap run in every worker while the model
cache (digest-named files, downloads under a cross-process lock) holds one verified copy of each artifact.
Metrics: one scrape port per worker (``metrics_port + index``; with 0 each worker picks one and logs it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiaas_services.inference.app import InferenceApp
from aiaas_services.inference.settings import InferenceSettings

logger = logging.getLogger(__name__)

FLEET_ENV = "AIAAS_INFERENCE_FLEET_FILE"
START_ATTEMPTS = 3
POLL_S = 0.1


# ---- how many workers -----------------------------------------------------------------------------------


def _cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` quota (None when unlimited or unknown)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def usable_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by the cgroup's CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, max(1, int(quota)))
    return max(1, cores)


def resolve_workers(value: str) -> int:
    """The ``workers`` setting as a number: a positive integer, or ``auto`` (= usable cores)."""
    text = value.strip().lower()
    if text == "auto":
        return usable_cores()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"workers must be a positive integer or 'auto', got {value!r}")
    return int(text)


def threads_per_worker(intra_op_threads: int, workers: int, cores: int) -> int:
    """ONNX Runtime intra-op threads each worker gets, so N workers together do not oversubscribe.

    ``intra_op_threads`` is the single-process figure (0 = ORT's default, all cores).
    """
    total = intra_op_threads if intra_op_threads > 0 else cores
    return max(1, total // workers)


# ---- the worker side ------------------------------------------------------------------------------------


class WorkerApp(InferenceApp):
    """The inference app in one worker: loads before it binds; its health follows the fleet state.

    A worker joining a port others already serve must not listen while it loads (the kernel would hand
    it connections it cannot answer yet), so ``worker_main`` calls ``preload`` before ``serve`` binds,
    and ``start`` then has nothing left to do.
    """

    def __init__(self, settings: InferenceSettings, fleet_file: Path) -> None:
        super().__init__(settings)
        self.fleet_file = fleet_file
        self.parent = os.getppid()
        if self.monitor is not None:  # drift scored over every worker's traffic (inference/drift_share.py)
            index = os.environ.get("AIAAS_INFERENCE_WORKER_INDEX", str(os.getpid()))
            self.monitor.share_with_workers(fleet_file.parent / "drift", index, settings.monitoring_interval_seconds)
        self._preloaded = False
        self._follow: asyncio.Task[None] | None = None

    async def preload(self) -> None:
        """Load the models (what ``start`` does), before the server exists."""
        await super().start()
        self._preloaded = True

    async def start(self) -> None:
        if not self._preloaded:
            await super().start()

    def fleet_serving(self) -> bool:
        """What the supervisor says: SERVING only when every worker is."""
        try:
            return self.fleet_file.read_text().startswith("SERVING")
        except OSError:
            return False

    async def serving_gate(self, set_serving: Callable[[bool], Awaitable[None]]) -> None:
        """Set health from the fleet state now, then keep it in step in the background until ``close``."""
        current = self.fleet_serving()
        await set_serving(current)
        self._follow = asyncio.create_task(self._follow_fleet(set_serving, current))

    async def _follow_fleet(self, set_serving: Callable[[bool], Awaitable[None]], current: bool) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            if os.getppid() != self.parent:
                logger.warning("supervisor %d is gone; worker %d stopping", self.parent, os.getpid())
                os.kill(os.getpid(), signal.SIGTERM)
                return
            serving = self.fleet_serving()
            if serving != current:
                await set_serving(serving)  # ignored once the server is draining
                current = serving

    async def close(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
        await super().close()


def worker_main(argv: Sequence[str] | None = None) -> None:
    """Body of one worker process (started by the supervisor with ``FLEET_ENV`` set)."""
    from aiaas_services.runtime.logs import configure_logging
    from aiaas_services.runtime.server import serve
    from aiaas_services.runtime.settings import load_settings

    settings = load_settings(InferenceSettings, sys.argv[1:] if argv is None else argv)
    # "inference/w1": the workers write to the supervisor's output, so each line says which one it is.
    worker = os.environ.get("AIAAS_INFERENCE_WORKER_INDEX", "?")
    configure_logging(f"{settings.service_name}/w{worker}", settings.log_level, settings.log_json)
    error_file = Path(settings.port_file + ".error") if settings.port_file else None

    async def main() -> None:
        app = WorkerApp(settings, Path(os.environ[FLEET_ENV]))
        await app.preload()
        await serve(settings, app)

    try:
        asyncio.run(main())
    except BaseException as exc:
        if error_file is not None and not isinstance(exc, KeyboardInterrupt):
            error_file.write_text(f"{type(exc).__name__}: {exc}"[:2000])
        raise


# ---- the supervisor -------------------------------------------------------------------------------------


@dataclass
class Worker:
    """One worker slot: its current process and what the supervisor knows of it."""

    index: int
    port_file: Path
    process: subprocess.Popen[bytes] | None = None
    started: bool = False  # this process reported its port (models loaded, serving)
    served: bool = False  # some process in this slot has served before
    failures: int = 0  # start failures in a row
    reason: str = ""  # why the last start failed
    retry_at: float = 0.0

    @property
    def error_file(self) -> Path:
        return Path(str(self.port_file) + ".error")


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket: fixes the port the workers share, takes no connections."""
    family, kind, proto, _, address = socket.getaddrinfo(host or "0.0.0.0", port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class Supervisor:
    """Starts, watches and stops the workers (plain processes; the loop below is all it runs)."""

    def __init__(self, settings: InferenceSettings, argv: Sequence[str], workers: int) -> None:
        self.settings = settings
        self.argv = list(argv)
        self.count = workers
        self.threads = threads_per_worker(settings.intra_op_threads, workers, usable_cores())
        self.run_dir = Path(tempfile.mkdtemp(prefix="inference-workers-", dir=self._run_root()))
        self.fleet_file = self.run_dir / "fleet"
        self.workers = [Worker(i, self.run_dir / f"worker-{i}.port") for i in range(workers)]
        self.stopping = False
        self.fleet = ""
        self.port = 0
        self.http_port = -1  # the REST front door's, when the settings have one and it is on

    def _run_root(self) -> Path:
        root = self.settings.home_path / "run"
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _command(self, worker: Worker) -> list[str]:
        metrics = self.settings.metrics_port
        return [
            sys.executable,
            "-m",
            "aiaas_services.inference.supervisor",
            *self.argv,
            # Later flags win: these override whatever the supervisor itself was given.
            *("--port", str(self.port), "--port-file", str(worker.port_file), "--workers", "1"),
            *("--reuse-port", "true", "--intra-op-threads", str(self.threads)),
            *("--metrics-port", str(metrics + worker.index if metrics > 0 else metrics)),
            *(("--http-port", str(self.http_port)) if self.http_port >= 0 else ()),
        ]

    def _spawn(self, worker: Worker) -> None:
        for path in (worker.port_file, worker.error_file):
            path.unlink(missing_ok=True)
        env = {**os.environ, FLEET_ENV: str(self.fleet_file), "AIAAS_INFERENCE_WORKER_INDEX": str(worker.index)}
        worker.process = subprocess.Popen(self._command(worker), env=env)
        worker.started = False
        logger.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _set_fleet(self, state: str) -> None:
        if state == self.fleet:
            return
        tmp = self.fleet_file.with_suffix(".tmp")
        tmp.write_text(state + "\n")
        os.replace(tmp, self.fleet_file)
        self.fleet = state
        log = logger.info if state.startswith("SERVING") else logger.warning
        log("inference (%d workers on port %d): %s", self.count, self.port, state)

    def _check(self, worker: Worker) -> str:
        """Advance one worker's state; returns a reason when it keeps the fleet from serving."""
        process = worker.process
        if process is None:  # waiting out the backoff before another start
            if time.monotonic() >= worker.retry_at:
                self._spawn(worker)
            return f"worker {worker.index} restarting"
        code = process.poll()
        if code is None:
            if not worker.started and worker.port_file.exists():
                worker.started = worker.served = True
                worker.failures = 0
                logger.info("worker %d serving (pid %d)", worker.index, process.pid)
            return "" if worker.started or worker.served else f"worker {worker.index} starting"
        if worker.started:
            # A crash after serving: the others keep serving while this one comes back.
            logger.error("worker %d (pid %d) exited with code %s; restarting it", worker.index, process.pid, code)
            self._spawn(worker)
            return ""
        reason = worker.error_file.read_text() if worker.error_file.exists() else f"exit code {code}"
        worker.reason = reason
        worker.failures += 1
        worker.process = None
        worker.retry_at = time.monotonic() + min(8.0, 0.5 * 2**worker.failures)
        logger.error("worker %d cannot start (attempt %d): %s", worker.index, worker.failures, reason)
        return f"worker {worker.index} cannot start: {reason}"

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        holder = reserve_port(self.settings.host, self.settings.port)
        self.port = holder.getsockname()[1]
        http_holder = None
        wanted_http = int(getattr(self.settings, "http_port", -1))
        if wanted_http >= 0:  # the REST front door shares its port the same way
            http_holder = reserve_port(self.settings.host, wanted_http)
            self.http_port = http_holder.getsockname()[1]
        if self.settings.port_file:
            Path(self.settings.port_file).unlink(missing_ok=True)  # written again once every worker serves
        self._set_fleet("NOT_SERVING starting")
        logger.info("inference: %d workers on %s:%d, %d intra-op threads each, run dir %s",
                    self.count, self.settings.host, self.port, self.threads, self.run_dir)  # fmt: skip
        for worker in self.workers:
            self._spawn(worker)
        code = 0
        try:
            while not self.stopping:
                reasons = [reason for reason in map(self._check, self.workers) if reason]
                failed = [w for w in self.workers if w.failures >= START_ATTEMPTS]
                if failed:
                    reason = f"worker {failed[0].index} cannot start: {failed[0].reason}"
                    logger.error("inference cannot start: %s", reason)
                    self._set_fleet(f"NOT_SERVING {reason}")
                    code = 1
                    break
                self._set_fleet("NOT_SERVING " + "; ".join(reasons) if reasons else "SERVING")
                if not reasons and self.settings.port_file and not Path(self.settings.port_file).exists():
                    if self.http_port >= 0:
                        _write_port_file(Path(self.settings.port_file + ".http"), self.http_port)
                    _write_port_file(Path(self.settings.port_file), self.port)
                time.sleep(POLL_S)
        finally:
            self._stop_all()
            holder.close()
            if http_holder is not None:
                http_holder.close()
        return code

    def _stop_all(self) -> None:
        """SIGTERM every worker (each drains) and wait; SIGKILL what outlives the grace period."""
        self._set_fleet("NOT_SERVING draining")
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_delay_seconds + self.settings.grace_seconds + 15
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait(5)
        logger.info("inference workers stopped")


def _write_port_file(path: Path, port: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, path)


def supervise(settings: InferenceSettings, argv: Sequence[str], workers: int) -> int:
    """Run ``workers`` inference processes on one port until SIGTERM/SIGINT (see the module docstring)."""
    from aiaas_services.runtime.logs import configure_logging

    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    return Supervisor(settings, argv, workers).run()


if __name__ == "__main__":
    worker_main()
