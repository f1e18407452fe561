"""`aiaas train ...` (start a job and follow it with a live progress bar) and `aiaas jobs ls|show|watch|cancel`."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from aiaas.cli._common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ProgressBar,
    add_connection_flags,
    add_job_actions,
    open_channel,
    print_json,
    print_table,
    run_command,
)
from aiaas.cli.training_spec import build_spec
from aiaas.client.training import TrainingClient, state_name
from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2

ARCHITECTURES = ("linear", "mlp", "cnn", "rnn", "transformer", "vae")
MAIN_METRICS = ("accuracy", "r2", "elbo", "loss")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def register(subparsers: Any) -> None:
    """Add `train` and `jobs` to the CLI."""
    train = subparsers.add_parser("train", help="train a model (a training job) and follow its progress")
    add_connection_flags(train, "training")
    train.add_argument("model", nargs="?", help="registry model to register the result under")
    train.add_argument("--spec", help="TrainingSpec as a JSON file; the flags below override its fields")
    arch = train.add_argument_group("architecture")
    arch.add_argument("--arch", choices=ARCHITECTURES, help="network kind (default mlp)")
    arch.add_argument("--hidden", type=_ints, help="hidden widths, e.g. 128,64 (mlp, cnn, vae)")
    arch.add_argument("--activation", choices=("relu", "gelu", "tanh", "sigmoid", "silu"))
    arch.add_argument("--dropout", type=float)
    arch.add_argument("--conv", type=_ints, help="cnn conv channels, e.g. 8,16")
    arch.add_argument("--image", type=_ints, help="cnn image shape channels,height,width (default: square, 1 channel)")
    arch.add_argument("--cell", choices=("rnn", "lstm", "gru"))
    arch.add_argument("--hidden-size", type=int, help="rnn hidden width")
    arch.add_argument("--sequence-length", type=int, help="rnn/transformer steps per sample")
    arch.add_argument("--d-model", type=int)
    arch.add_argument("--heads", type=int)
    arch.add_argument("--layers", type=int)
    arch.add_argument("--latent", type=int, help="vae latent width")
    data = train.add_argument_group("data")
    data.add_argument(
        "--data",
        help="sklearn:NAME (digits, iris, wine, breast_cancer, diabetes) | synthetic:KIND (linear, blobs, "
        "sequences) | registry:MODEL/VERSION/ARTIFACT",
    )
    data.add_argument("--task", choices=("classification", "regression"), help="for registry datasets")
    data.add_argument("--samples", type=int)
    data.add_argument("--features", type=int)
    data.add_argument("--classes", type=int)
    data.add_argument("--noise", type=float)
    data.add_argument("--slope", type=float)
    data.add_argument("--intercept", type=float)
    text = train.add_argument_group(
        "text models (labelled text from --data registry:MODEL/VERSION/data.csv, a CSV with a text,label header "
        "or JSONL; the result is registered as a Hugging Face checkpoint)"
    )
    text.add_argument("--finetune", metavar="BASE", help="fine-tune this registered HF model (MODEL:N or MODEL@ALIAS)")
    text.add_argument(
        "--distill",
        metavar="TEACHER",
        help="distill this registered HF classifier into a small student (MODEL:N|@ALIAS)",
    )
    text.add_argument("--from-scratch", action="store_true", help="train the small student on the labels alone")
    text.add_argument("--text-task", default=None, help="sequence-classification (the default and only task)")
    text.add_argument("--max-length", type=int, help="tokens per text; longer texts are truncated (128 / 64)")
    text.add_argument("--freeze-encoder", action="store_true", help="fine-tune: train the classification head only")
    text.add_argument("--temperature", type=float, help="distill: temperature of the soft targets (2.0)")
    text.add_argument("--alpha", type=float, help="distill: weight of the soft-target loss in (0, 1] (0.7)")
    text.add_argument("--student-vocab", type=int, help="student: WordPiece vocabulary size (2000)")
    text.add_argument("--student-hidden", type=int, help="student: width (64)")
    text.add_argument("--student-layers", type=int, help="student: layers (2)")
    text.add_argument("--student-heads", type=int, help="student: attention heads (2)")
    opt = train.add_argument_group("training")
    opt.add_argument("--epochs", type=int)
    opt.add_argument("--batch-size", type=int)
    opt.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    opt.add_argument("--lr", type=float, help="learning rate")
    opt.add_argument("--schedule", choices=("constant", "step", "cosine"))
    opt.add_argument("--momentum", type=float)
    opt.add_argument("--weight-decay", type=float)
    opt.add_argument("--l1", type=float, help="L1 penalty")
    opt.add_argument("--clip", type=float, help="gradient norm clip")
    opt.add_argument("--early-stop", help="METRIC[:PATIENCE], e.g. loss:3")
    opt.add_argument("--seed", type=int)
    opt.add_argument("--device", help="cpu, cuda or auto")
    opt.add_argument("--world-size", type=int, help="DDP processes")
    opt.add_argument("--export", help="ONNX variants to make when done, e.g. fp32,int8-dynamic")
    opt.add_argument("--alias", help="with --export: point this alias (e.g. production) at the best proven variant")
    opt.add_argument("--tag", action="append", default=[], help="KEY=VALUE label (repeatable)")
    opt.add_argument("--description")
    opt.add_argument("--request-id", default="", help="idempotency key")
    train.add_argument("--detach", action="store_true", help="print the job id and return at once")
    train.set_defaults(func=train_command)

    jobs = subparsers.add_parser("jobs", help="training jobs: ls, show, watch, cancel")
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    ls = actions.add_parser("ls", help="list jobs, newest first")
    add_connection_flags(ls, "training")
    ls.add_argument("--state", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(func=jobs_ls)
    parsers = add_job_actions(
        actions,
        "training",
        (
            ("show", jobs_show, "a job with its history and results"),
            ("watch", jobs_watch, "follow a job's progress until it ends"),
            ("cancel", jobs_cancel, "cancel a queued or running job"),
        ),
    )
    parsers["watch"].add_argument("--after", type=int, default=0, help="only events after this sequence number")


def _main_metric(metrics: Any) -> str:
    name = next((m for m in MAIN_METRICS if m in metrics), "")
    return f"{name} {metrics[name]:.4f}" if name else ""


def follow(client: TrainingClient, job_id: str, total_epochs: int, after: int = 0) -> training_pb2.Job:
    """Render a job's events (a live bar on a terminal, one line per epoch otherwise) until it ends."""
    bar = ProgressBar(total_epochs or 1, label=f"job {job_id[:8]}")
    try:
        for event in client.watch(job_id, after):
            kind = event.WhichOneof("event")
            if kind == "epoch":
                e = event.epoch
                line = (
                    f"epoch {e.epoch}/{total_epochs}  loss {e.train.get('loss', 0.0):.4f}  "
                    f"val {_main_metric(e.validation)}  {e.seconds:.2f}s"
                )
                if bar.enabled:
                    bar.update(e.epoch, line)
                else:
                    print(line, file=sys.stderr)
            elif kind == "message":
                if bar.enabled:
                    bar.close()
                print(f"  {event.message}", file=sys.stderr)
            elif kind == "state_changed" and not bar.enabled:
                print(f"  {state_name(event.state).lower()}: {event.state_changed}", file=sys.stderr)
    except KeyboardInterrupt:
        bar.close()
        print(f"stopped following; the job goes on (aiaas jobs watch {job_id})", file=sys.stderr)
        raise
    bar.close()
    return client.get(job_id)


