"""Server reflection that also resolves method symbols.

grpcio-reflection looks symbols up with ``DescriptorPool.FindFileContainingSymbol``, which does not know
method names, so ``inference.GRPCInferenceService.ModelInfer`` (the symbol ghz asks for) answers "not
found". We fall back to the enclosing service when the last component is one of its methods.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer


class MethodAwareReflectionServicer(ReflectionServicer):
    """Reflection servicer that answers ``FileContainingSymbol`` for ``package.Service.Method``."""

    def _file_containing_symbol(self, request, fully_qualified_name):  # type: ignore[no-untyped-def]
        name = fully_qualified_name.replace("/", ".")
        response = super()._file_containing_symbol(request, name)
        if response.HasField("error_response") and "." in name:
            service_name, _, method = name.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                return response
            if method in service.methods_by_name:
                return super()._file_containing_symbol(request, service_name)
        return response


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve v1alpha reflection (what ghz and grpcurl use) for these services and itself."""
    names = [*service_names, reflection.SERVICE_NAME]
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(MethodAwareReflectionServicer(names), server)
