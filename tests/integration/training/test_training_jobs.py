"""The training service against a real registry: real data, real training, real registration."""

from __future__ import annotations

import io
import json
from typing import TypeAlias

import grpc
import numpy as np
import pytest
from safetensors.numpy import load

from aiaas.client.registry import SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.registry.v1 import registry_pb2
from aiaas.serialization.v1 import serialization_pb2, serialization_pb2_grpc
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from tests.integration.training.conftest import digits_mlp, start, wait
from tests.support.processes import ServiceProcess

Stub: TypeAlias = training_pb2_grpc.TrainingServiceStub


def test_mlp_on_digits_reaches_95_percent_and_is_registered(
    training: Stub, registry: SyncRegistryClient, training_process: ServiceProcess
) -> None:
    job = start(training, digits_mlp("digits-mlp"))
    events = list(training.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=120))
    job = training.GetJob(training_pb2.GetJobRequest(job_id=job.job_id)).job
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    assert job.test_metrics["accuracy"] >= 0.95
    assert {"precision_macro", "recall_macro", "f1_macro"} <= set(job.test_metrics)
    assert job.num_classes == 10 and len(job.confusion_matrix) == 100
    assert sum(job.confusion_matrix) == 270  # 15% of 1797 digits
    assert [h.epoch for h in job.history] == list(range(1, 21))
    assert job.dataset_digest.startswith("sha256:")
    # the event stream: gap-free sequence, queued -> running -> 20 epochs -> succeeded
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert sum(e.HasField("epoch") for e in events) == 20
    assert events[-1].state == common_pb2.JOB_STATE_SUCCEEDED
    # a late watcher resuming after sequence 3 gets exactly the rest
    rest = list(training.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id, after_sequence=3)))
    assert [e.sequence for e in rest] == [e.sequence for e in events[3:]]

    version = registry.get_version(job.registered)
    assert version.status == registry_pb2.VERSION_STATUS_READY
    assert version.format == registry_pb2.MODEL_FORMAT_PYTORCH_CHECKPOINT
    assert {a.name for a in version.artifacts} == {"weights.safetensors", "spec.json", "curves.png", "reference.json"}
    assert version.lineage.training_job_id == job.job_id
    assert version.lineage.dataset_digest == job.dataset_digest
    assert version.lineage.hyperparameters["seed"] == "1"
    assert version.metrics["accuracy"] == pytest.approx(job.test_metrics["accuracy"])
    spec = json.loads(registry.download_bytes(job.registered, "spec.json"))
    assert spec["architecture"]["kind"] == "mlp" and spec["num_features"] == 64 and spec["num_classes"] == 10
    assert len(spec["standardization"]["mean"]) == 64 and spec["data"] == {"sklearn": "digits"}
    assert registry.download_bytes(job.registered, "curves.png")[:8] == b"\x89PNG\r\n\x1a\n"
    # the worker's spans continue the trace of the StartTrainingJob request
    assert len(job.trace_id) == 32 and version.lineage.trace_id == job.trace_id
    spans = [
        json.loads(line) for line in (training_process.home / "traces" / "training.jsonl").read_text().splitlines()
    ]
    job_spans = [s for s in spans if s["trace_id"] == job.trace_id]
    assert {"training.job", "training.fit", "training.evaluate"} <= {s["name"] for s in job_spans}


def test_linear_regression_recovers_slope_and_intercept(training: Stub, registry: SyncRegistryClient) -> None:
    spec = training_pb2.TrainingSpec(model_name="line", epochs=30, batch_size=32, seed=3)
    spec.architecture.linear.SetInParent()
    spec.data.synthetic.kind = "linear"
    spec.data.synthetic.slope, spec.data.synthetic.intercept, spec.data.synthetic.noise = 3.0, 2.0, 0.1
    spec.optimizer.learning_rate = 0.01
    job = wait(training, start(training, spec).job_id)
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    weights = load(registry.download_bytes(job.registered, "weights.safetensors"))
    # the model computes y = (w * (x - mx) / sx + b) * sy + my: un-standardize to y = slope * x + intercept
    w, b = float(weights["net.weight"][0, 0]), float(weights["net.bias"][0])
    mx, sx = float(weights["input_mean"][0]), float(weights["input_std"][0])
    my, sy = float(weights["output_mean"][0]), float(weights["output_std"][0])
    slope = w * sy / sx
    intercept = my + sy * (b - w * mx / sx)
    assert slope == pytest.approx(3.0, abs=0.05)
    assert intercept == pytest.approx(2.0, abs=0.05)
    assert job.test_metrics["r2"] > 0.99


