"""Fixtures shared by every suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServiceProcess, serve


@pytest.fixture
def aiaas_home(tmp_path: Path) -> Path:
    """A fresh AIAAS_HOME for one test."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIAAS_HOME shared by session-scoped service processes."""
    return tmp_path_factory.mktemp("aiaas-home")


@pytest.fixture(scope="session")
def registry_process(session_home: Path) -> Iterator[ServiceProcess]:
    """A registry service process (SQLite + local blobs under a session AIAAS_HOME)."""
    yield from serve("registry", session_home / "registry")
