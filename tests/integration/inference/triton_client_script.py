"""Runs inside .venv-triton (NVIDIA's tritonclient, protobuf < 7): drives our server as a Triton user would.

Usage: python triton_client_script.py HOST:PORT  -> prints one JSON object of findings.
"""

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main(url: str) -> dict:
    client = grpcclient.InferenceServerClient(url=url)
    found = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("mlp"),
        "server_name": client.get_server_metadata().name,
        "platform": client.get_model_metadata("mlp").platform,
        "max_batch_size": client.get_model_config("mlp").config.max_batch_size,
        "index": sorted(m.name for m in client.get_model_repository_index().models),
    }
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("mlp", [inp], outputs=[grpcclient.InferRequestedOutput("output")], request_id="t-1")
    found["mlp_output"] = result.as_numpy("output").tolist()
    found["mlp_id"] = result.get_response().id
    found["mlp_input"] = x.tolist()

    words = np.array([[b"alpha", b"beta"], [b"gamma", b""]], dtype=np.object_)
    inp = grpcclient.InferInput("input", [2, 2], "BYTES")
    inp.set_data_from_numpy(words)
    found["bytes"] = [[v.decode() for v in row] for row in client.infer("bytes", [inp]).as_numpy("output")]

    half = np.array([[1.0, -2.5, 0.25, 8.0]], dtype=np.float16)
    inp = grpcclient.InferInput("input", [1, 4], "FP16")
    inp.set_data_from_numpy(half)
    found["fp16"] = client.infer("fp16", [inp]).as_numpy("output").astype(float).tolist()

    import ml_dtypes  # BF16 tensors are ml_dtypes.bfloat16 arrays for tritonclient; bits travel as uint16

    brain = np.random.default_rng(2).standard_normal((3, 64)).astype(ml_dtypes.bfloat16)
    inp = grpcclient.InferInput("input", list(brain.shape), "BF16")
    inp.set_data_from_numpy(brain)
    answer = client.infer("bf16", [inp]).as_numpy("output")
    found["bf16_input"] = brain.view(np.uint16).tolist()
    found["bf16"] = [str(answer.dtype), answer.view(np.uint16).tolist()]

    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i in range(5):
        inp = grpcclient.InferInput("input", [1, 64], "FP32")
        inp.set_data_from_numpy(np.full((1, 64), i, np.float32))
        client.async_stream_infer("mlp", [inp], request_id=f"stream-{i}")
    ids = []
    for _ in range(5):
        result, error = answers.get(timeout=30)
        ids.append(error.message() if error else result.get_response().id)
    client.stop_stream()
    found["stream_ids"] = sorted(ids)

    try:
        client.infer("missing-model", [inp])
        found["missing"] = "no error"
    except InferenceServerException as exc:
        found["missing"] = exc.status()
    stats = client.get_inference_statistics("mlp")
    found["stats_success"] = stats.model_stats[0].inference_stats.success.count
    return found


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
