"""The PNG of training curves registered beside the checkpoint, drawn with Pillow's ImageDraw.

Not matplotlib: two panels of lines with a few labelled ticks do not need its layout engine, whose cost
per chart showed in the training bench (``training.service_vs_bare_loop``; numbers in this file's git log).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 960, 360
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 46, 46
PANEL_GAP = 80
# Drawn on a palette image (one byte per pixel encodes faster than RGB); the price: text is not
# antialiased. Each colour below is a palette index; PALETTE lists them in index order.
WHITE, GRID, AXIS, TEXT, TRAIN, VALIDATION, METRIC = range(7)
PALETTE = [(255, 255, 255), (225, 225, 225), (60, 60, 60), (20, 20, 20), (31, 119, 180), (255, 127, 14), (44, 160, 44)]
COLORS = {"train": TRAIN, "validation": VALIDATION, "metric": METRIC}


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss (train and validation) and the validation task metric, per epoch, side by side."""
    image = Image.new("P", (WIDTH, HEIGHT), WHITE)
    image.putpalette([channel for color in PALETTE for channel in color])
    draw = ImageDraw.Draw(image)
    font, title_font = ImageFont.load_default(size=12), ImageFont.load_default(size=15)
    draw.text((WIDTH // 2, 14), title, fill=TEXT, font=title_font, anchor="mt")
    epochs = [float(record["epoch"]) for record in history]
    validation = history[-1]["validation"] if history else {}
    metric = next((m for m in ("accuracy", "r2", "elbo") if m in validation), "loss")
    panel_width = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT - PANEL_GAP) // 2
    left = (MARGIN_LEFT, MARGIN_TOP, MARGIN_LEFT + panel_width, HEIGHT - MARGIN_BOTTOM)
    right = (left[2] + PANEL_GAP, MARGIN_TOP, left[2] + PANEL_GAP + panel_width, HEIGHT - MARGIN_BOTTOM)
    _panel(
        draw,
        font,
        left,
        epochs,
        {
            "train": _series(history, "train", "loss"),
            "validation": _series(history, "validation", "loss"),
        },
        "loss",
    )
    _panel(draw, font, right, epochs, {"metric": _series(history, "validation", metric)}, f"validation {metric}")
    image.save(path, format="PNG", compress_level=1)  # larger than level 6, but quicker to encode


def _series(history: list[dict[str, Any]], split: str, name: str) -> list[float | None]:
    values: list[float | None] = []
    for record in history:
        value = record.get(split, {}).get(name)
        values.append(float(value) if value is not None and math.isfinite(value) else None)
    return values


def _panel(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    box: tuple[int, int, int, int],
    epochs: Sequence[float],
    lines: dict[str, list[float | None]],
    ylabel: str,
) -> None:
    """One panel: grid, ticks with labels, the lines, the axis labels and (for several lines) a legend."""
    x0, y0, x1, y1 = box
    values = [v for series in lines.values() for v in series if v is not None]
    low, high = _padded_range(values)
    first, last = (epochs[0], epochs[-1]) if epochs else (0.0, 1.0)
    if last <= first:
        last = first + 1.0

    def to_xy(epoch: float, value: float) -> tuple[float, float]:
        return x0 + (epoch - first) / (last - first) * (x1 - x0), y1 - (value - low) / (high - low) * (y1 - y0)

    for value in _ticks(low, high):
        _, y = to_xy(first, value)
        draw.line([(x0, y), (x1, y)], fill=GRID)
        draw.text((x0 - 6, y), _label(value), fill=TEXT, font=font, anchor="rm")
    for epoch in _ticks(first, last, integers=True):
        x, _ = to_xy(epoch, low)
        draw.line([(x, y1), (x, y1 + 4)], fill=AXIS)
        draw.text((x, y1 + 7), _label(epoch), fill=TEXT, font=font, anchor="mt")
    draw.rectangle(box, outline=AXIS)
    for name, series in lines.items():
        points = [to_xy(e, v) for e, v in zip(epochs, series, strict=False) if v is not None]
        if len(points) == 1:
            (x, y) = points[0]
            draw.ellipse([(x - 2, y - 2), (x + 2, y + 2)], fill=COLORS[name])
        elif points:
            draw.line(points, fill=COLORS[name], width=2, joint="curve")
    draw.text(((x0 + x1) // 2, y1 + 24), "epoch", fill=TEXT, font=font, anchor="mt")
    draw.text((x0, y0 - 6), ylabel, fill=TEXT, font=font, anchor="ld")
    if len(lines) > 1:
        for row, name in enumerate(lines):
            y = y0 + 12 + row * 16
            draw.line([(x1 - 110, y), (x1 - 90, y)], fill=COLORS[name], width=2)
            draw.text((x1 - 84, y), name, fill=TEXT, font=font, anchor="lm")


def _padded_range(values: Sequence[float]) -> tuple[float, float]:
    """The value range with 5 % headroom each side (a flat or empty series still gets a range)."""
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or max(abs(high) * 0.05, 1e-3)
    return low - pad, high + pad


def _ticks(low: float, high: float, integers: bool = False, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten) inside [low, high]."""
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integers:
        step = max(1.0, round(step))
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() and abs(value) < 1e6 else f"{value:.3g}"
