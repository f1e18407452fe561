"""The OpenAPI 3 description of the REST endpoints, served at ``GET /v2/openapi.json``."""

from __future__ import annotations

import functools
from typing import Any

_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_EMPTY = {"description": "OK (empty JSON object)"}


_LIMITED = {
    "description": "The token is over its rate limit or quota; retry after the Retry-After header's seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _op(summary: str, ok: dict[str, Any], body: dict[str, Any] | None = None, open_: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, "default": _ERROR}}
    if body is not None:
        op["requestBody"] = body
    if open_:
        op["security"] = []
    else:
        op["responses"]["429"] = _LIMITED
    return op


def _json_ok(ref: str) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}

_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "BF16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            "description": "binary_data_size: the tensor's bytes follow the JSON part (binary tensor extension)",
        },
        "data": {"type": "array", "description": "Row-major values, flat or nested; BYTES as strings"},
    },
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document (built once)."""
    infer_body = {
        "required": True,
        "description": "JSON, or JSON followed by binary tensors with header Inference-Header-Content-Length",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    infer_ok = {
        "description": "Outputs; with binary outputs the body is JSON + bytes and the header "
        "Inference-Header-Content-Length gives the JSON part's length",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferResponse"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    paths: dict[str, Any] = {
        "/v2": {"get": _op("Server metadata", _json_ok("ServerMetadata"))},
        "/v2/health/live": {"get": _op("Liveness", _EMPTY, open_=True)},
        "/v2/health/ready": {"get": _op("Readiness (503 while loading or draining)", _EMPTY, open_=True)},
        "/v2/openapi.json": {"get": _op("This document", {"description": "OpenAPI 3"}, open_=True)},
        "/v2/models/stats": {"get": _op("Statistics of every model", {"description": "model_stats"})},
        "/v2/repository/index": {
            "post": _op("Models and their state", {"description": "[{name, version, state, reason}]"})
        },
        "/v2/repository/models/{name}/load": {
            "post": {**_op("Load a model (write scope)", _EMPTY), "parameters": [_NAME]}
        },
        "/v2/repository/models/{name}/unload": {
            "post": {**_op("Unload a model (write scope)", _EMPTY), "parameters": [_NAME]}
        },
    }
    for prefix, params in (("/v2/models/{name}", [_NAME]), ("/v2/models/{name}/versions/{version}", [_NAME, _VERSION])):
        paths[prefix] = {"get": {**_op("Model metadata", _json_ok("ModelMetadata")), "parameters": params}}
        paths[prefix + "/ready"] = {"get": {**_op("Model readiness (503 / 404)", _EMPTY), "parameters": params}}
        paths[prefix + "/config"] = {
            "get": {**_op("Model configuration", {"description": "ModelConfig"}), "parameters": params}
        }
        paths[prefix + "/stats"] = {
            "get": {**_op("Model statistics", {"description": "model_stats"}), "parameters": params}
        }
        paths[prefix + "/infer"] = {"post": {**_op("Inference", infer_ok, infer_body), "parameters": params}}
    meta = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "aiaas inference (KServe V2 / Open Inference Protocol, REST)", "version": "2"},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "ServerMetadata": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "extensions": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "ModelMetadata": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "versions": {"type": "array", "items": {"type": "string"}},
                        "platform": {"type": "string"},
                        "inputs": {"type": "array", "items": meta},
                        "outputs": {"type": "array", "items": meta},
                    },
                },
                "InferRequest": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {
                            "type": "object",
                            "description": "binary_data_output (bool), variant (string), timeout (microseconds)",
                        },
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {
                                        "type": "object",
                                        "properties": {"binary_data": {"type": "boolean"}},
                                    },
                                },
                            },
                        },
                    },
                },
                "InferResponse": {
                    "type": "object",
                    "properties": {
                        "model_name": {"type": "string"},
                        "model_version": {"type": "string"},
                        "id": {"type": "string"},
                        "outputs": {"type": "array", "items": _TENSOR},
                    },
                },
            },
        },
    }
