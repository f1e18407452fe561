"""`aiaas monitor MODEL`: drift of a served model's live inputs and predictions against its training data;
`aiaas feedback MODEL --id ID --labels ...`: true labels of an earlier request, for live accuracy.

``monitor`` reads ``GetDrift`` from the inference service: a summary line, a sparkline of the largest feature PSI over
the recent scorings, and a table of the most drifted features. PSI above the threshold (0.2) with enough
sampled rows means the inputs no longer look like the training data. A text model's features are the lengths
of its texts (characters, words), listed by name.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from aiaas.cli._common import EXIT_OK, add_connection_flags, open_channel, print_json, print_table, run_command

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], ceiling: float = 0.0) -> str:
    """One character per value, scaled to the larger of the values' maximum and ``ceiling``."""
    if not values:
        return ""
    top = max(max(values), ceiling, 1e-12)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in values)


@run_command
def monitor(args: argparse.Namespace) -> int:
    """Print the drift report of one model."""
    from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc

    request = monitoring_pb2.GetDriftRequest(model_name=args.model, version=args.version)
    with open_channel(args) as channel:
        report = monitoring_pb2_grpc.MonitoringServiceStub(channel).GetDrift(request, timeout=args.timeout)
    if args.json:
        print_json(report)
        return EXIT_OK
    if not report.reference:
        print(f"{report.model_name}:{report.version}: {report.window_rows} rows sampled, but no reference statistics")
        print(
            "(train with this service, import with --calibration, or put reference.json beside the model or in "
            "its registry version)"
        )
        return EXIT_OK
    state = "DRIFTED" if report.drifted else "ok"
    if report.window_rows < report.min_rows:
        state = f"warming up ({report.window_rows}/{report.min_rows} rows)"
    prediction = f"{report.prediction_psi:.3f}" if report.HasField("prediction_psi") else "n/a"
    print(
        f"{report.model_name}:{report.version}  {state}  max PSI {report.max_psi:.3f}  prediction PSI {prediction}"
        f"  threshold {report.threshold:g}  window {report.window_rows} rows"
        + (f" ({report.windows} workers)" if report.windows > 1 else "")
    )
    if report.history:
        print(f"max PSI history  {sparkline(report.history, report.threshold)}  (latest {report.history[-1]:.3f})")
    rows: list[list[Any]] = [
        [f.name or f.index, f"{f.psi:.3f}", "drifted" if f.psi > report.threshold else ""]
        for f in report.features[: args.top]
    ]
    print_table(["feature", "psi", ""], rows)
    print(f"reference: {report.reference}")
    if report.HasField("live_accuracy"):
        print(f"live accuracy {report.live_accuracy:.3f} over {report.feedback_rows} labelled rows")
    return EXIT_OK


@run_command
def feedback(args: argparse.Namespace) -> int:
    """Send the true labels of an earlier request's rows."""
    from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc

    try:
        labels = [int(label) for label in args.labels.split(",")]
    except ValueError:
        raise ValueError(f"--labels {args.labels!r}: give class numbers separated by commas, e.g. 3,0,7") from None
    request = monitoring_pb2.RecordFeedbackRequest(model_name=args.model, request_id=args.id, labels=labels)
    with open_channel(args) as channel:
        reply = monitoring_pb2_grpc.MonitoringServiceStub(channel).RecordFeedback(request, timeout=args.timeout)
    if args.json:
        print_json(reply)
        return EXIT_OK
    print(
        f"{args.model}:{reply.version}: {reply.correct_rows}/{len(labels)} right; live accuracy "
        f"{reply.live_accuracy:.3f} over {reply.feedback_rows} rows"
    )
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add `aiaas monitor`."""
    parser = subparsers.add_parser("monitor", help="drift of a served model's inputs and predictions (PSI)")
    add_connection_flags(parser, "inference")
    parser.add_argument("model", help="served model name")
    parser.add_argument("--version", default="", help="served version (default: the newest observed)")
    parser.add_argument("--top", type=int, default=10, help="features to list, most drifted first")
    parser.set_defaults(func=monitor)

    parser = subparsers.add_parser("feedback", help="true labels of an earlier inference request (live accuracy)")
    add_connection_flags(parser, "inference")
    parser.add_argument("model", help="served model name")
    parser.add_argument("--id", required=True, help="the id the inference request carried")
    parser.add_argument("--labels", required=True, help="true class of each row, comma-separated (e.g. 3,0,7)")
    parser.set_defaults(func=feedback)
