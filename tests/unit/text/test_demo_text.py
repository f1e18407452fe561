"""`make run`'s text leg without services: its embedded table trains (the training service's own parser
and split accept it) and `make run TEXT=0` skips the leg."""

from __future__ import annotations

import subprocess
from pathlib import Path

from aiaas_services import demo_text
from aiaas_services.training.text.data import parse_table
from aiaas_services.training.text.finetune import split

ROOT = Path(__file__).resolve().parents[3]


def test_embedded_table_is_balanced_and_parses() -> None:
    table = parse_table(demo_text.table_csv(), "data.csv")
    assert table.label_names == ("cooking", "sports", "technology")
    assert [int((table.labels == i).sum()) for i in range(3)] == [demo_text.ROWS_PER_TOPIC] * 3
    assert len(set(table.texts)) == len(table.texts)  # no duplicate rows to leak into the held-out split
    train, test = split(table, 0.2, 7)
    assert len(test) == 12 and not set(train) & set(test)


def test_text_leg_runs_unless_switched_off() -> None:
    assert demo_text.wanted({}) and demo_text.wanted({"AIAAS_RUN_TEXT": "1"})
    assert not demo_text.wanted({"AIAAS_RUN_TEXT": "0"})
    dry = subprocess.run(["make", "-n", "run", "TEXT=0"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "AIAAS_RUN_TEXT=0 " in dry.stdout, dry.stdout
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "AIAAS_RUN_TEXT=1 " in dry.stdout, dry.stdout