def _finished(args: argparse.Namespace, job: training_pb2.Job) -> int:
    """A followed job's outcome, as JSON or a summary; EXIT_REFUSED unless it succeeded."""
    if args.json:
        print_json(job)
        return EXIT_OK if job.state == common_pb2.JOB_STATE_SUCCEEDED else EXIT_REFUSED
    return _summary(job)


def _summary(job: training_pb2.Job) -> int:
    """Print how a job ended; exit code 0 only when it succeeded."""
    state = state_name(job.state)
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        print(f"error: {state}: {job.failure_reason or 'no reason recorded'}", file=sys.stderr)
        return EXIT_REFUSED
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in sorted(job.test_metrics.items()))
    print(f"{state}  job {job.job_id}")
    print(f"test: {metrics}")
    print(f"registered: {job.registered.model_name} version {job.registered.version}")
    if job.export_job_id:
        print(f"export job: {job.export_job_id}")
    return EXIT_OK


def _kind(spec: training_pb2.TrainingSpec) -> str:
    """What a job trains, for tables: the architecture, or the text job's kind."""
    if spec.HasField("text"):
        return "finetune" if spec.text.HasField("base") else "distill" if spec.text.HasField("teacher") else "text"
    return spec.architecture.WhichOneof("kind") or ""


@run_command
def train_command(args: argparse.Namespace) -> int:
    """Start a training job; follow it unless --detach."""
    spec = build_spec(args)
    with open_channel(args) as channel:
        client = TrainingClient(channel, timeout=args.timeout)
        job = client.start(spec, args.request_id)
        if args.detach:
            if args.json:
                print_json(job)
            else:
                print(job.job_id)
            return EXIT_OK
        if not args.json:
            print(f"job {job.job_id} queued", file=sys.stderr)
        return _finished(args, follow(client, job.job_id, job.total_epochs))


