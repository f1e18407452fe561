"""gRPC adapter of drift monitoring (``aiaas.monitoring.v1.MonitoringService``) on the inference service."""

from __future__ import annotations

import asyncio

import grpc

from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from aiaas_services.inference.monitor import DriftMonitor
from aiaas_services.monitoring.drift import MIN_ROWS, PSI_THRESHOLD
from aiaas_services.runtime.errors import InvalidArgument


class MonitoringServicer(monitoring_pb2_grpc.MonitoringServiceServicer):
    """GetDrift over a DriftMonitor; scoring runs in a thread, off the event loop."""

    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    async def GetDrift(
        self, request: monitoring_pb2.GetDriftRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.GetDriftResponse:
        if not request.model_name or len(request.model_name) > 128 or len(request.version) > 64:
            raise InvalidArgument("model_name must be 1-128 characters (and version at most 64)")
        await self.monitor.refresh()  # what was sampled since the last round counts too
        tracked = self.monitor.find(request.model_name, request.version)
        scores = await asyncio.to_thread(self.monitor.score, tracked, True)
        response = monitoring_pb2.GetDriftResponse(
            model_name=tracked.name,
            version=tracked.version,
            window_rows=tracked.window.rows if scores is None else scores.rows,
            min_rows=MIN_ROWS,
            threshold=PSI_THRESHOLD,
            history=list(tracked.history),
            reference=tracked.reference_source,
            windows=0 if scores is None else scores.windows,
        )
        if scores is not None:
            response.max_psi = scores.max_psi
            response.drifted = scores.drifted
            if scores.prediction is not None:
                response.prediction_psi = scores.prediction
            ranked = sorted(enumerate(scores.features), key=lambda item: -item[1])
            names = tracked.reference.feature_names if tracked.reference is not None else []
            response.features.extend(
                monitoring_pb2.FeatureDrift(index=i, psi=v, name=names[i] if i < len(names) else "") for i, v in ranked
            )
        correct, total = self.monitor.feedback_totals(tracked.name, tracked.version)
        response.feedback_rows = total
        if total:
            response.live_accuracy = correct / total
        return response

    async def RecordFeedback(
        self, request: monitoring_pb2.RecordFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.RecordFeedbackResponse:
        if not request.model_name or len(request.model_name) > 128:
            raise InvalidArgument("model_name must be 1-128 characters")
        if not request.request_id or len(request.request_id) > 256:
            raise InvalidArgument("request_id must be 1-256 characters: the id the inference request carried")
        if not request.labels or len(request.labels) > 1_000_000:
            raise InvalidArgument("labels must hold one class per row of the request (1..1000000 of them)")
        version, correct, (right, total) = await self.monitor.record_feedback(
            request.model_name, request.request_id, list(request.labels)
        )
        return monitoring_pb2.RecordFeedbackResponse(
            version=version, correct_rows=correct, live_accuracy=right / total, feedback_rows=total
        )
