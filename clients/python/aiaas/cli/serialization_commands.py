"""`aiaas export`, `aiaas import` and `aiaas exports ls|show|watch|cancel` (the serialization service)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from aiaas.cli._common import (
    EXIT_NOT_ACCEPTED,
    EXIT_OK,
    EXIT_REFUSED,
    ProgressBar,
    add_connection_flags,
    add_job_actions,
    open_channel,
    print_json,
    print_table,
    run_command,
)
from aiaas.client.serialization import (
    CALIBRATION_METHODS,
    HF_TASKS,
    ONNX_TASKS,
    PROOF_HEADERS,
    TERMINAL_STATES,
    SerializationClient,
    export_options,
    parse_tolerance,
    proof_rows,
)
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb


def register(subparsers: Any) -> None:
    """Add the serialization commands."""
    export = subparsers.add_parser(
        "export", help="export a checkpoint (or ONNX model) to ONNX variants and print their proof"
    )
    export.add_argument("source", help="MODEL:VERSION or MODEL@ALIAS")
    export.add_argument("--variants", default="fp32", help="comma list of fp32, fp16, int8-dynamic, int8-static")
    export.add_argument("--opset", type=int, default=0, help="ONNX opset (default: the service's, 18)")
    export.add_argument(
        "--calibration", choices=sorted(CALIBRATION_METHODS), default="minmax", help="int8-static method"
    )
    export.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    export.add_argument("--calibration-samples", type=int, default=0, help="calibration samples (0 = service default)")
    export.add_argument(
        "--calibration-data", default=None, help="MODEL:VERSION of an .npz: one array per model input (and y)"
    )
    export.add_argument("--calibration-artifact", default="", help="artifact name in --calibration-data")
    export.add_argument("--prune", type=float, default=0.0, help="magnitude-prune weights to this sparsity first")
    export.add_argument(
        "--prune-neurons",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="remove this fraction (0..0.9) of each hidden layer's units (mlp/cnn checkpoints); proven vs the original",
    )
    export.add_argument("--reduce-range", action="store_true", help="7-bit INT8 weights (CPUs without VNNI)")
    export.add_argument(
        "--fixed-quantization",
        action="store_true",
        help="INT8 with exactly --per-channel/--reduce-range/--calibration/--keep-fp32 (default: search for the "
        "fastest setting that passes the proof)",
    )
    export.add_argument(
        "--keep-fp32",
        default="",
        choices=["", "none", "sensitive", "sensitive+ffn-out", "sensitive+ffn"],
        help="with --fixed-quantization: what stays FP32 (sensitive = LayerNorm, Softmax, embeddings ...)",
    )
    export.add_argument(
        "--tolerance", action="append", default=[], help="VARIANT:max_abs=X,max_drop=Y,min_top1=Z (repeatable)"
    )
    export.add_argument("--alias", default="", help="point this alias at the best accepted CPU variant")
    export.add_argument("--target-model", default="", help="register variants under this model (default SOURCE-onnx)")
    export.add_argument("--no-wait", action="store_true", help="print the job id and return")
    add_connection_flags(export, "serialization")
    export.set_defaults(func=export_command)

    imp = subparsers.add_parser(
        "import",
        help="upload an ONNX file (registered as fp32) or a Hugging Face folder (registered as an HF checkpoint)",
    )
    imp.add_argument(
        "path", type=Path, help="model.onnx (self-contained), or a folder: config.json, *.safetensors, vocab.txt"
    )
    imp.add_argument("--name", required=True, help="registry model to register under")
    imp.add_argument(
        "--task",
        default="",
        choices=["", *ONNX_TASKS, *HF_TASKS],
        help="ONNX: for later proofs; folder: embedding (default) or sequence-classification",
    )
    imp.add_argument("--description", default="")
    imp.add_argument("--tag", action="append", default=[], help="KEY=VALUE (repeatable)")
    imp.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="ONNX: .npz of representative inputs (one array per input name); folder: a text file of "
        "representative sentences (one per line, or JSON lines with a text field): registers reference statistics "
        "so `aiaas monitor` can score drift",
    )
    add_connection_flags(imp, "serialization")
    imp.set_defaults(func=import_command)

    jobs = subparsers.add_parser("exports", help="export jobs: ls, show, watch, cancel")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("ls", help="list export jobs, newest first")
    ls.add_argument("--state", default="", help="queued, running, succeeded, failed or cancelled")
    add_connection_flags(ls, "serialization")
    ls.set_defaults(func=list_command)
    add_job_actions(
        actions,
        "serialization",
        (
            ("show", show_command, "a job and its proof table"),
            ("watch", watch_command, "follow a job until it ends"),
            ("cancel", cancel_command, "cancel a queued or running job"),
        ),
    )


def _client(args: argparse.Namespace) -> SerializationClient:
    return SerializationClient(open_channel(args), timeout=args.timeout)


def _state(job: pb.ExportJob) -> str:
    return common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")


def _follow(client: SerializationClient, job: pb.ExportJob, quiet: bool) -> pb.ExportJob:
    """Stream events to stderr with a progress bar over the variants; returns the final job."""
    total = max(1, len(job.options.variants) or 1)
    bar = ProgressBar(total, label=f"export {job.job_id[:8]}")
    done = 0
    for event in client.watch(job.job_id):
        kind = event.WhichOneof("event")
        if kind == "variant":
            done += 1
            verdict = "accepted" if event.variant.accepted else f"REJECTED ({event.variant.reason})"
            line = f"{event.variant.variant}: {verdict}"
        else:
            line = event.message or event.state_changed
        if bar.enabled:
            bar.update(done, line[:60])
        elif not quiet:
            print(f"[{event.sequence}] {line}", file=sys.stderr)
    bar.close()
    return client.get_job(job.job_id)


def _print_job(job: pb.ExportJob) -> None:
    print(f"job {job.job_id}: {_state(job)}  {job.source.model_name}:{job.source.version} -> {job.target_model_name}")
    if job.failure_reason:
        print(f"reason: {job.failure_reason}")
    if job.reports:
        print_table(PROOF_HEADERS, proof_rows(job))
        for report in job.reports:
            if report.candidates:
                _print_candidates(report)
            if report.reason:
                print(f"{report.variant} {'failed' if report.failed else 'rejected'}: {report.reason}")


def _print_candidates(report: pb.VariantReport) -> None:
    """The INT8 search's table: each setting tried, whether it passed, and why it lost."""
    print(f"{report.variant} search ({len(report.candidates)} settings tried):")
    keys = ("per_channel", "reduce_range", "keep_fp32", "calibration_method")
    rows = [
        [
            *(c.settings.get(k, "-") for k in keys),
            "pass" if c.passed else "fail",
            f"{c.worst_row_cosine:.4f}",
            f"{c.latency_ms_batch32:.2f}",
            c.reason or "chosen",
        ]
        for c in report.candidates
    ]
    print_table([*keys, "proof", "worst_cos", "b32_ms", "outcome"], rows)


