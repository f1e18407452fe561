"""Wires the inference servicer and the model manager into the shared runtime."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from aiaas.client.registry import RegistryClient
from aiaas.monitoring.v1 import monitoring_pb2, monitoring_pb2_grpc
from aiaas.oip.v2 import grpc_service_pb2, grpc_service_pb2_grpc
from aiaas_services.inference.batching import BatchPolicy
from aiaas_services.inference.manager import ModelManager
from aiaas_services.inference.metrics import observer_factory, watch_states
from aiaas_services.inference.monitor import new_monitor, repository_or_registry_loader
from aiaas_services.inference.monitor_servicer import MonitoringServicer
from aiaas_services.inference.providers import ProviderConfig
from aiaas_services.inference.reference_channel import RegistryReferences
from aiaas_services.inference.rest.app import RestApp
from aiaas_services.inference.rest.auth import HttpAuth
from aiaas_services.inference.rest.server import HttpServer
from aiaas_services.inference.served import LoadOptions, ModelSpec
from aiaas_services.inference.servicer import InferenceServicer
from aiaas_services.inference.settings import InferenceSettings
from aiaas_services.inference.usage import UsageFlusher, new_meter
from aiaas_services.inference.usage_channel import RegistryUsageSender
from aiaas_services.runtime.channels import open_channel
from aiaas_services.runtime.messages import same_named

logger = logging.getLogger(__name__)


def load_options(settings: InferenceSettings) -> LoadOptions:
    """Session and batching options from the settings."""
    config = ProviderConfig(
        **same_named(settings, *(f.name for f in dataclasses.fields(ProviderConfig) if f.name != "preferred")),
        preferred=tuple(settings.providers),
    )
    policy = BatchPolicy(
        enabled=settings.batching,
        max_batch_size=max(1, settings.max_batch_size),
        preferred_batch_sizes=tuple(sorted(settings.preferred_batch_sizes)),
        max_queue_delay_s=max(0, settings.max_queue_delay_us) / 1e6,
        queue_limit=max(1, settings.queue_limit),
        inline_below_s=max(0, settings.inline_run_below_us) / 1e6,
        trace_spans=settings.trace_batch_spans,
        cancel_checks=settings.cancel_checks,
    )
    return LoadOptions(
        config=config,
        instances=max(1, settings.instances),
        policy=policy,
        max_elements=settings.max_elements,
        warmup_runs=settings.warmup_runs,
        io_binding=settings.io_binding,
        observe_factory=observer_factory(),
    )


def build_manager(settings: InferenceSettings) -> ModelManager:
    """The model manager for these settings (registry client opened when a registry target is set)."""
    cache = Path(settings.cache_dir) if settings.cache_dir else settings.home_path / "inference" / "models"
    return ModelManager(
        options=load_options(settings),
        repository=Path(settings.model_repository).expanduser() if settings.model_repository else None,
        registry_factory=registry_factory(settings) if settings.registry_target else None,
        specs=[ModelSpec.parse(text, settings.default_alias) for text in settings.models],
        cache_dir=cache,
        variant_policy=settings.variant_policy,
        load_variants=settings.load_variants,
        drain_seconds=settings.drain_seconds,
        backoff_max=settings.watch_backoff_max_seconds,
        default_alias=settings.default_alias,
    )


def rest_app(settings: InferenceSettings, manager: ModelManager, servicer: InferenceServicer) -> RestApp:
    """The REST front door over the same manager, with the service's tokens and audit log."""
    audit = settings.home_path / "audit" / f"{settings.service_name}.jsonl" if settings.audit_log else None
    auth = HttpAuth.from_settings(settings.auth_tokens_file, audit)
    return RestApp(manager, servicer, auth, settings.max_message_bytes)


def registry_factory(settings: InferenceSettings) -> Callable[[], Any]:
    """Opens the registry client; called inside the running event loop (aio channels bind to it)."""

    def factory() -> Any:
        return RegistryClient(open_channel(settings.registry_target, settings), actor="inference")

    return factory


class InferenceApp:
    """The inference service as the runtime sees it."""

    def __init__(self, settings: InferenceSettings) -> None:
        if settings.variant_policy not in ("alias", "hardware"):
            raise ValueError(f"variant_policy must be 'alias' or 'hardware', got {settings.variant_policy!r}")
        if settings.models and not settings.registry_target:
            raise ValueError("models are named but registry_target is empty; set AIAAS_INFERENCE_REGISTRY_TARGET")
        self.settings = settings
        self.manager = build_manager(settings)
        watch_states(self.manager)
        self.ready = asyncio.Event()
        self.usage = new_meter() if settings.usage_metering else None
        self.flusher: UsageFlusher | None = None
        self.monitor = (
            new_monitor(
                repository_or_registry_loader(
                    RegistryReferences(registry_factory(settings)) if settings.registry_target else None
                ),
                settings.monitoring_sample_every,
                settings.monitoring_window,
            )
            if settings.monitoring
            else None
        )
        self.servicer = InferenceServicer(
            self.manager, self.ready, settings.stream_max_in_flight, usage=self.usage, monitor=self.monitor
        )
        self.http: HttpServer | None = None
        self.http_port: int | None = None

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, server)
        names = [grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name]
        if self.monitor is not None:
            monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server(MonitoringServicer(self.monitor), server)
            names.append(monitoring_pb2.DESCRIPTOR.services_by_name["MonitoringService"].full_name)
        return names

    async def start(self) -> None:
        """Load the models (health turns SERVING after this returns).

        A lone process opens REST first, so /v2/health/live answers while the models load. A worker that
        shares its port with others (``reuse_port``) opens it only once its models are loaded: the kernel
        hands a listening socket new connections at once, and a balancer must never reach a worker that
        would answer 503 or 404 while its siblings serve.
        """
        if self.settings.gil_switch_interval_us > 0:
            sys.setswitchinterval(self.settings.gil_switch_interval_us / 1e6)
        rest_first = not self.settings.reuse_port
        if rest_first:
            await self._open_rest()
        await self.manager.start()
        if not rest_first:
            await self._open_rest()
        if self.usage is not None and self.settings.registry_target:
            self.flusher = UsageFlusher(
                self.usage, RegistryUsageSender(self.settings, "inference"), self.settings.usage_flush_seconds
            )
            self.flusher.start()
        if self.monitor is not None:
            self.monitor.start(self.settings.monitoring_interval_seconds)
        self.ready.set()

    async def _open_rest(self) -> None:
        if self.settings.http_port >= 0:
            self.http = HttpServer(
                rest_app(self.settings, self.manager, self.servicer), self.settings, self.settings.http_port
            )
            self.http_port = await self.http.start()

    async def drain(self) -> None:
        """Not ready any more; the REST server finishes its in-flight requests and stops (gRPC stops next)."""
        self.ready.clear()
        if self.http is not None:
            await self.http.stop()

    async def close(self) -> None:
        """Drain and release every model."""
        await self.drain()
        if self.flusher is not None:
            await self.flusher.close()
        if self.monitor is not None:
            await self.monitor.close()
        await self.manager.close()
