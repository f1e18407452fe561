"""Runs inside .venv-triton (NVIDIA's tritonclient.http): drives our REST front door as a Triton user would.

Usage: python triton_http_script.py HOST:PORT  -> prints one JSON object of findings.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def infer(client, model, name, array, datatype, binary):
    inp = httpclient.InferInput(name, list(array.shape), datatype)
    inp.set_data_from_numpy(array, binary_data=binary)
    out = httpclient.InferRequestedOutput("output", binary_data=binary)
    return client.infer(model, [inp], outputs=[out], request_id=f"{model}-{binary}")


def main(url: str) -> dict:
    client = httpclient.InferenceServerClient(url=url)
    found = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("mlp"),
        "ghost_ready": client.is_model_ready("ghost"),
        "server_name": client.get_server_metadata()["name"],
        "platform": client.get_model_metadata("mlp")["platform"],
        "max_batch_size": client.get_model_config("mlp")["max_batch_size"],
        "index": sorted(m["name"] for m in client.get_model_repository_index()),
    }
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    found["mlp_input"] = x.tolist()
    for binary in (False, True):
        result = infer(client, "mlp", "input", x, "FP32", binary)
        found[f"mlp_output_{binary}"] = result.as_numpy("output").tolist()
        found[f"mlp_id_{binary}"] = result.get_response()["id"]
    # no outputs named: tritonclient asks for binary_data_output on all
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    found["mlp_output_default"] = client.infer("mlp", [inp]).as_numpy("output").tolist()

    words = np.array([[b"alpha", b"beta"], [b"gamma", b""]], dtype=np.object_)
    for binary in (False, True):
        out = infer(client, "bytes", "input", words, "BYTES", binary).as_numpy("output")
        found[f"bytes_{binary}"] = [[v.decode() if isinstance(v, bytes) else v for v in row] for row in out]

    half = np.array([[1.0, -2.5, 0.25, 8.0]], dtype=np.float16)
    for binary in (False, True):
        found[f"fp16_{binary}"] = (
            infer(client, "fp16", "input", half, "FP16", binary).as_numpy("output").astype(float).tolist()
        )

    # BF16 as ml_dtypes.bfloat16 (tritonclient sends BF16 inputs only as binary data over HTTP); bits as uint16
    import ml_dtypes

    brain = np.random.default_rng(2).standard_normal((3, 64)).astype(ml_dtypes.bfloat16)
    found["bf16_input"] = brain.view(np.uint16).tolist()
    for binary_out in (False, True):
        inp = httpclient.InferInput("input", list(brain.shape), "BF16")
        inp.set_data_from_numpy(brain, binary_data=True)
        out = httpclient.InferRequestedOutput("output", binary_data=binary_out)
        answer = client.infer("bf16", [inp], outputs=[out]).as_numpy("output")
        found[f"bf16_{binary_out}"] = [str(answer.dtype), answer.astype(ml_dtypes.bfloat16).view(np.uint16).tolist()]

    try:
        infer(client, "missing-model", "input", x, "FP32", True)
        found["missing"] = "no error"
    except InferenceServerException as exc:
        found["missing"] = [exc.status(), exc.message()]
    try:
        infer(client, "mlp", "input", np.zeros((2, 63), np.float32), "FP32", True)
        found["bad_shape"] = "no error"
    except InferenceServerException as exc:
        found["bad_shape"] = [exc.status(), exc.message()]
    stats = client.get_inference_statistics("mlp")
    found["stats_success"] = stats["model_stats"][0]["inference_stats"]["success"]["count"]
    return found


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
