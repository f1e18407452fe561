"""Per-token explanations of a text classifier: ``aiaas explain MODEL --text "..."`` asks the serialization
service, which runs integrated gradients through the token embeddings of the Hugging Face checkpoint behind
the served ONNX export (its ``source`` tag). Real registry and serialization processes; the session's
distilled topic classifier (small: cheap to explain)."""

from __future__ import annotations

import grpc
import pytest

from aiaas.cli.main import main as cli
from aiaas.common.v1 import common_pb2
from aiaas.explain.v1 import explain_pb2, explain_pb2_grpc
from aiaas.serialization.v1 import serialization_pb2 as pb
from aiaas.training.v1 import training_pb2
from aiaas_services.serialization.explain import COMPLETENESS_TOLERANCE
from tests.integration.text.conftest import MODEL, STUDENT, STUDENT_SERVED
from tests.support.processes import ServiceProcess

# The session's fixtures import, fine-tune and distill MiniLM once; the first test here may wait for them.
pytestmark = pytest.mark.timeout(1500)

SENTENCE = "The striker scored a penalty kick in the final match."


def test_text_classifier_explained_token_by_token(
    distilled: training_pb2.Job,
    student_exported: pb.ExportJob,
    text_serialization: ServiceProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with grpc.insecure_channel(text_serialization.address) as channel:
        stub = explain_pb2_grpc.ExplanationServiceStub(channel)
        served = common_pb2.VersionRef(model_name=STUDENT_SERVED)  # the production ONNX export
        reply = stub.Explain(explain_pb2.ExplainRequest(ref=served, text=SENTENCE), timeout=600)
        other = stub.Explain(
            explain_pb2.ExplainRequest(ref=served, text=SENTENCE, target=(reply.target + 1) % 3), timeout=600
        )
    assert (reply.explained_model, reply.explained_version) == (STUDENT, distilled.registered.version)
    assert reply.method == "integrated_gradients" and 0 <= reply.target < 3
    assert reply.tokens[0] == "[CLS]" and reply.tokens[-1] == "[SEP]" and "striker" in reply.tokens
    assert len(reply.attributions) == len(reply.tokens)
    for answer in (reply, other):
        gap = answer.prediction - answer.baseline_prediction
        assert abs(sum(answer.attributions) - gap) <= COMPLETENESS_TOLERANCE * max(1.0, abs(gap)), answer
    assert other.target == (reply.target + 1) % 3 and other.prediction < reply.prediction  # not the predicted class

    capsys.readouterr()
    assert (
        cli(["explain", STUDENT_SERVED, "--text", SENTENCE, "--top", "3", "--target", text_serialization.address]) == 0
    )
    out = capsys.readouterr().out
    assert "integrated_gradients" in out and "token" in out and "sum of attributions" in out, out


def test_text_explanations_refuse_what_they_cannot_explain(
    distilled: training_pb2.Job, imported: pb.ImportModelResponse, text_serialization: ServiceProcess
) -> None:
    """An embedding model (no class), inputs and text together, Kernel SHAP for text, a blank sentence: the
    right code and what to do instead."""
    student = common_pb2.VersionRef(model_name=STUDENT, version=distilled.registered.version)
    embedding = common_pb2.VersionRef(model_name=MODEL, version=imported.registered.version)
    sentence = "a sentence"
    cases: list[tuple[common_pb2.VersionRef, str, list[float], str, str, str]] = [
        (embedding, sentence, [], "", "FAILED_PRECONDITION", "sequence-classification"),
        (student, sentence, [1.0, 2.0], "", "INVALID_ARGUMENT", "not both"),
        (student, sentence, [], "kernel_shap", "INVALID_ARGUMENT", "integrated_gradients"),
        (student, "   ", [], "", "INVALID_ARGUMENT", "must hold a sentence"),
    ]
    with grpc.insecure_channel(text_serialization.address) as channel:
        stub = explain_pb2_grpc.ExplanationServiceStub(channel)
        for ref, text, inputs, method, code, fragment in cases:
            request = explain_pb2.ExplainRequest(ref=ref, text=text, inputs=inputs, method=method)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Explain(request, timeout=120)
            details = refused.value.details() or ""
            assert refused.value.code().name == code and fragment in details, (text, inputs, method, details)
