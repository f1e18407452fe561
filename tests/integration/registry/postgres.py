"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, served on a private unix socket.

initdb refuses to run as root, so as root the cluster is created and run as ``nobody`` in a folder that
user owns. Binaries come from PATH or Debian's /usr/lib/postgresql/<ver>/bin.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


@dataclass
class PostgresCluster:
    """A running cluster; ``url(db)`` gives a SQLAlchemy URL for one of its databases."""

    root: Path
    bin_dir: Path
    as_user: str | None

    @property
    def socket_dir(self) -> Path:
        return self.root

    def _run(self, args: Sequence[str]) -> None:
        prefix = ["runuser", "-u", self.as_user, "--"] if self.as_user else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        data = self.root / "data"
        self._run(
            [str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]
        )
        options = f"-k {self.root} -c listen_addresses= -c fsync=off -c full_page_writes=off -c max_connections=200"
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.root / "log"), "-w", "start"]
        )

    def stop(self) -> None:
        try:
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.root}"


def start_cluster() -> PostgresCluster:
    """initdb + start a cluster (as ``nobody`` when running as root)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found; run .ci/install-system.sh")
    root = Path(tempfile.mkdtemp(prefix="aiaas-pg-"))  # short path: unix socket names are limited
    as_user = None
    if os.geteuid() == 0:
        as_user = "nobody"
        shutil.chown(root, user="nobody")
    cluster = PostgresCluster(root, bin_dir, as_user)
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


def create_database(server_url: str) -> str:
    """Create a fresh database on the server ``server_url`` points at; return its SQLAlchemy URL."""
    import sqlalchemy as sa

    name = f"aiaas_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(
        server_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = engine.url.set(database=name).render_as_string(hide_password=False)
    engine.dispose()
    return url
