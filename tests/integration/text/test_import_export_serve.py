"""MiniLM end to end: import the packaged HF folder, export it with the tokenizer in the graph, prove the
variants (plain per-tensor INT8 must be REJECTED), serve it, and send strings.

The served FP32 embedding of fixed sentences is checked against transformers' own output (cosine
>= 0.999), computed here in-process from the same folder.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from aiaas.client.inference import SyncInferenceClient
from aiaas.client.registry import SyncRegistryClient
from aiaas.client.serialization import SerializationClient, import_requests
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.wire import HF, READY, REJECTED
from tests.integration.text.conftest import MODEL, SERVED, minilm_folder

# The session's fixtures import, fine-tune and export MiniLM once; the first test here may wait for them.
pytestmark = pytest.mark.timeout(1500)

SENTENCES = ["Hello, world!", "A man is playing a guitar.", "The stock market fell today.", "Café au lait ☕"]


def transformers_embedding(texts: list[str], max_length: int = 256) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    folder = str(minilm_folder())
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def wait_ready(client: SyncInferenceClient, model: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if client.ready(model):
                return
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{model} did not become ready")


def test_import_registers_an_hf_checkpoint(imported: pb.ImportModelResponse, text_registry: SyncRegistryClient) -> None:
    version = text_registry.get_version((MODEL, imported.registered.version))
    assert version.status == READY and version.format == HF
    names = {a.name for a in version.artifacts}
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json"} <= names
    assert "README.md" not in names  # not needed: skipped and said so in the tags
    assert "README.md" in version.tags["skipped_files"]
    assert version.tags["task"] == "embedding" and version.tags["model_type"] == "bert"
    assert [(t.name, t.datatype, list(t.shape)) for t in imported.signature.inputs] == [("text", "BYTES", [-1])]
    assert [(t.name, list(t.shape)) for t in imported.signature.outputs] == [("embedding", [-1, 384])]
    assert version.lineage.export_settings["upload_sha256"]


def test_variants_are_proven_and_plain_int8_is_rejected(
    exported: pb.ExportJob, text_registry: SyncRegistryClient
) -> None:
    assert exported.state == common_pb2.JOB_STATE_SUCCEEDED, exported.failure_reason
    reports = {r.variant: r for r in exported.reports}
    assert set(reports) == {"fp32", "fp16", "int8-dynamic"}
    assert reports["fp32"].accepted and reports["fp32"].cosine_similarity >= 0.999
    assert reports["fp16"].accepted and reports["fp16"].cosine_similarity >= 0.995
    # per-tensor dynamic INT8 of a BERT encoder loses too much: the gate must catch it, not ship it
    assert not reports["int8-dynamic"].accepted and "cosine" in reports["int8-dynamic"].reason
    int8 = text_registry.get_version((SERVED, reports["int8-dynamic"].registered.version))
    assert int8.status == REJECTED
    fp32 = text_registry.get_version((SERVED, reports["fp32"].registered.version))
    assert fp32.status == READY and "production" in fp32.aliases
    assert fp32.lineage.parent_model_name == MODEL and fp32.tags["task"] == "embedding"


def test_served_embedding_matches_transformers(text_infer: SyncInferenceClient) -> None:
    wait_ready(text_infer, SERVED)
    result = text_infer.infer_text(SERVED, SENTENCES)
    served = result.outputs["embedding"]
    expected = transformers_embedding(SENTENCES)
    assert served.shape == (len(SENTENCES), 384)
    cosines = (served * expected).sum(1) / (np.linalg.norm(served, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosines.min() >= 0.999, cosines
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-4)
    # similar sentences are closer than unrelated ones (the model is the real one, not noise)
    assert float(served[0] @ served[1]) < 0.5


def test_edge_strings(text_infer: SyncInferenceClient) -> None:
    wait_ready(text_infer, SERVED)
    long = "word " * 1000  # far past max_length=256 tokens: truncated as transformers truncates
    texts = ["", long]
    served = text_infer.infer_text(SERVED, texts).outputs["embedding"]
    expected = transformers_embedding(texts)
    assert ((served * expected).sum(1) >= 0.999).all()
    same = text_infer.infer_text(SERVED, ["word " * 300]).outputs["embedding"]
    assert float(same[0] @ served[1]) > 0.9999  # both cut at 256 tokens


def test_bad_text_requests(text_infer: SyncInferenceClient) -> None:
    wait_ready(text_infer, SERVED)
    bad = np.empty(1, dtype=object)
    bad[0] = b"\xff\xfe not utf-8"
    with pytest.raises(grpc.RpcError) as error:
        text_infer.infer(SERVED, {"text": bad})
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        text_infer.infer_text(SERVED, ["hi"] * 100_000)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "split" in error.value.details()
    assert text_infer.infer_text(SERVED, ["still serving"]).outputs["embedding"].shape == (1, 384)


def _tar(files: dict[str, bytes], link: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("pickle", "pickled checkpoint"),
        ("unsupported", "unsupported architecture GPT2LMHeadModel"),
        ("symlink", "not a regular file"),
        ("traversal", "not a plain top-level file name"),
        ("no-weights", "no *.safetensors"),
        ("classifier-without-head", "ForSequenceClassification"),
    ],
)
def test_hostile_folders_are_refused_and_nothing_is_registered(
    text_client: SerializationClient, text_registry: SyncRegistryClient, tmp_path: Path, case: str, words: str
) -> None:
    folder = minilm_folder()
    config = json.loads((folder / "config.json").read_text())
    files = {
        "config.json": json.dumps(config).encode(),
        "vocab.txt": (folder / "vocab.txt").read_bytes(),
        "model.safetensors": b"",  # replaced below when needed
    }
    from safetensors.numpy import save

    files["model.safetensors"] = save({"w": np.zeros(2, np.float32)})
    link, task = "", "embedding"
    if case == "pickle":
        files["pytorch_model.bin"] = b"\x80\x04\x95 pickle"
    elif case == "unsupported":
        files["config.json"] = json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}).encode()
    elif case == "symlink":
        link = "tokenizer.json"
    elif case == "traversal":
        files["../escape.txt"] = b"x"
    elif case == "no-weights":
        del files["model.safetensors"]
    else:
        task = "sequence-classification"
    archive = tmp_path / "folder.tar"
    archive.write_bytes(_tar(files, link))
    name = f"hostile-text-{case}"
    with pytest.raises(grpc.RpcError) as error:
        text_client.stub.ImportModel(import_requests(archive, name, task=task, format="hf"), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert words in error.value.details()
    with pytest.raises(grpc.RpcError) as missing:
        text_registry.get_model(name)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_text_export_refuses_what_it_cannot_make(
    text_client: SerializationClient, imported: pb.ImportModelResponse
) -> None:
    source = (MODEL, imported.registered.version)
    refused = ((common_pb2.ExportOptions(variants=["fp32"], pruning_sparsity=0.5), "pruning is not offered"),)
    for options, words in refused:
        with pytest.raises(grpc.RpcError) as error:
            text_client.start_export(source, options=options)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in error.value.details()
