"""Settings of the inference service (env prefix AIAAS_INFERENCE_)."""

from __future__ import annotations

import dataclasses
import typing

from aiaas_services.runtime.settings import ServiceSettings, setting


@dataclasses.dataclass(frozen=True)
class InferenceSettings(ServiceSettings):
    """Inference service: the Open Inference Protocol on ONNX Runtime."""

    env_prefix: typing.ClassVar[str] = "AIAAS_INFERENCE_"
    service_name: typing.ClassVar[str] = "inference"

    port: int = setting(8001, "Port to listen on; 0 picks a free one (see port_file).")
    http_port: int = setting(
        8000,
        "Port of the REST (KServe V2 HTTP) front door; 0 picks a free one (written to <port_file>.http), -1 = off.",
    )

    # Where models come from.
    model_repository: str = setting(
        "", "Local model repository folder <repo>/<name>/<version>/model.onnx (no registry)."
    )
    registry_target: str = setting(
        "",
        "Registry address host:port. With `models` empty, every model that has `default_alias` is served, "
        "found and kept current from the registry's events (alias set: loaded; alias deleted: unloaded).",
    )
    models: list[str] = setting(
        [],
        "Only these models from the registry: name (alias production), name@alias or name@<version>, "
        "comma-separated; empty = every model with `default_alias`.",
    )
    default_alias: str = setting("production", "Alias resolved when a model in `models` names none.")
    variant_policy: str = setting(
        "alias",
        "Which variant answers by default: 'alias' (exactly the aliased version) or 'hardware' "
        "(among READY variants of the same lineage: fp16 on CUDA, int8 on CPU).",
    )
    load_variants: bool = setting(True, "Also load the READY sibling variants of a served registry version.")
    cache_dir: str = setting("", "Where downloaded model.onnx files live; default <home>/inference/models.")
    watch_backoff_max_seconds: float = setting(10.0, "Longest wait between reconnects of the registry watch.")

    # ONNX Runtime.
    providers: list[str] = setting(
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "Execution providers in order of preference; unavailable ones are skipped (logged).",
    )
    cuda_device_id: int = setting(0, "CUDA device id.")
    cuda_mem_limit_bytes: int = setting(0, "CUDA arena memory limit in bytes (0 = unlimited).")
    cudnn_conv_algo_search: str = setting(
        "EXHAUSTIVE", "cuDNN convolution algorithm search: EXHAUSTIVE, HEURISTIC, DEFAULT."
    )
    cuda_graph: bool = setting(False, "Enable CUDA graphs (only used for models whose input shapes are all fixed).")
    io_binding: bool = setting(True, "Use IO binding on CUDA (outputs bound to host memory).")
    intra_op_threads: int = setting(1, "ONNX Runtime intra-op threads per session (0 = ORT default: all cores).")
    inter_op_threads: int = setting(1, "ONNX Runtime inter-op threads per session (0 = ORT default).")
    graph_optimization: str = setting("all", "Graph optimization level: disable, basic, extended, all.")
    instances: int = setting(2, "Sessions (instances) per model version, each run by its own thread.")
    warmup_runs: int = setting(2, "Runs on zeros per instance before a new version takes traffic.")

    # Dynamic batching.
    batching: bool = setting(True, "Stack compatible queued requests into one run (dynamic batching).")
    max_batch_size: int = setting(32, "Largest batch (in rows along the batch axis) one run takes.")
    preferred_batch_sizes: list[int] = setting([], "Batch sizes a run prefers when more is queued (e.g. 8,16,32).")
    max_queue_delay_us: int = setting(
        0,
        "Microseconds an idle instance may wait to fill a preferred batch; 0 = never (a lone request runs at once).",
    )
    queue_limit: int = setting(1024, "Requests queued per model version before new ones get RESOURCE_EXHAUSTED.")
    inline_run_below_us: int = setting(
        200,
        "Run a model's batches on the event loop, skipping the instance threads, while a run takes less than "
        "this many microseconds (measured); 0 = always use the instance threads.",
    )
    trace_batch_spans: bool = setting(
        False,
        "Trace each batch as its own spans (inference.batch, inference.queue_wait, inference.ort_run); off, each "
        "sampled request's span carries the queue wait, batch size and run time as attributes instead.",
    )
    cancel_checks: bool = setting(
        True,
        "Skip queued requests whose caller cancelled, and stop (RunOptions.terminate) runs whose requests all "
        "went away or expired; off = run every queued request.",
    )
    stream_max_in_flight: int = setting(
        16, "Requests of one ModelStreamInfer stream being worked on or awaiting their reply; reading pauses there."
    )
    max_elements: int = setting(64 * 1024 * 1024, "Most tensor elements one request may carry.")
    gil_switch_interval_us: int = setting(
        1000,
        "Python's GIL switch interval in microseconds (Python's own is 5000): shorter lets an instance thread "
        "get the GIL back from a busy event loop sooner after each ONNX Runtime run; 0 keeps Python's default.",
    )
    drain_seconds: float = setting(30.0, "How long a replaced version may take to finish its queued requests.")
    usage_metering: bool = setting(
        True, "Count requests, rows and compute seconds per caller and model (Prometheus; the registry's usage)."
    )
    usage_flush_seconds: float = setting(10.0, "How often counted usage is sent to the registry (in the background).")
    monitoring: bool = setting(
        True, "Score input and prediction drift (PSI) of sampled requests against the training reference."
    )
    monitoring_sample_every: int = setting(8, "Keep one request in this many for the drift window.")
    monitoring_window: int = setting(2048, "Rows in each served version's rolling drift window.")
    monitoring_interval_seconds: float = setting(5.0, "How often the drift windows are scored (Prometheus, history).")

    # Worker processes (inference/supervisor.py).
    workers: str = setting(
        "1",
        "Inference processes sharing the port (SO_REUSEPORT), each with its own sessions and intra-op threads "
        "divided among them; 'auto' = usable cores (CPU affinity, cgroup quota). Metrics: metrics_port + index.",
    )
    reuse_port: bool = setting(False, "Bind the port with SO_REUSEPORT (the supervisor sets it for each worker).")
