"""Model zoo: every trainable architecture, built from a JSON spec (no gRPC, no pickle).

The training service builds modules here to train them; the serialization service rebuilds the same
modules from a checkpoint's ``spec.json`` to export them. One function, ``build_module(spec)``, is the
contract between the two; ``checkpoint_spec`` makes that spec for a training job.
"""

from aiaas_services.modelzoo.specs import (
    ARCHITECTURE_KINDS,
    SpecError,
    architecture_from_proto,
    output_width,
    validate_spec,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from aiaas_services.modelzoo.zoo import StandardizedModel, build_module, checkpoint_spec


def __getattr__(name: str) -> object:
    """Import torch only when a module is built, so spec checks stay light (e.g. in a gRPC server)."""
    if name in ("StandardizedModel", "build_module", "checkpoint_spec"):
        from aiaas_services.modelzoo import zoo

        return getattr(zoo, name)
    raise AttributeError(name)


__all__ = [
    "ARCHITECTURE_KINDS",
    "SpecError",
    "StandardizedModel",
    "architecture_from_proto",
    "build_module",
    "checkpoint_spec",
    "output_width",
    "validate_spec",
]
