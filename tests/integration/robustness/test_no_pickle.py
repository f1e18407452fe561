"""Checkpoints and datasets that try to run code when unpickled are refused, and the code never runs."""

from __future__ import annotations

import io
import json
import os
import pickle
import time
from pathlib import Path

import grpc
import numpy as np

from aiaas.client.registry import DATASET, PYTORCH_CHECKPOINT, SyncRegistryClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as ser
from aiaas.serialization.v1 import serialization_pb2_grpc as ser_grpc
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from aiaas_services.suite import DEFAULT_PORTS, Suite
from tests.support.models import digits_mlp_spec


class Exploit:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_pickled_checkpoints_and_datasets_never_execute(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weights": Exploit(marker)})
    with pickle_free_suite(tmp_path) as suite, SyncRegistryClient(suite.target("registry"), actor="attacker") as reg:
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(digits_mlp_spec(8, data={"sklearn": "digits"}, seed=0)))
        weights = tmp_path / "weights.safetensors"
        weights.write_bytes(payload)  # a pickle posing as safetensors
        version = reg.push("evil", {"spec.json": spec, "weights.safetensors": weights}, format=PYTORCH_CHECKPOINT)

        # An object array inside an .npz dataset unpickles on np.load(allow_pickle=True).
        buffer = io.BytesIO()
        np.savez(buffer, x=np.array([Exploit(marker)] * 4, dtype=object), y=np.zeros(4))
        data = tmp_path / "data.npz"
        data.write_bytes(buffer.getvalue())
        dataset = reg.push("evil-data", {"data.npz": data}, format=DATASET)

        with grpc.insecure_channel(suite.target("serialization")) as channel:
            stub = ser_grpc.SerializationServiceStub(channel)
            try:
                job = stub.StartExportJob(
                    ser.StartExportJobRequest(
                        source=common_pb2.VersionRef(model_name="evil", version=version.version),
                        options=common_pb2.ExportOptions(variants=["fp32"]),
                    ),
                    timeout=60,
                ).job
                export = wait_job(lambda: stub.GetExportJob(ser.GetExportJobRequest(job_id=job.job_id)).job)
                assert export.state == common_pb2.JOB_STATE_FAILED, export
                assert "safetensors" in export.failure_reason.lower() or "weights" in export.failure_reason.lower()
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()

        with grpc.insecure_channel(suite.target("training")) as channel:
            stub_t = training_pb2_grpc.TrainingServiceStub(channel)
            request = training_pb2.StartTrainingJobRequest(
                spec=training_pb2.TrainingSpec(
                    model_name="evil-trained",
                    architecture=training_pb2.Architecture(mlp=training_pb2.MlpSpec(hidden_sizes=[4])),
                    data=training_pb2.DataSpec(
                        registry=training_pb2.RegistryDataset(
                            ref=common_pb2.VersionRef(model_name="evil-data", version=dataset.version),
                            artifact_name="data.npz",
                        )
                    ),
                    epochs=1,
                )
            )
            job_t = stub_t.StartTrainingJob(request, timeout=60).job
            trained = wait_job(lambda: stub_t.GetJob(training_pb2.GetJobRequest(job_id=job_t.job_id)).job)
            assert trained.state == common_pb2.JOB_STATE_FAILED, trained
            assert "pickle" in trained.failure_reason.lower() or "object" in trained.failure_reason.lower()

    assert not marker.exists(), "unpickling ran the attacker's code"


def wait_job(read, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        job = read()
        if job.state in (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def pickle_free_suite(tmp_path: Path) -> Suite:
    return Suite(
        tmp_path / "home",
        ports=dict.fromkeys(DEFAULT_PORTS, 0),
        names=("registry", "serialization", "training"),
    )