def test_a_checkpoint_registers_in_one_call_or_streams_when_too_big(
    training: Stub, registry: SyncRegistryClient
) -> None:
    """A small checkpoint arrives READY with its three artifacts in one CreateVersion (no PENDING step,
    no per-upload events); one over the client's inline limit is streamed into a PENDING version first."""
    from aiaas.client.registry import INLINE_BYTES

    small = digits_mlp("registered-inline", epochs=1)
    big = digits_mlp("registered-streamed", epochs=1)
    big.architecture.mlp.hidden_sizes[:] = [1024, 1024]  # ~1.1 M parameters: ~4.4 MB of weights
    for spec, streamed in ((small, False), (big, True)):
        job = wait(training, start(training, spec).job_id)
        assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
        version = registry.get_version(job.registered)
        assert version.status == registry_pb2.VERSION_STATUS_READY
        assert sorted(a.name for a in version.artifacts) == [
            "curves.png",
            "reference.json",
            "spec.json",
            "weights.safetensors",
        ]
        assert (sum(a.size_bytes for a in version.artifacts) > INLINE_BYTES) == streamed
        events = registry.watch(after_sequence=0, model_names=[spec.model_name])
        kinds = [next(events).type for _ in range(3 + 3 * streamed)]  # model, version, [3 uploads,] status
        events.close()
        uploads = [registry_pb2.EVENT_TYPE_VERSION_UPDATED] * 3 if streamed else []
        assert kinds == [
            registry_pb2.EVENT_TYPE_MODEL_CREATED,
            registry_pb2.EVENT_TYPE_VERSION_CREATED,
            *uploads,
            registry_pb2.EVENT_TYPE_VERSION_STATUS_CHANGED,
        ]


def test_same_seed_same_weights(training: Stub, registry: SyncRegistryClient) -> None:
    first = start(training, digits_mlp("determinism", epochs=3, seed=11))
    second = start(training, digits_mlp("determinism", epochs=3, seed=11))
    other = start(training, digits_mlp("determinism", epochs=3, seed=12))
    digests = []
    for job in (first, second, other):
        done = wait(training, job.job_id)
        assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.failure_reason
        version = registry.get_version(done.registered)
        digests.append(next(a.sha256 for a in version.artifacts if a.name == "weights.safetensors"))
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_cancel_interrupts_a_running_epoch(training: Stub) -> None:
    spec = training_pb2.TrainingSpec(model_name="cancel-me", epochs=5, batch_size=1, seed=0)
    spec.architecture.mlp.hidden_sizes.extend([256, 256])
    spec.data.synthetic.kind = "blobs"
    spec.data.synthetic.num_samples = 200_000  # one epoch takes minutes at batch size 1
    job = start(training, spec)
    stream = training.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=60)
    for event in stream:
        if event.state == common_pb2.JOB_STATE_RUNNING:
            break
    stream.cancel()
    cancelled = training.CancelJob(training_pb2.CancelJobRequest(job_id=job.job_id), timeout=30).job
    assert cancelled.state == common_pb2.JOB_STATE_CANCELLED
    assert cancelled.current_epoch == 0  # stopped inside the first epoch
    assert "cancelled" in cancelled.failure_reason
    again = training.CancelJob(training_pb2.CancelJobRequest(job_id=job.job_id), timeout=30).job
    assert again.state == common_pb2.JOB_STATE_CANCELLED


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda s: (s.architecture.rnn.SetInParent(), setattr(s.architecture.rnn, "sequence_length", 5)),  # type: ignore[func-returns-value]
            "does not divide the 64 features",
        ),
        (lambda s: setattr(s.data, "sklearn", "mnist"), "unknown dataset 'mnist'"),
        (lambda s: s.ClearField("architecture"), "spec.architecture is required"),
        (lambda s: setattr(s.early_stopping, "metric", "r2"), "not computed for classification"),
        (lambda s: setattr(s, "model_name", ""), "spec.model_name is required"),
        (lambda s: setattr(s.optimizer, "learning_rate", -1), "learning_rate"),
    ],
)
def test_bad_specs_are_refused_up_front(training: Stub, mutate: object, message: str) -> None:
    spec = digits_mlp("bad")
    mutate(spec)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as info:
        training.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=spec), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_a_spec_that_fails_while_running_fails_with_its_reason(training: Stub, registry: SyncRegistryClient) -> None:
    # a registry dataset whose CSV has a single column: only the worker can find out
    version = registry.create_version("bad-data", format=registry_pb2.MODEL_FORMAT_DATASET, create_model=True)
    registry.upload_bytes("bad-data", version.version, "data.csv", b"1\n2\n3\n", "text/csv")
    registry.set_status(
        common_pb2.VersionRef(model_name="bad-data", version=version.version), registry_pb2.VERSION_STATUS_READY
    )
    spec = digits_mlp("from-bad-data")
    spec.data.registry.ref.model_name = "bad-data"
    spec.data.registry.ref.version = version.version
    spec.data.registry.artifact_name = "data.csv"
    job = wait(training, start(training, spec).job_id)
    assert job.state == common_pb2.JOB_STATE_FAILED
    assert "needs at least one feature column" in job.failure_reason
    missing = digits_mlp("from-missing-data")
    missing.data.registry.ref.model_name = "no-such-dataset"
    missing.data.registry.ref.version = 1
    job = wait(training, start(training, missing).job_id)
    assert job.state == common_pb2.JOB_STATE_FAILED
    assert "could not fetch the dataset" in job.failure_reason and "NOT_FOUND" in job.failure_reason


