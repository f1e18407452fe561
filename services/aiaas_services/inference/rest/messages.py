"""Protocol messages -> JSON-ready dicts, the way Triton renders them over REST.

Unlike ``json_format.MessageToDict`` this keeps 64-bit integers as JSON numbers (shapes, counts and
nanoseconds are numbers in Triton's REST answers) and prints every scalar field, defaults included.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum = field.enum_type.values_by_number.get(value)
        return enum.name if enum is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.decode("utf-8", "replace")
    return value


def message_to_dict(message: Message) -> dict[str, Any]:
    """Every field of ``message`` by its proto name; oneofs only when set, maps as objects."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.containing_oneof is not None and message.WhichOneof(field.containing_oneof.name) != field.name:
            continue
        value = getattr(message, field.name)
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            value_field = message_type.fields_by_name["value"]
            out[field.name] = {key: _scalar(value_field, item) for key, item in value.items()}
        elif field.is_repeated:
            out[field.name] = [_scalar(field, item) for item in value]
        elif message_type is not None and not message.HasField(field.name):
            continue
        else:
            out[field.name] = _scalar(field, value)
    return out
