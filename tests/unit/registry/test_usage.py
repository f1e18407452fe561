"""Usage metering: the inference meter's bookkeeping and the registry's per-hour sums (SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from aiaas_services.inference.usage import UsageMeter, new_meter
from aiaas_services.registry import db, usage
from aiaas_services.runtime.errors import InvalidArgument

HOUR = 1_800_000_000 - 1_800_000_000 % 3600


def test_meter_counts_takes_and_puts_back_without_double_counting() -> None:
    meter = UsageMeter()
    meter.add("acme", "digits", 4, 1_000)
    meter.add("acme", "digits", 2, 3_000)
    taken = meter.take()
    assert taken == {("acme", "digits"): [2, 6, 4_000]} and meter.pending == {}
    meter.put_back(taken)  # the registry was away
    meter.add("acme", "digits", 1, 1_000)
    assert meter.take() == {("acme", "digits"): [3, 7, 5_000]}
    assert meter.totals == {("acme", "digits"): [3, 7, 5_000]}


def test_prometheus_exports_totals_and_pending() -> None:
    meter = new_meter()
    meter.add("prom-user", "prom-model", 3, 2_000_000_000)
    meter.take()
    meter.add("prom-user", "prom-model", 1, 0)
    labels = {"principal": "prom-user", "model": "prom-model"}
    assert REGISTRY.get_sample_value("aiaas_usage_requests_total", labels) == 2
    assert REGISTRY.get_sample_value("aiaas_usage_rows_total", labels) == 4
    assert REGISTRY.get_sample_value("aiaas_usage_compute_seconds_total", labels) == pytest.approx(2.0)


def test_registry_sums_per_hour_and_reports_totals(tmp_path: Path) -> None:
    engine = db.create_db_engine(db.sqlite_url(tmp_path / "r.db"))
    db.migrate(engine)
    count = usage.UsageCount
    usage.record(
        engine, [count("acme", "digits", 2, 8, 0.5, HOUR + 10), count("acme", "digits", 1, 4, 0.25, HOUR + 20)]
    )
    usage.record(engine, [count("acme", "digits", 1, 1, 0.25, HOUR + 3700), count("globex", "other", 5, 5, 1.0, HOUR)])
    totals = usage.totals(engine)
    assert [(t.principal, t.model, t.requests, t.rows, t.compute_seconds, t.period_start) for t in totals] == [
        ("acme", "digits", 4, 13, 1.0, HOUR),
        ("globex", "other", 5, 5, 1.0, HOUR),
    ]
    later = usage.totals(engine, principal="acme", since=datetime.fromtimestamp(HOUR + 3601, UTC))
    assert [(t.requests, t.period_start) for t in later] == [(1, HOUR + 3600)]
    assert usage.totals(engine, model="nothing") == []
    engine.dispose()


@pytest.mark.parametrize(
    "entry",
    [
        usage.UsageCount("", "m", 1, 1, 0.0, HOUR),
        usage.UsageCount("p", "m", -1, 1, 0.0, HOUR),
        usage.UsageCount("p", "m", 1, 1, float("nan"), HOUR),
        usage.UsageCount("p", "x" * 129, 1, 1, 0.0, HOUR),
        usage.UsageCount("p\n", "m", 1, 1, 0.0, HOUR),
    ],
)
def test_impossible_counts_are_refused(entry: usage.UsageCount) -> None:
    with pytest.raises(InvalidArgument):
        usage.check_entries([entry])