def _exit_for(job: pb.ExportJob) -> int:
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        print(f"error: {_state(job)}: {job.failure_reason or 'the export did not finish'}", file=sys.stderr)
        return EXIT_REFUSED
    refused = [r for r in job.reports if not r.accepted]
    if refused:
        for r in refused:
            print(f"error: {r.variant} {'FAILED' if r.failed else 'REJECTED'}: {r.reason}", file=sys.stderr)
        return EXIT_NOT_ACCEPTED
    return EXIT_OK


@run_command
def export_command(args: argparse.Namespace) -> int:
    """Start an export, follow it, print the proof table."""
    tolerances = dict(parse_tolerance(text) for text in args.tolerance)
    options = export_options(
        [v.strip() for v in args.variants.split(",") if v.strip()],
        opset=args.opset,
        method=args.calibration,
        per_channel=args.per_channel,
        calibration_samples=args.calibration_samples,
        calibration_data=args.calibration_data,
        calibration_artifact=args.calibration_artifact,
        pruning_sparsity=args.prune,
        reduce_range=args.reduce_range,
        tolerances=tolerances,
        set_alias=args.alias,
        fixed_quantization=args.fixed_quantization,
        keep_fp32=args.keep_fp32,
        structured_pruning=args.prune_neurons,
    )
    client = _client(args)
    job = client.start_export(args.source, options=options, target_model_name=args.target_model)
    if args.no_wait:
        print_json(job) if args.json else print(job.job_id)
        return EXIT_OK
    job = _follow(client, job, quiet=args.json)
    print_json(job) if args.json else _print_job(job)
    return _exit_for(job)


