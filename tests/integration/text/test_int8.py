"""Static INT8 of a text model (the packaged MiniLM): only the encoder is quantized, calibrated on
sentences held out from the proof (the user's own here), and proven on strings like every variant (READY
or REJECTED with the reason); a bad fixed setting is REJECTED by the gate; bad calibration uploads are
refused before a job is queued."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest

from aiaas.client.registry import DATASET, SyncRegistryClient
from aiaas.client.serialization import SerializationClient
from aiaas.common.v1 import common_pb2
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.wire import READY, REJECTED
from aiaas_services.serialization.pipeline import run
from aiaas_services.serialization.pipeline.variants import QuantizationSettings
from aiaas_services.serialization.text import calibration, job, prove
from aiaas_services.serialization.text import encoder as cut
from aiaas_services.textmodel import graph
from tests.integration.text.conftest import MODEL, minilm_folder

pytestmark = pytest.mark.timeout(1500)

# The search's closest static setting for MiniLM on an AVX2 CPU, as a fixed request: per-channel weights,
# the sensitive ops and the feed-forward MatMuls around GELU kept FP32 (see quantize.candidates).
KEEP_FP32 = "sensitive+ffn"


def _export(
    client: SerializationClient, source: tuple[str, int], options: common_pb2.ExportOptions, target: str
) -> pb.ExportJob:
    started = client.start_export(source, options=options, target_model_name=target)
    for _ in client.watch(started.job_id):
        pass
    return client.get_job(started.job_id)


def _push_sentences(registry: SyncRegistryClient, tmp_path: Path, name: str, payload: bytes) -> common_pb2.VersionRef:
    path = tmp_path / "sentences.txt"
    path.write_bytes(payload)
    data = registry.push(name, {"sentences.txt": path}, format=DATASET)
    return common_pb2.VersionRef(model_name=data.model_name, version=data.version)


def test_static_int8_calibrated_on_the_users_sentences_is_proven(
    text_client: SerializationClient,
    text_registry: SyncRegistryClient,
    imported: pb.ImportModelResponse,
    tmp_path: Path,
) -> None:
    lines = calibration.CALIBRATION_SENTENCES[:48]
    data = _push_sentences(text_registry, tmp_path, "minilm-calibration", "\n".join(lines).encode())
    options = common_pb2.ExportOptions(variants=["int8-static"], fixed_quantization=True, keep_fp32=KEEP_FP32)
    options.calibration.per_channel = True
    options.calibration.method = common_pb2.CALIBRATION_METHOD_MINMAX
    options.calibration.calibration_data.CopyFrom(data)
    done = _export(text_client, (MODEL, imported.registered.version), options, "minilm-static")
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.failure_reason
    (report,) = done.reports
    assert not report.failed, report.reason
    # READY or REJECTED is the CPU's call (INT8 kernels differ with and without VNNI); either way it is the gate's
    assert report.limits["min_worst_row_cosine"] == 0.98 and report.limits["min_p1_cosine"] == 0.99
    passed = report.worst_row_cosine >= 0.98 and report.p1_cosine >= 0.99
    assert report.accepted == passed, report.reason
    if not passed:
        assert "cosine" in report.reason, report.reason
    assert 0.9 < report.worst_row_cosine < 1.0  # calibrated on real sentences: close, not ruined
    assert report.settings["calibration_data"] == f"sentences.txt ({len(lines)} sentences)"
    assert report.settings["format"] == "QDQ" and report.settings["per_channel"] == "true"
    assert report.settings["quantized_part"].startswith("encoder")
    version = text_registry.get_version(("minilm-static", report.registered.version))
    assert version.status == (READY if passed else REJECTED)


@pytest.mark.parametrize(
    ("payload", "words"),
    [(b"", "holds no sentences"), (b"\n \n", "holds no sentences"), (b"ok\n\xff\xfe\n", "is not UTF-8")],
)
def test_bad_calibration_sentences_are_refused_up_front(
    text_client: SerializationClient,
    text_registry: SyncRegistryClient,
    imported: pb.ImportModelResponse,
    tmp_path: Path,
    payload: bytes,
    words: str,
) -> None:
    data = _push_sentences(text_registry, tmp_path, f"bad-sentences-{len(payload)}", payload)
    options = common_pb2.ExportOptions(variants=["int8-static"])
    options.calibration.calibration_data.CopyFrom(data)
    with pytest.raises(grpc.RpcError) as error:
        text_client.start_export((MODEL, imported.registered.version), options=options)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.value.details() and "sentences.txt" in error.value.details()


@dataclasses.dataclass(frozen=True)
class TextGraph:
    model: graph.TextModel
    proof: job.TextProof


@pytest.fixture(scope="module")
def text_graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TextGraph]:
    """MiniLM's string graph made in-process, with transformers' reference on the proof sentences."""
    workdir = tmp_path_factory.mktemp("text-int8")
    folder = job.checked_folder(minilm_folder(), [p.name for p in minilm_folder().iterdir()], "embedding")
    model, proof = job.prepare(folder, "embedding", workdir, lambda _message: None)
    yield TextGraph(model, proof)


def test_the_encoder_is_cut_out_and_put_back_unchanged(text_graph: TextGraph, tmp_path: Path) -> None:
    encoder, rejoined = tmp_path / "encoder.onnx", tmp_path / "rejoined.onnx"
    cut.extract(text_graph.model.path, encoder)
    names = [i.name for i in onnx.load(str(encoder)).graph.input]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
    cut.rejoin(text_graph.model.path, encoder, rejoined)
    texts = list(text_graph.proof.texts)
    before = prove.run_texts(prove.session(text_graph.model.path), texts, "embedding")
    after = prove.run_texts(prove.session(rejoined), texts, "embedding")
    assert np.array_equal(before, after)
    loops = [n for n in onnx.load(str(rejoined)).graph.node if n.op_type == "Loop"]
    assert len(loops) == 1  # the tokenizer is still there, whole


def test_a_bad_fixed_static_setting_is_rejected_by_the_gate(text_graph: TextGraph, tmp_path: Path) -> None:
    """Per-tensor weights, 7-bit range, nothing kept FP32: the gate must catch it and name the sentence."""
    bad = QuantizationSettings(per_channel=False, reduce_range=True, keep_fp32="none", method="minmax")
    options = run.PipelineOptions(variants=("int8-static",), quantization=bad, search_int8=False, latency_repeats=1)
    (result,) = job.make_and_prove(text_graph.model, text_graph.proof, options, tmp_path, {}, lambda _m: None)
    report = result.report
    assert not report.failed and not report.accepted
    assert report.worst_row_cosine < 0.98 and "cosine with transformers' embedding" in report.reason
    assert "(sentence " in report.reason
    assert report.settings["reduce_range"] == "true" and report.settings["per_channel"] == "false"
    assert report.settings["calibration_data"] == calibration.SOURCE
