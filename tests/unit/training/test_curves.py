"""The training-curves PNG: any history a job can produce draws, including the awkward ones."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from aiaas_services.training.curves import HEIGHT, WIDTH, _ticks, plot_curves


def _history(epochs: int, metric: str = "accuracy") -> list[dict[str, Any]]:
    return [
        {"epoch": e, "train": {"loss": 1 / e}, "validation": {"loss": 1.2 / e, metric: 1 - 1 / (e + 1)}}
        for e in range(1, epochs + 1)
    ]


@pytest.mark.parametrize(
    "history",
    [
        [],
        _history(1),
        _history(30),
        _history(200, metric="r2"),
        [{"epoch": 1, "train": {"loss": math.nan}, "validation": {"loss": math.inf, "elbo": -3.0}}],
        [{"epoch": e, "train": {"loss": 0.5}, "validation": {"loss": 0.5}} for e in (1, 2, 3)],  # flat
    ],
    ids=["empty", "one-epoch", "classification", "regression", "non-finite", "flat"],
)
def test_every_history_draws_a_png_of_the_chart_size(tmp_path: Path, history: list[dict[str, Any]]) -> None:
    path = tmp_path / "curves.png"
    plot_curves(history, path, "model (mlp)")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (WIDTH, HEIGHT)
        assert len(image.getcolors(maxcolors=100_000) or []) > 2  # something was drawn on the white


def test_lines_are_drawn_in_their_colours(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    plot_curves(_history(10), path, "t")
    with Image.open(path) as image:
        colours = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=100_000) or []}
    assert {(31, 119, 180), (255, 127, 14), (44, 160, 44)} <= colours


@pytest.mark.parametrize(("low", "high", "integers"), [(0.0, 1.0, False), (-3.2, 17.5, False), (1, 200, True)])
def test_ticks_are_round_and_inside_the_range(low: float, high: float, integers: bool) -> None:
    ticks = _ticks(low, high, integers=integers)
    assert 2 <= len(ticks) <= 10
    assert all(low - 1e-9 <= t <= high + 1e-9 for t in ticks)
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    if integers:
        assert all(float(t).is_integer() for t in ticks)
