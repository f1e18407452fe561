"""`make run`: start the suite, then train → export → deploy → infer once and show what happened.

The demo is a client of the four services and nothing more: every step below is a gRPC call a user
could make. It trains two digits classifiers (an MLP and a CNN), asks for FP32/FP16/INT8 variants with
their proof, deploys FP32 first, runs the digits test split through the inference service for every
accepted variant (accuracy and latency as measured here), moves ``production`` to the fastest of them
and says why, prints the REST URL with a curl line to paste, and a short summary of the run's trace.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np
from opentelemetry import propagate, trace

from aiaas.cli.trace_commands import default_trace_dir, resolve_trace_id
from aiaas.common.v1 import common_pb2
from aiaas.oip.v2 import grpc_service_pb2, grpc_service_pb2_grpc
from aiaas.registry.v1 import registry_pb2, registry_pb2_grpc
from aiaas.serialization.v1 import serialization_pb2, serialization_pb2_grpc
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from aiaas.wire import VARIANTS
from aiaas_services import demo_text
from aiaas_services.datasets import load_splits
from aiaas_services.runtime import tracing
from aiaas_services.runtime.settings import ServiceSettings
from aiaas_services.suite import DEFAULT_PORTS, Suite

SEED = 7
DIGITS = training_pb2.DataSpec(sklearn="digits")
DONE = {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}
tracer = trace.get_tracer(__name__)


@dataclass
class VariantResult:
    """What the inference service measured for one variant."""

    model: str
    variant: str
    version: int
    accuracy: float
    p50_ms: float
    p99_ms: float
    proof_accepted: bool
    production: bool = False


@dataclass
class PipelineSummary:
    """Everything the run printed, for `--summary-json` and the end-to-end test."""

    trace_id: str = ""
    trained: dict[str, dict[str, float]] = field(default_factory=dict)
    variants: list[VariantResult] = field(default_factory=list)
    production: dict[str, int] = field(default_factory=dict)


def say(text: str) -> None:
    """Progress lines go to stdout, flushed (make run shows them live)."""
    print(text, flush=True)


def architectures() -> dict[str, training_pb2.Architecture]:
    """The two digits classifiers the pipeline trains."""
    return {
        "digits-mlp": training_pb2.Architecture(
            mlp=training_pb2.MlpSpec(hidden_sizes=[128, 64], activation=training_pb2.ACTIVATION_RELU, dropout=0.1)
        ),
        "digits-cnn": training_pb2.Architecture(
            cnn=training_pb2.CnnSpec(channels=1, height=8, width=8, conv_channels=[16, 32], hidden_sizes=[64])
        ),
    }


def start_training(
    stub: training_pb2_grpc.TrainingServiceStub,
    name: str,
    arch: training_pb2.Architecture,
    metadata: Sequence[tuple[str, str]] = (),
) -> str:
    """Start a training job with an export block; returns its id at once."""
    spec = training_pb2.TrainingSpec(
        model_name=name,
        architecture=arch,
        data=DIGITS,
        optimizer=training_pb2.OptimizerSpec(kind=training_pb2.OPTIMIZER_KIND_ADAM, learning_rate=2e-3),
        epochs=30,
        batch_size=64,
        seed=SEED,
        export=common_pb2.ExportOptions(
            variants=list(VARIANTS),
            calibration=common_pb2.CalibrationOptions(method=common_pb2.CALIBRATION_METHOD_MINMAX, per_channel=True),
        ),
        description="trained by `make run`",
    )
    job = stub.StartTrainingJob(training_pb2.StartTrainingJobRequest(spec=spec), timeout=30, metadata=metadata).job
    say(f"  {name}: job {job.job_id} queued")
    return str(job.job_id)


def follow_training(stub: training_pb2_grpc.TrainingServiceStub, name: str, job_id: str) -> training_pb2.Job:
    """Stream a job's progress until it ends; the job must succeed."""
    for event in stub.WatchJob(training_pb2.WatchJobRequest(job_id=job_id), timeout=900):
        if event.HasField("epoch") and (event.epoch.epoch % 10 == 0 or event.epoch.epoch == 1):
            metrics = ", ".join(
                f"val {k} {v:.3f}" for k, v in sorted(event.epoch.validation.items()) if k in ("accuracy", "loss")
            )
            say(f"  {name}: epoch {event.epoch.epoch:>3}  loss {event.epoch.train.get('loss', 0):.4f}  {metrics}")
        elif event.HasField("message"):
            say(f"  {name}: {event.message}")
        if event.state in DONE:
            break
    job: training_pb2.Job = stub.GetJob(training_pb2.GetJobRequest(job_id=job_id), timeout=30).job
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"training {name} ended {common_pb2.JobState.Name(job.state)}: {job.failure_reason}")
    accuracy = job.test_metrics.get("accuracy", float("nan"))
    say(f"  {name}: registered {job.registered.model_name} v{job.registered.version}, test accuracy {accuracy:.4f}")
    return job