@run_command
def jobs_ls(args: argparse.Namespace) -> int:
    """List jobs."""
    state = (
        common_pb2.JobState.Value(f"JOB_STATE_{args.state.upper()}") if args.state else common_pb2.JOB_STATE_UNSPECIFIED
    )
    if args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    with open_channel(args) as channel:
        jobs = TrainingClient(channel, timeout=args.timeout).list(state, args.limit)
    if args.json:
        print_json(jobs)
        return EXIT_OK
    rows = []
    for job in jobs:
        created = datetime.datetime.fromtimestamp(job.created_at.seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        registered = f"{job.registered.model_name}:{job.registered.version}" if job.registered.version else ""
        rows.append(
            (
                job.job_id[:12],
                state_name(job.state),
                job.spec.model_name,
                _kind(job.spec),
                f"{job.current_epoch}/{job.total_epochs}",
                _main_metric(job.test_metrics),
                registered,
                created,
            )
        )
    print_table(("JOB", "STATE", "MODEL", "ARCH", "EPOCH", "TEST", "REGISTERED", "CREATED (UTC)"), rows)
    return EXIT_OK


@run_command
def jobs_show(args: argparse.Namespace) -> int:
    """Show one job."""
    with open_channel(args) as channel:
        job = TrainingClient(channel, timeout=args.timeout).get(args.job_id)
    if args.json:
        print_json(job)
        return EXIT_OK
    print(f"job        {job.job_id}")
    print(f"state      {state_name(job.state)}" + (f" ({job.failure_reason})" if job.failure_reason else ""))
    print(f"model      {job.spec.model_name} ({_kind(job.spec)})")
    print(f"epoch      {job.current_epoch}/{job.total_epochs}  device {job.device or '-'}")
    if job.registered.version:
        print(f"registered {job.registered.model_name} version {job.registered.version}")
    if job.export_job_id:
        print(f"export     {job.export_job_id}")
    if job.dataset_digest:
        print(f"dataset    {job.dataset_digest}")
    if job.trace_id:
        print(f"trace      {job.trace_id}")
    if job.test_metrics:
        print("test       " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(job.test_metrics.items())))
    if job.history:
        print()
        print_table(
            ("EPOCH", "TRAIN LOSS", "VAL", "LR", "SECONDS"),
            [
                (
                    h.epoch,
                    f"{h.train.get('loss', 0.0):.4f}",
                    _main_metric(h.validation),
                    f"{h.learning_rate:.2e}",
                    f"{h.seconds:.2f}",
                )
                for h in job.history
            ],
        )
    return EXIT_OK


@run_command
def jobs_watch(args: argparse.Namespace) -> int:
    """Follow a job until it ends."""
    with open_channel(args) as channel:
        client = TrainingClient(channel, timeout=args.timeout)
        job = client.get(args.job_id)
        job = follow(client, job.job_id, job.total_epochs, args.after)
    return _finished(args, job)


@run_command
def jobs_cancel(args: argparse.Namespace) -> int:
    """Cancel a job."""
    with open_channel(args) as channel:
        job = TrainingClient(channel, timeout=args.timeout).cancel(args.job_id)
    if args.json:
        print_json(job)
    else:
        print(f"{job.job_id}  {state_name(job.state)}" + (f"  ({job.failure_reason})" if job.failure_reason else ""))
    return EXIT_OK
