"""A labelled text table (CSV with a ``text,label`` header, or JSONL of ``{"text": ..., "label": ...}``).

Parsed strictly: UTF-8, both columns present, no empty labels, at least two classes with two rows each;
every problem names the row. Labels are kept as names (sorted), so the classifier answers them as text.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import math

import numpy as np

MAX_ROWS = 200_000
MAX_TABLE_BYTES = 64 * 2**20
MAX_TEXT_CHARS = 20_000


class TableError(ValueError):
    """Why the table cannot be trained on (names the row)."""


@dataclasses.dataclass(frozen=True)
class TextTable:
    """Strings, integer labels and the label names (index = label id)."""

    texts: list[str]
    labels: np.ndarray
    label_names: tuple[str, ...]


def parse_table(payload: bytes, name: str = "data.csv") -> TextTable:
    """Parse CSV (``.csv``) or JSONL (``.jsonl``/``.json``) bytes into a TextTable."""
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TableError(f"{name} is not UTF-8 text (byte {exc.start})") from exc
    rows = _jsonl(text, name) if name.endswith((".jsonl", ".json")) else _csv(text, name)
    if not rows:
        raise TableError(f"{name} has no rows")
    if len(rows) > MAX_ROWS:
        raise TableError(f"{name} has {len(rows)} rows; at most {MAX_ROWS} are taken")
    names = tuple(sorted({label for _, label in rows}))
    counts = dict(sorted(collections.Counter(label for _, label in rows).items()))
    if len(names) < 2 or min(counts.values()) < 2:
        raise TableError(f"{name} needs at least two labels with two rows each, got {counts}")
    index = {n: i for i, n in enumerate(names)}
    return TextTable([t for t, _ in rows], np.array([index[label] for _, label in rows], np.int64), names)


def _check(row: int, text: object, label: object, name: str) -> tuple[str, str]:
    if not isinstance(text, str) or not text.strip() or label is None or str(label).strip() == "":
        raise TableError(f"{name} row {row}: needs a non-empty text string and a non-empty label")
    if len(text) > MAX_TEXT_CHARS:
        raise TableError(f"{name} row {row}: text is over {MAX_TEXT_CHARS} characters")
    return text, str(label).strip()


def _csv(text: str, name: str) -> list[tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "text" not in reader.fieldnames or "label" not in reader.fieldnames:
        raise TableError(f"{name}: the CSV header must have the columns text and label, got {reader.fieldnames}")
    rows = []
    for i, row in enumerate(reader, start=2):
        if None in row:
            raise TableError(f"{name} row {i}: more fields than the header has (quote texts that hold commas)")
        rows.append(_check(i, row.get("text"), row.get("label"), name))
    return rows


def _jsonl(text: str, name: str) -> list[tuple[str, str]]:
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TableError(f"{name} line {i}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise TableError(f"{name} line {i}: each line must be an object with text and label")
        rows.append(_check(i, item.get("text"), item.get("label"), name))
    return rows


def check_split(rows: int, classes: int, fraction: float) -> None:
    """A stratified split needs a row of every label on both sides; TableError says how many rows are missing."""
    held_out = math.ceil(rows * fraction)
    if held_out < classes or rows - held_out < classes:
        raise TableError(
            f"{rows} rows with {classes} labels cannot be split {1 - fraction:.0%}/{fraction:.0%} with every label "
            "on both sides; add rows"
        )
