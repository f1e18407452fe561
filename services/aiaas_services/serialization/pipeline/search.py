"""INT8 chosen by proof: make the variant under each setting that matters, prove each, keep the fastest
that passes, and record what was tried and why each lost (the way Olive searches, gated by our proof).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from aiaas_services.serialization.pipeline.proof import Candidate, Report
from aiaas_services.serialization.pipeline.variants import QuantizationSettings

Make = Callable[[QuantizationSettings, Path], None]
Prove = Callable[[Path, QuantizationSettings], Report]


def candidates(variant: str, base: QuantizationSettings, vnni: bool) -> list[QuantizationSettings]:
    """Settings worth trying, most INT8 first: per-tensor vs per-channel, more and more of the graph kept in
    FP32 (sensitive ops, then the feed-forward MatMuls around GELU), the calibration method (static), and
    7-bit weights where the CPU lacks VNNI (saturation)."""
    change = dataclasses.replace
    tried = [
        change(base, per_channel=False, reduce_range=False, keep_fp32="none"),
        change(base, per_channel=True, reduce_range=False, keep_fp32="none"),
        change(base, per_channel=True, reduce_range=False, keep_fp32="sensitive"),
        change(base, per_channel=True, reduce_range=False, keep_fp32="sensitive+ffn-out"),
        change(base, per_channel=True, reduce_range=False, keep_fp32="sensitive+ffn"),
    ]
    if variant == "int8-static":
        tried.append(change(base, per_channel=True, reduce_range=False, keep_fp32="sensitive", method="percentile"))
    if not vnni:
        tried.append(change(base, per_channel=True, reduce_range=True, keep_fp32="sensitive"))
    return list(dict.fromkeys(tried))


def search(
    variant: str,
    settings: list[QuantizationSettings],
    workdir: Path,
    destination: Path,
    make: Make,
    prove: Prove,
    versus_fp32: Callable[[Path], float] | None = None,
) -> Report:
    """Try each setting; the fastest passing one ends at ``destination`` and its report carries the table
    (and, with ``versus_fp32``, its batch-32 latency ratio to FP32 measured side by side). When none
    passes, the closest one (highest worst-row cosine) is kept, rejected, with the table."""
    tried: list[tuple[QuantizationSettings, Path, Report | None, str]] = []
    for index, setting in enumerate(settings):
        path = workdir / f"{variant}-candidate-{index}.onnx"
        try:
            make(setting, path)
            tried.append((setting, path, prove(path, setting), ""))
        except Exception as exc:  # noqa: BLE001 - one candidate's failure is a row of the table, not the variant's end
            tried.append((setting, path, None, f"could not be made: {type(exc).__name__}: {_first_line(exc)}"))
    passing = [t for t in tried if t[2] is not None and t[2].accepted]
    proven = [t for t in tried if t[2] is not None]
    if passing:
        winner = min(passing, key=lambda t: t[2].latency_ms_batch32 if t[2] else 0.0)
    elif proven:
        winner = max(proven, key=lambda t: t[2].worst_row_cosine if t[2] else 0.0)
    else:
        raise RuntimeError("; ".join(f"{_label(s, variant)}: {why}" for s, _, _, why in tried))
    report = winner[2]
    assert report is not None
    shutil.copyfile(winner[1], destination)
    report.candidates = [_row(variant, t, winner, bool(passing)) for t in tried]
    if passing and versus_fp32 is not None:
        # recorded, not gated: on small models the two timings are within noise of each other
        report.latency_vs_fp32_batch32 = versus_fp32(destination)
    if not passing:
        report.reason = f"no INT8 setting passed the proof ({len(tried)} tried); closest: {report.reason}"
    for _, path, _, _ in tried:
        path.unlink(missing_ok=True)
    return report


def _row(
    variant: str,
    entry: tuple[QuantizationSettings, Path, Report | None, str],
    winner: tuple[QuantizationSettings, Path, Report | None, str],
    any_passed: bool,
) -> Candidate:
    setting, _, report, failure = entry
    labels = setting.as_dict(variant)
    if report is None:
        return Candidate(labels, False, failure)
    best = winner[2]
    assert best is not None
    if entry is winner:
        why = "" if any_passed else f"closest, but failed: {report.reason}"
    elif not report.accepted:
        why = f"failed the proof: {report.reason}"
    else:
        why = f"slower: {report.latency_ms_batch32:.2f} ms at batch 32 vs {best.latency_ms_batch32:.2f} ms"
    return Candidate(labels, report.accepted, why, report.latency_ms_batch32, report.worst_row_cosine)


def _label(setting: QuantizationSettings, variant: str) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.as_dict(variant).items() if k != "variant")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:300]
