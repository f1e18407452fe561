"""Structured pruning through the real serialization service: the trained digits MLP loses hidden units, the
ONNX file has fewer weights, and the proof gate holds the pruned model against the unpruned original."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest

from aiaas.client.registry import READY, REJECTED, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from tests.integration.serialization.test_export_jobs import Stub, start, wait


def pruned_job(serialization: Stub, ref: tuple[str, int], fraction: float, target: str) -> pb.ExportJob:
    options = common_pb2.ExportOptions(variants=["fp32"], structured_pruning=fraction)
    job, _ = wait(serialization, start(serialization, ref, [], options=options, target_model_name=target).job_id)
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    return job


def initializer_elements(registry: SyncRegistryClient, ref: common_pb2.VersionRef, folder: Path) -> int:
    path = folder / f"{ref.model_name}-{ref.version}.onnx"
    registry.download_to((ref.model_name, ref.version), "model.onnx", path)
    return sum(int(np.prod(i.dims)) for i in onnx.load(str(path)).graph.initializer)


def test_mild_prune_is_ready_with_fewer_weights_in_the_onnx(
    serialization: Stub, registry: SyncRegistryClient, checkpoints: dict[str, tuple[str, int]], tmp_path: Path
) -> None:
    report = pruned_job(serialization, checkpoints["mlp"], 0.25, "mlp-neurons-25").reports[0]
    settings = report.settings
    assert report.accepted, report.reason
    assert registry.get_version((report.registered.model_name, report.registered.version)).status == READY
    assert settings["pruned_widths"] == "64->48" and settings["structured_pruning_reached"] == "0.2500"
    before, after = int(settings["params_before"]), int(settings["params_after"])
    assert after == before - 16 * (64 + 1 + 10)  # 16 neurons: their input row, bias and output column
    # the file holds the smaller matrices (plus the standardization constants: 2 x 64 at most)
    assert after <= initializer_elements(registry, report.registered, tmp_path) <= after + 2 * 64 < before
    # judged against the unpruned model by its task: accuracy within 1 point, 95% of its decisions kept
    assert report.limits["max_metric_drop"] == pytest.approx(0.01)
    assert report.reference_metric_value - report.metric_value <= 0.01 and report.top1_agreement >= 0.95


def test_extreme_prune_is_judged_by_its_measured_accuracy(
    serialization: Stub, registry: SyncRegistryClient, checkpoints: dict[str, tuple[str, int]]
) -> None:
    report = pruned_job(serialization, checkpoints["mlp"], 0.9, "mlp-neurons-90").reports[0]
    assert report.settings["pruned_widths"] == "64->6"
    drop = report.reference_metric_value - report.metric_value
    keeps_its_task = drop <= 0.01 and report.top1_agreement >= 0.95
    assert report.accepted == keeps_its_task, (report.reason, drop, report.top1_agreement)
    status = registry.get_version((report.registered.model_name, report.registered.version)).status
    assert status == (READY if keeps_its_task else REJECTED)
    if not keeps_its_task:  # the reason carries the numbers that broke the limits
        assert ("points below the reference" in report.reason) == (drop > 0.01)
        assert ("top-1 agreement" in report.reason) == (report.top1_agreement < 0.95)


@pytest.mark.parametrize(("kind", "fraction", "words"), [("rnn", 0.25, "'rnn'"), ("mlp", 0.95, "[0, 0.9]")])
def test_unsupported_architecture_or_fraction_is_invalid_argument(
    serialization: Stub, checkpoints: dict[str, tuple[str, int]], kind: str, fraction: float, words: str
) -> None:
    options = common_pb2.ExportOptions(variants=["fp32"], structured_pruning=fraction)
    with pytest.raises(grpc.RpcError) as error:
        start(serialization, checkpoints[kind], [], options=options)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.value.details()