def test_registry_npz_dataset(training: Stub, registry: SyncRegistryClient) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    version = registry.create_version("user-data", format=registry_pb2.MODEL_FORMAT_DATASET, create_model=True)
    registry.upload_bytes("user-data", version.version, "data.npz", buffer.getvalue(), "application/x-npz")
    spec = training_pb2.TrainingSpec(model_name="user-model", epochs=20, seed=2)
    spec.optimizer.learning_rate = 0.01
    spec.architecture.mlp.hidden_sizes.extend([16])
    spec.data.registry.ref.model_name = "user-data"
    spec.data.registry.ref.version = version.version
    spec.data.registry.artifact_name = "data.npz"
    job = wait(training, start(training, spec).job_id)
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    assert job.test_metrics["accuracy"] > 0.9


def test_export_block_hands_the_checkpoint_to_the_serialization_service(
    training: Stub, registry: SyncRegistryClient, serialization_for_training: ServiceProcess
) -> None:
    spec = digits_mlp("exported-mlp", epochs=5)
    spec.export.variants.append("fp32")
    job = start(training, spec)
    events = list(training.WatchJob(training_pb2.WatchJobRequest(job_id=job.job_id), timeout=120))
    job = training.GetJob(training_pb2.GetJobRequest(job_id=job.job_id)).job
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    assert job.export_job_id
    assert any(e.message.startswith(f"export job {job.export_job_id} started") for e in events)
    with grpc.insecure_channel(serialization_for_training.address) as channel:
        stub = serialization_pb2_grpc.SerializationServiceStub(channel)
        request = serialization_pb2.WatchExportJobRequest(job_id=job.export_job_id)
        list(stub.WatchExportJob(request, timeout=180))
        export = stub.GetExportJob(serialization_pb2.GetExportJobRequest(job_id=job.export_job_id)).job
    # the serialization service rebuilt our module from spec.json + weights.safetensors and proved it
    assert export.state == common_pb2.JOB_STATE_SUCCEEDED, export.failure_reason
    assert export.training_job_id == job.job_id
    (report,) = export.reports
    assert report.variant == "fp32" and report.accepted, report.reason
    onnx = registry.get_version(report.registered)
    assert onnx.format == registry_pb2.MODEL_FORMAT_ONNX
    assert onnx.lineage.parent_version == job.registered.version


@pytest.mark.parametrize("kind", ["cnn", "rnn", "transformer", "vae"])
def test_every_architecture_trains_and_registers(kind: str, training: Stub, registry: SyncRegistryClient) -> None:
    spec = training_pb2.TrainingSpec(model_name=f"digits-{kind}", epochs=2, seed=0)
    spec.data.sklearn = "digits"
    block = getattr(spec.architecture, kind)
    block.SetInParent()
    if kind in ("rnn", "transformer"):
        block.sequence_length = 8
    if kind == "rnn":
        block.cell = training_pb2.RNN_CELL_GRU
    job = wait(training, start(training, spec).job_id)
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.failure_reason
    assert len(job.history) == 2
    metric = "elbo" if kind == "vae" else "accuracy"
    assert metric in job.test_metrics
    version = registry.get_version(job.registered)
    assert version.status == registry_pb2.VERSION_STATUS_READY
    assert version.tags["architecture"] == kind


def test_unknown_job_is_not_found(training: Stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        training.GetJob(training_pb2.GetJobRequest(job_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        list(training.WatchJob(training_pb2.WatchJobRequest(job_id="nope")))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_jobs_pages_newest_first_and_request_id_is_idempotent(training: Stub) -> None:
    spec = digits_mlp("idempotent", epochs=1)
    a = training.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=spec, request_id="req-1")).job
    b = training.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=spec, request_id="req-1")).job
    assert a.job_id == b.job_id
    wait(training, a.job_id)
    first = training.ListJobs(training_pb2.ListJobsRequest(page_size=2))
    assert len(first.jobs) == 2 and first.next_page_token
    second = training.ListJobs(training_pb2.ListJobsRequest(page_size=2, page_token=first.next_page_token))
    assert {j.job_id for j in first.jobs}.isdisjoint({j.job_id for j in second.jobs})
    assert first.jobs[0].created_at.ToNanoseconds() >= first.jobs[1].created_at.ToNanoseconds()
    done = training.ListJobs(training_pb2.ListJobsRequest(state=common_pb2.JOB_STATE_SUCCEEDED, page_size=100))
    assert all(j.state == common_pb2.JOB_STATE_SUCCEEDED for j in done.jobs)
