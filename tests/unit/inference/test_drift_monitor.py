"""The drift window, sampling and the Prometheus gauges, in process (no server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from aiaas_services.inference.monitor import DriftMonitor, Window, new_monitor
from aiaas_services.monitoring.drift import (
    Reference,
    psi,
    reference_stats,
    shares,
    text_features,
    text_reference_stats,
)


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
        assert monitor.tracked == {}  # the hot path only kept copies
        await monitor.refresh()  # folded into the window off the hot path
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


def test_bin_counts_add_up_to_the_per_feature_shares() -> None:
    rng = np.random.default_rng(2)
    reference = Reference(reference_stats(rng.normal(size=(500, 4)), None, 0))
    window = rng.normal(0.5, size=(300, 4))
    counts = reference.bin_counts(window)
    assert counts.shape == (4, reference.bins) and (counts.sum(axis=1) == 300).all()
    for j in range(4):
        edges = reference.edges[j]
        assert counts[j, : len(edges) + 1] / 300 == pytest.approx(shares(window[:, j], edges))
        assert reference.feature_psi(window)[j] == pytest.approx(psi(reference.shares[j], shares(window[:, j], edges)))


def test_workers_score_their_windows_together(tmp_path: Path) -> None:
    """Two monitors (two workers) publishing into one folder: each scores both windows, exactly as one
    monitor that saw every row would."""
    rng = np.random.default_rng(3)
    reference = reference_stats(rng.normal(size=(2000, 3)), rng.integers(0, 4, 2000), 4)

    async def load(model: Any) -> tuple[dict[str, Any], str]:
        return reference, "test"

    rows = rng.normal(0.4, size=(300, 3)).astype(np.float32)
    logits = rng.normal(size=(300, 4))

    async def scenario() -> None:
        model: Any = SimpleNamespace(name="shared", version="1")
        workers = [DriftMonitor(load, sample_every=1, capacity=400) for _ in range(2)]
        alone = DriftMonitor(load, sample_every=1, capacity=400)
        for index, monitor in enumerate(workers):
            monitor.share_with_workers(tmp_path / "drift", str(index), 1.0)
        for start in range(0, 300, 10):
            workers[start // 10 % 2].observe(model, {"input": rows[start : start + 10]}, [logits[start : start + 10]])
            alone.observe(model, {"input": rows[start : start + 10]}, [logits[start : start + 10]])
        for monitor in (*workers, alone):
            await monitor.refresh()
        await asyncio.sleep(0)  # the references load
        for monitor in (*workers, *workers):  # publish, then read the other's
            monitor.tick()
        expected = alone.score(alone.find("shared"))
        assert expected is not None
        for monitor in workers:
            scores = monitor.score(monitor.find("shared"))
            assert scores is not None and scores.rows == 300 and scores.windows == 2
            assert scores.features == pytest.approx(expected.features)
            assert scores.prediction == pytest.approx(expected.prediction)
        # A third worker that has served none of this traffic learns of it from the others' files.
        third = DriftMonitor(load, sample_every=1, capacity=400)
        third.share_with_workers(tmp_path / "drift", "2", 1.0)
        third.tick()
        third._adopt_peers()
        adopted = third.score(third.find("shared"))
        assert adopted is not None and adopted.rows == 300 and adopted.features == pytest.approx(expected.features)

    asyncio.run(scenario())


def test_string_inputs_keep_the_prediction_distribution() -> None:
    """A text model's strings have no histograms; its predicted classes are still compared."""
    reference = reference_stats(np.zeros((100, 0)), np.array([0] * 50 + [1] * 50), 2)

    async def load(model: Any) -> tuple[dict[str, Any], str]:
        return reference, "test"

    async def scenario() -> None:
        monitor = DriftMonitor(load, sample_every=1, capacity=200)
        model: Any = SimpleNamespace(name="text", version="1")
        texts = np.array(["a review"] * 200, dtype=object)
        monitor.observe(model, {"text": texts}, [np.tile([[0.1, 0.9]], (200, 1))])  # all class 1
        await monitor.refresh()
        await asyncio.sleep(0)
        scores = monitor.score(monitor.find("text"))
        assert scores is not None and scores.features == [] and scores.rows == 200
        assert scores.prediction is not None and scores.prediction > 0.2 and scores.drifted

    asyncio.run(scenario())


def test_text_lengths_are_features_of_a_text_reference() -> None:
    """A text reference (``text_reference_stats``) bins the lengths of the texts: the same mix of lengths
    scores low, texts three times as long score high, on both features, named."""
    rng = np.random.default_rng(5)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]

    def texts(count: int, repeat: int = 1) -> list[str]:
        return [" ".join(rng.choice(words, size=rng.integers(3, 9)).tolist() * repeat) for _ in range(count)]

    assert text_features([b"caf\xc3\xa9 au lait", "two  words"]).tolist() == [[12, 3], [10, 2]]
    reference = text_reference_stats(texts(500), np.zeros(500, np.int64), 2)

    async def load(model: Any) -> tuple[dict[str, Any], str]:
        return reference, "test"

    async def scenario() -> tuple[list[float], list[float]]:
        scored = []
        for repeat in (1, 3):
            monitor = DriftMonitor(load, sample_every=1, capacity=300)
            model: Any = SimpleNamespace(name="text", version="1")
            live = np.array(texts(300, repeat), dtype=object)
            monitor.observe(model, {"text": live}, [np.tile([[0.9, 0.1]], (300, 1))])
            await monitor.refresh()
            await asyncio.sleep(0)
            scores = monitor.score(monitor.find("text"))
            assert scores is not None and scores.rows == 300 and scores.prediction == pytest.approx(0.0, abs=1e-3)
            scored.append(scores.features)
        return scored[0], scored[1]

    calm, long = asyncio.run(scenario())
    assert Reference(reference).feature_names == ["characters", "words"]
    assert max(calm) < 0.2 and min(long) > 0.2, (calm, long)
