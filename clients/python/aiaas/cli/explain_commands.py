"""`aiaas explain MODEL --input x1,x2,...` (or `--text "a sentence"`): which input features (or tokens) made
one prediction, and by how much.

Asks the serialization service (never the inference service): integrated gradients on the PyTorch original,
Kernel SHAP on an imported ONNX model, per-token integrated gradients on a text classifier's checkpoint.
MODEL is ``name``, ``name:VERSION`` or ``name@ALIAS`` (bare name = alias production). Prints the most
important features and checks that the attributions add up to the prediction's difference from the
baseline's.
"""

from __future__ import annotations

import argparse
from typing import Any

from aiaas.cli._common import EXIT_OK, add_connection_flags, open_channel, print_json, print_table, run_command


def parse_ref(text: str) -> Any:
    """A VersionRef from ``name``, ``name:N`` or ``name@alias``."""
    from aiaas.common.v1 import common_pb2

    if "@" in text:
        name, alias = text.split("@", 1)
        return common_pb2.VersionRef(model_name=name, alias=alias)
    name, colon, number = text.rpartition(":")
    if colon and number.isdigit():
        return common_pb2.VersionRef(model_name=name, version=int(number))
    return common_pb2.VersionRef(model_name=text)


def parse_row(text: str, what: str) -> list[float]:
    """Comma-separated numbers."""
    try:
        return [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise ValueError(f"{what}: give numbers separated by commas, e.g. 0,3.5,16") from None


@run_command
def explain(args: argparse.Namespace) -> int:
    """Print the attributions of one prediction."""
    from aiaas.explain.v1 import explain_pb2, explain_pb2_grpc

    if (args.input is None) == (args.text is None):
        raise ValueError("give --input (a row of features) or --text (a sentence), one of them")
    if args.text is not None and args.baseline:
        raise ValueError("--baseline is for --input; a sentence's baseline is its tokens padded")
    request = explain_pb2.ExplainRequest(
        ref=parse_ref(args.model),
        inputs=parse_row(args.input, "--input") if args.input is not None else [],
        method=args.method,
        steps=args.steps,
        baseline=parse_row(args.baseline, "--baseline") if args.baseline else [],
        text=args.text or "",
    )
    if args.output_index is not None:
        request.target = args.output_index
    with open_channel(args) as channel:
        reply = explain_pb2_grpc.ExplanationServiceStub(channel).Explain(request, timeout=args.timeout)
    if args.json:
        print_json(reply)
        return EXIT_OK
    source = f"{reply.explained_model}:{reply.explained_version}"
    print(f"{reply.model_name}:{reply.version}  {reply.method} on {source}  output {reply.target}")
    ranked = sorted(enumerate(reply.attributions), key=lambda item: -abs(item[1]))[: args.top]
    if reply.tokens:
        print_table(["position", "token", "attribution"], [[i, reply.tokens[i], f"{a:+.4f}"] for i, a in ranked])
    else:
        rows = [[i, f"{request.inputs[i]:g}", f"{a:+.4f}"] for i, a in ranked]
        print_table(["feature", "input", "attribution"], rows)
    total = sum(reply.attributions)
    print(
        f"sum of attributions {total:+.4f} = prediction {reply.prediction:.4f} - baseline "
        f"{reply.baseline_prediction:.4f} (error {reply.completeness_error:.2g})"
    )
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add `aiaas explain`."""
    parser = subparsers.add_parser("explain", help="per-feature attributions of one prediction")
    add_connection_flags(parser, "serialization")
    parser.add_argument("model", help="name, name:VERSION or name@ALIAS")
    parser.add_argument("--input", default=None, help="one row of features, comma-separated")
    parser.add_argument("--text", default=None, help="a sentence, for a text classifier (attributions per token)")
    parser.add_argument("--baseline", default="", help="reference row (default all zeros)")
    parser.add_argument(
        "--class", dest="output_index", type=int, default=None, help="output to explain (default: predicted)"
    )
    parser.add_argument("--method", default="", choices=["", "integrated_gradients", "kernel_shap"])
    parser.add_argument("--steps", type=int, default=0, help="IG steps / SHAP coalitions (0 = default)")
    parser.add_argument("--top", type=int, default=10, help="features to list, largest first")
    parser.set_defaults(func=explain)