@run_command
def import_command(args: argparse.Namespace) -> int:
    """Upload, validate and register an ONNX file."""
    tags = dict(tag.split("=", 1) for tag in args.tag if "=" in tag)
    if len(tags) != len(args.tag):
        raise ValueError("--tag takes KEY=VALUE")
    if args.path.is_dir():
        if args.calibration is not None and args.calibration.suffix == ".npz":
            raise ValueError("a Hugging Face folder's --calibration is a text file of sentences, not an .npz")
        if args.task and args.task not in HF_TASKS:
            raise ValueError(f"a Hugging Face folder takes --task {' or '.join(HF_TASKS)}, got {args.task!r}")
        response = _client(args).import_hf_folder(
            args.path, args.name, args.task or HF_TASKS[0], args.description, tags, calibration=args.calibration
        )
        kind = "Hugging Face checkpoint"
    else:
        if args.task in HF_TASKS:
            raise ValueError(f"--task {args.task} needs a Hugging Face folder, not a file")
        response = _client(args).import_file(
            args.path, args.name, args.description, tags, args.task, calibration=args.calibration
        )
        kind = f"fp32, opset {response.opset}"
    if args.json:
        print_json(response)
        return EXIT_OK
    ref = response.registered
    print(f"registered {ref.model_name}:{ref.version} ({kind})")
    if response.reference_rows:
        print(f"  reference.json: drift reference statistics from {response.reference_rows} calibration rows")
    for kind, tensors in (("input", response.signature.inputs), ("output", response.signature.outputs)):
        for t in tensors:
            print(f"  {kind} {t.name}: {t.datatype} {list(t.shape)}")
    return EXIT_OK


@run_command
def list_command(args: argparse.Namespace) -> int:
    state = 0
    if args.state:
        name = f"JOB_STATE_{args.state.upper()}"
        if name not in common_pb2.JobState.DESCRIPTOR.values_by_name:
            raise ValueError(f"--state must be queued, running, succeeded, failed or cancelled, got {args.state!r}")
        state = common_pb2.JobState.Value(name)
    jobs = _client(args).list_jobs(state)
    if args.json:
        print_json(jobs)
        return EXIT_OK
    rows = [
        [j.job_id, _state(j), f"{j.source.model_name}:{j.source.version}", ",".join(j.options.variants), len(j.reports)]
        for j in jobs
    ]
    print_table(["job", "state", "source", "variants", "reports"], rows)
    return EXIT_OK


@run_command
def show_command(args: argparse.Namespace) -> int:
    job = _client(args).get_job(args.job_id)
    print_json(job) if args.json else _print_job(job)
    return EXIT_OK


@run_command
def watch_command(args: argparse.Namespace) -> int:
    client = _client(args)
    job = client.get_job(args.job_id)
    if job.state not in TERMINAL_STATES or not args.json:
        job = _follow(client, job, quiet=args.json)
    print_json(job) if args.json else _print_job(job)
    return _exit_for(job)


@run_command
def cancel_command(args: argparse.Namespace) -> int:
    job = _client(args).cancel(args.job_id)
    print_json(job) if args.json else print(f"job {job.job_id}: {_state(job)}")
    return EXIT_OK