def wait_export(stub: serialization_pb2_grpc.SerializationServiceStub, job_id: str) -> serialization_pb2.ExportJob:
    """Follow an export job to its end and return it with its proof reports."""
    for event in stub.WatchExportJob(serialization_pb2.WatchExportJobRequest(job_id=job_id), timeout=900):
        if event.HasField("variant"):
            report = event.variant
            verdict = "accepted" if report.accepted else f"REJECTED ({report.reason})"
            say(f"  {report.variant:<13} {verdict}")
        if event.state in DONE:
            break
    job: serialization_pb2.ExportJob = stub.GetExportJob(
        serialization_pb2.GetExportJobRequest(job_id=job_id), timeout=30
    ).job
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"export {job_id} ended {common_pb2.JobState.Name(job.state)}: {job.failure_reason}")
    return job


def proof_table(job: serialization_pb2.ExportJob) -> None:
    """Print each variant's proof against the PyTorch original."""
    say(
        f"  {'variant':<13} {'ok':<3} {'max|err|':>9} {'top1 agr':>8} {'metric':>8} {'ref':>7} "
        f"{'size KB':>8} {'b1 ms':>7} {'b32 ms':>7}  version"
    )
    for r in job.reports:
        say(
            f"  {r.variant:<13} {'yes' if r.accepted else 'NO':<3} {r.max_abs_error:>9.2e} {r.top1_agreement:>8.4f} "
            f"{r.metric_value:>8.4f} {r.reference_metric_value:>7.4f} {r.size_bytes / 1024:>8.1f} "
            f"{r.latency_ms_batch1:>7.3f} {r.latency_ms_batch32:>7.3f}  "
            f"{r.registered.model_name} v{r.registered.version}"
        )


def reference_variant(job: serialization_pb2.ExportJob) -> serialization_pb2.VariantReport:
    """The first deploy: FP32 when it passed (the reference the others are proved against), else any accepted."""
    accepted = [r for r in job.reports if r.accepted]
    if not accepted:
        raise RuntimeError("no variant passed its proof; nothing to deploy")
    chosen: serialization_pb2.VariantReport = next((r for r in accepted if r.variant == "fp32"), accepted[0])
    return chosen


def fastest_measured(results: Sequence[VariantResult]) -> VariantResult:
    """Among variants within tolerance (their proof accepted them), the lowest p50 measured through the service."""
    return min(results, key=lambda r: (r.p50_ms, r.p99_ms))


def set_production(
    registry: registry_pb2_grpc.RegistryServiceStub,
    model: str,
    version: int,
    reason: str,
    metadata: Sequence[tuple[str, str]],
) -> None:
    """Point ``production`` at ``version`` (the inference service follows within seconds)."""
    request = registry_pb2.SetAliasRequest(
        model_name=model, alias="production", version=version, actor="make-run", reason=reason
    )
    registry.SetAlias(request, timeout=30, metadata=metadata)


def infer_batch(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub,
    model: str,
    version: int,
    rows: np.ndarray,
    metadata: Sequence[tuple[str, str]] = (),
) -> np.ndarray:
    """One ModelInfer call with raw little-endian FP32 input; returns the logits."""
    request = grpc_service_pb2.ModelInferRequest(model_name=model, model_version=str(version))
    request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    request.raw_input_contents.append(np.ascontiguousarray(rows, dtype="<f4").tobytes())
    response = stub.ModelInfer(request, timeout=30, metadata=metadata)
    out = response.outputs[0]
    return np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(tuple(out.shape))


def wait_model_ready(stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub, model: str, version: int) -> None:
    """Wait until the inference service has loaded this version (it follows the registry's aliases)."""
    request = grpc_service_pb2.ModelReadyRequest(name=model, version=str(version))
    demo_text.wait_until_ready(lambda: stub.ModelReady(request, timeout=5).ready, model, version)


