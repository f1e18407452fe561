"""Call the inference service with the raw generated stubs only (no aiaas client helpers).

    python clients/python/examples/raw_stubs_infer.py --target 127.0.0.1:8001 --model digits-mlp-onnx

Any language works the same way: generate stubs from protos/aiaas/oip/v2/grpc_service.proto (package
`inference`, the Open Inference Protocol) and send raw little-endian tensors.
"""

from __future__ import annotations

import argparse

import grpc
import numpy as np

from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas.oip.v2 import grpc_service_pb2_grpc as pb_grpc


def main() -> None:
    """Send one batch of 4 random digits-shaped rows and print the predicted classes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:8001")
    parser.add_argument("--model", default="digits-mlp-onnx")
    args = parser.parse_args()

    rows = np.random.default_rng(0).uniform(0, 16, size=(4, 64)).astype("<f4")
    request = pb.ModelInferRequest(model_name=args.model, id="example-1")
    request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    request.raw_input_contents.append(rows.tobytes())

    with grpc.insecure_channel(args.target) as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)

    output = response.outputs[0]
    logits = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(tuple(output.shape))
    print(f"model {response.model_name} version {response.model_version} id {response.id}")
    print("predicted classes:", logits.argmax(axis=1).tolist())


if __name__ == "__main__":
    main()
