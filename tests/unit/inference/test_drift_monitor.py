"""The drift window, sampling and the Prometheus gauges, in process (no server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from aiaas_services.inference.monitor import Window, new_monitor
from aiaas_services.monitoring.drift import psi, reference_stats, shares


def test_window_wraps_and_keeps_the_newest_rows() -> None:
    window = Window(capacity=5, features=2)
    window.add(np.arange(6, dtype=np.float32).reshape(3, 2), np.array([0, 1, 2]))
    window.add(np.arange(6, 14, dtype=np.float32).reshape(4, 2), np.array([3, 4, 5, 6]))
    x, predicted = window.view()
    assert window.rows == 5
    assert sorted(x[:, 0].tolist()) == [4, 6, 8, 10, 12] and sorted(predicted.tolist()) == [2, 3, 4, 5, 6]
    window.add(np.zeros((9, 2), dtype=np.float32), None)  # more than the window: only the last 5 count
    assert window.view()[0].sum() == 0


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5000, 1))
    stats = reference_stats(data, None, 0)
    edges = np.asarray(stats["features"][0]["edges"])
    assert psi(stats["features"][0]["shares"], shares(rng.normal(size=5000), edges)) < 0.02
    assert psi(stats["features"][0]["shares"], shares(rng.normal(1.0, size=5000), edges)) > 0.5


def test_monitor_samples_scores_and_exports_gauges(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    reference = reference_stats(rng.normal(size=(2000, 3)), rng.integers(0, 4, 2000), 4)

    async def load(model: Any) -> tuple[dict[str, Any], str]:
        return reference, "test"

    async def scenario() -> None:
        monitor = new_monitor(load, sample_every=2, capacity=400)
        model: Any = SimpleNamespace(name="gauged", version="7")
        for _ in range(400):
            x = rng.normal(3.0, size=(2, 3)).astype(np.float32)
            monitor.observe(model, {"input": x}, [rng.normal(size=(2, 4))])
        await asyncio.sleep(0)  # the reference loads
        tracked = monitor.find("gauged")
        assert tracked.window.rows == 400  # 200 sampled requests of 2 rows
        monitor.start(0.01)
        await asyncio.sleep(0.2)
        await monitor.close()
        assert tracked.last is not None and tracked.last.drifted and len(tracked.history) > 0

    asyncio.run(scenario())
    labels = {"model": "gauged", "version": "7"}
    assert REGISTRY.get_sample_value("aiaas_drift_max_psi", labels) == pytest.approx(
        max(REGISTRY.get_sample_value("aiaas_drift_feature_psi", {**labels, "feature": str(i)}) or 0 for i in range(3))
    )
    assert (REGISTRY.get_sample_value("aiaas_drift_max_psi", labels) or 0) > 0.2
    assert REGISTRY.get_sample_value("aiaas_drift_window_rows", labels) == 400
    assert REGISTRY.get_sample_value("aiaas_drift_prediction_psi", labels) is not None