def evaluate(
    stub: grpc_service_pb2_grpc.GRPCInferenceServiceStub,
    model: str,
    version: int,
    x: np.ndarray,
    y: np.ndarray,
) -> tuple[float, float, float]:
    """Accuracy over the test split (one request per sample, like a backend would send) and latency."""
    latencies: list[float] = []
    correct = 0
    for row, label in zip(x, y, strict=True):
        started = time.perf_counter()
        logits = infer_batch(stub, model, version, row[None, :])
        latencies.append((time.perf_counter() - started) * 1000)
        correct += int(np.argmax(logits[0]) == label)
    latencies.sort()
    return (
        correct / len(y),
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


def run_pipeline(targets: dict[str, str], home: Path) -> PipelineSummary:
    """Every step of the demo, against running services."""
    summary = PipelineSummary()
    channels = {name: grpc.insecure_channel(target) for name, target in targets.items()}
    training = training_pb2_grpc.TrainingServiceStub(channels["training"])
    serialization = serialization_pb2_grpc.SerializationServiceStub(channels["serialization"])
    registry = registry_pb2_grpc.RegistryServiceStub(channels["registry"])
    inference = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channels["inference"])
    splits = load_splits({"sklearn": "digits"}, SEED)

    with tracer.start_as_current_span("pipeline.run") as root:
        summary.trace_id = f"{root.get_span_context().trace_id:032x}"
        # Plain (sync) stubs carry the run's trace context as W3C metadata, so every service's spans
        # (and the jobs they start) join this one trace.
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        metadata = tuple(carrier.items())

        say("[2/5] training (PyTorch, worker processes)")
        # Both jobs run side by side in the training service's worker pool.
        job_ids = {name: start_training(training, name, arch, metadata) for name, arch in architectures().items()}
        jobs = {name: follow_training(training, name, job_id) for name, job_id in job_ids.items()}
        for name, job in jobs.items():
            summary.trained[name] = dict(job.test_metrics)

        say("[3/5] export to ONNX and prove every variant against PyTorch")
        exports: dict[str, serialization_pb2.ExportJob] = {}
        for name, job in jobs.items():
            if not job.export_job_id:
                raise RuntimeError(f"training {name} did not start an export job")
            say(f"  {name}: export job {job.export_job_id}")
            exports[name] = wait_export(serialization, job.export_job_id)
            proof_table(exports[name])

        say("[4/5] deploy FP32, then measure every accepted variant through the inference service")
        for export in exports.values():
            first = reference_variant(export)
            set_production(registry, first.registered.model_name, first.registered.version, "reference", metadata)
            say(f"  production → {first.registered.model_name} v{first.registered.version} ({first.variant})")
        for export in exports.values():
            for report in export.reports:
                if not report.accepted:
                    continue
                onnx_model, version = report.registered.model_name, report.registered.version
                wait_model_ready(inference, onnx_model, version)
                # The first request of each variant joins the run's trace; the rest are their own traces,
                # so the trace stays readable.
                infer_batch(inference, onnx_model, version, splits.x_test[:1], metadata)
                accuracy, p50, p99 = evaluate(inference, onnx_model, version, splits.x_test, splits.y_test)
                summary.variants.append(
                    VariantResult(onnx_model, report.variant, version, accuracy, p50, p99, True, False)
                )

        say(f"[5/5] production → the fastest variant as measured ({len(splits.y_test)} requests each)")
        for model in sorted({v.model for v in summary.variants}):
            candidates = [v for v in summary.variants if v.model == model]
            best = fastest_measured(candidates)
            best.production = True
            reference = next((v for v in candidates if v.variant == "fp32"), best)
            why = (
                f"fastest p50 here: {best.p50_ms:.2f} ms vs fp32 {reference.p50_ms:.2f} ms; accuracy "
                f"{best.accuracy:.4f} vs {reference.accuracy:.4f}, within the proof's tolerance"
            )
            set_production(registry, model, best.version, why, metadata)
            summary.production[model] = best.version
            say(f"  production → {model} v{best.version} ({best.variant}): {why}")
        say(f"  {'model':<18} {'variant':<13} {'version':>7} {'accuracy':>8} {'p50 ms':>7} {'p99 ms':>7}")
        for v in summary.variants:
            mark = "  ← production" if v.production else ""
            say(
                f"  {v.model:<18} {v.variant:<13} {v.version:>7} {v.accuracy:>8.4f} {v.p50_ms:>7.2f} "
                f"{v.p99_ms:>7.2f}{mark}"
            )
    for channel in channels.values():
        channel.close()
    return summary


