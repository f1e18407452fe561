"""gRPC adapter of explanations (``aiaas.explain.v1.ExplanationService``) on the serialization service."""

from __future__ import annotations

import grpc

from aiaas.explain.v1 import explain_pb2, explain_pb2_grpc
from aiaas_services.runtime.errors import Unavailable
from aiaas_services.runtime.messages import same_named
from aiaas_services.serialization import codec
from aiaas_services.serialization.explainer import Explainer


class ExplanationServicer(explain_pb2_grpc.ExplanationServiceServicer):
    """Explain over an Explainer, attached once the service has started."""

    def __init__(self) -> None:
        self.explainer: Explainer | None = None

    async def Explain(
        self, request: explain_pb2.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> explain_pb2.ExplainResponse:
        if self.explainer is None:
            raise Unavailable("the serialization service is starting; retry")
        done = await self.explainer.explain(
            codec.ref_from(request.ref),
            list(request.inputs),
            list(request.baseline),
            request.target if request.HasField("target") else None,
            request.method,
            request.steps,
            request.text,
        )
        result = done.result
        return explain_pb2.ExplainResponse(
            **same_named(done, "model_name", "version", "explained_model", "explained_version", "tokens"),
            **same_named(result, "method", "target", "prediction", "baseline_prediction", "completeness_error"),
            attributions=result.attributions.tolist(),
        )