def print_rest(rest_url: str | None, model: str, row: np.ndarray) -> None:
    """The REST front door and one curl line a user can paste (a digits test sample)."""
    if not rest_url:
        return
    data = ", ".join(f"{float(v):.4g}" for v in row)
    body = f'{{"inputs": [{{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [{data}]}}]}}'
    say(f"REST (KServe V2): {rest_url}/v2   OpenAPI: {rest_url}/v2/openapi.json")
    say(f"  curl -s {rest_url}/v2/models/{model}/infer -d '{body}'")


def print_trace(home: Path, trace_id: str) -> None:
    """A short summary of the run's trace (spans per service, slowest hops) and the command for the tree."""
    time.sleep(1.0)  # the services export spans in batches; give the last batch a moment
    try:
        _, spans = resolve_trace_id(trace_id, default_trace_dir(str(home)))
    except (LookupError, ValueError) as exc:
        say(f"trace {trace_id}: {exc}")
        return
    per_service: dict[str, int] = {}
    for span in spans:
        per_service[str(span["service"])] = per_service.get(str(span["service"]), 0) + 1
    counts = ", ".join(f"{name} {count}" for name, count in sorted(per_service.items(), key=lambda kv: -kv[1]))
    say(f"trace {trace_id}: {len(spans)} spans ({counts})")
    hops = sorted(spans, key=lambda s: int(s["end_ns"]) - int(s["start_ns"]), reverse=True)
    for span in [s for s in hops if s["parent_id"]][:5]:
        say(f"  {(int(span['end_ns']) - int(span['start_ns'])) / 1e6:>10.1f} ms  {span['service']:<20} {span['name']}")
    say(f"  the whole tree: aiaas trace show {trace_id} --home {home}")


@dataclasses.dataclass(frozen=True)
class PipelineSettings(ServiceSettings):
    """The pipeline's own tracing identity (service.name aiaas-pipeline)."""

    service_name: typing.ClassVar[str] = "pipeline"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aiaas_services.demo [--once]``."""
    parser = argparse.ArgumentParser(prog="aiaas-pipeline", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the pipeline instead of serving on")
    parser.add_argument("--home", default=os.environ.get("AIAAS_HOME", str(Path.home() / ".aiaas")))
    parser.add_argument("--ephemeral-ports", action="store_true", help="let each service pick a free port")
    parser.add_argument("--summary-json", default="", help="also write the results to this JSON file")
    parser.add_argument(
        "--no-text",
        action="store_true",
        default=not demo_text.wanted(),
        help="skip the text leg (MiniLM import, fine-tune, export, serve; also AIAAS_RUN_TEXT=0 or make run TEXT=0)",
    )
    args = parser.parse_args(argv)
    home = Path(args.home).expanduser()
    home.mkdir(parents=True, exist_ok=True)

    os.environ.setdefault("AIAAS_HOME", str(home))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the text leg's model is a local folder; no hub is reachable
    shutdown_tracing = tracing.setup_tracing(PipelineSettings(home=str(home)))
    ports = dict.fromkeys(DEFAULT_PORTS, 0) if args.ephemeral_ports else None
    suite = Suite(home, ports=ports)  # inference serves whatever `production` names (no model list)
    say(f"[1/5] starting the four services (AIAAS_HOME={home})")
    try:
        suite.start()
        for service in suite.services.values():
            say(f"  {service.name:<14} {service.target:<18} log {service.log_path}")
        targets = {name: service.target for name, service in suite.services.items()}
        summary = run_pipeline(targets, home)
        shutdown_tracing()
        print_trace(home, summary.trace_id)
        first_sample = load_splits({"sklearn": "digits"}, SEED).x_test[0]
        print_rest(suite.services["inference"].http_url, "digits-mlp-onnx", first_sample)
        text = None if args.no_text else demo_text.run_text_leg(targets, suite.services["inference"].http_url, say)
        if args.summary_json:
            Path(args.summary_json).write_text(json.dumps({**asdict(summary), "text": text and asdict(text)}, indent=2))
        if not args.once:
            say("serving; Ctrl-C stops the four services")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        say(suite.stop_and_say())
    return 0


if __name__ == "__main__":
    sys.exit(main())
