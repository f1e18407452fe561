"""Per-model scopes, token buckets and quotas of the tokens file (runtime.access), without a server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from aiaas.oip.v2 import grpc_service_pb2 as oip
from aiaas.registry.v1 import registry_pb2
from aiaas_services.runtime.access import Quota, RateLimited, TokenBucket, model_of, parse_grant
from aiaas_services.runtime.auth import AuthInterceptor, TokenTable, authorize, load_tokens
from aiaas_services.runtime.errors import PermissionDenied, Unauthenticated


def test_model_scopes_match_patterns_and_unrestricted_scopes_match_all() -> None:
    grant = parse_grant({"principal": "acme", "scopes": ["read:digits-*", "write:models/foo", "read:bar"]}, "t")
    assert grant.has("read") and grant.restricted("read") and grant.restricted("write")
    grant.check_model("read", "digits-mlp", "M")
    grant.check_model("read", "bar", "M")
    grant.check_model("write", "foo", "M")
    with pytest.raises(PermissionDenied, match="may not read model 'other'"):
        grant.check_model("read", "other", "M")
    with pytest.raises(PermissionDenied, match="may not write model 'digits-mlp'"):
        grant.check_model("write", "digits-mlp", "M")
    with pytest.raises(PermissionDenied, match="not about one model"):
        grant.check_model("read", "", "/x.Y/ListModels")
    everything = parse_grant({"principal": "ops", "scopes": ["read", "write:foo"]}, "t")
    assert not everything.restricted("read") and everything.restricted("write")
    everything.check_model("read", "anything", "M")


@pytest.mark.parametrize(
    "entry",
    [
        {"scopes": ["admin"]},
        {"scopes": ["read:bad/name"]},
        {"scopes": ["read:" + "x" * 200]},
        {"scopes": ["read:"]},  # an empty pattern is a typo, not "every model"
        {"scopes": ["read"], "rate_per_second": 0},
        {"scopes": ["read"], "quota": {"requests": -1, "per_seconds": 60}},
        {"scopes": ["read"], "quota": {"requests": 5}},
        "not an object",
    ],
)
def test_malformed_entries_are_start_up_errors(entry: object) -> None:
    with pytest.raises(ValueError):
        parse_grant(entry, "tokens.json")


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    now = bucket.stamp
    assert [bucket.take(now) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(now) == pytest.approx(0.5)
    assert bucket.take(now + 0.25) == pytest.approx(0.25)
    assert bucket.take(now + 0.5) == 0.0  # one token refilled in half a second


def test_quota_counts_per_fixed_window() -> None:
    quota = Quota(requests=2, per_seconds=60)
    assert quota.take(120.0) == 0.0 and quota.take(150.0) == 0.0
    assert quota.take(170.0) == pytest.approx(10.0)
    assert quota.take(180.0) == 0.0  # a new window


def test_admit_raises_rate_limited_with_a_retry_hint() -> None:
    grant = parse_grant({"principal": "acme", "scopes": ["read"], "rate_per_second": 0.5, "burst": 1}, "t")
    now = grant.bucket.stamp if grant.bucket else 0.0
    grant.admit(now)
    with pytest.raises(RateLimited) as limited:
        grant.admit(now + 0.1)
    assert limited.value.retry_after == pytest.approx(1.9)
    assert limited.value.retry_after_header == "2"
    assert "rate limit of 0.5 calls/s" in str(limited.value)


def test_quota_refusal_gives_back_the_rate_token() -> None:
    grant = parse_grant(
        {
            "principal": "acme",
            "scopes": ["read"],
            "rate_per_second": 100,
            "burst": 5,
            "quota": {"requests": 1, "per_seconds": 3600},
        },
        "t",
    )
    grant.admit()
    with pytest.raises(RateLimited, match="quota of 1 calls per 3600s"):
        grant.admit()
    assert grant.bucket is not None and grant.bucket.tokens >= 3.9


def test_model_of_reads_the_fields_requests_use() -> None:
    assert model_of(oip.ModelInferRequest(model_name="digits")) == "digits"
    assert model_of(oip.ModelMetadataRequest(name="digits")) == "digits"
    assert model_of(registry_pb2.GetModelRequest(name="m")) == "m"
    ref = registry_pb2.GetVersionRequest()
    ref.ref.model_name = "m2"
    assert model_of(ref) == "m2"
    upload = registry_pb2.UploadArtifactRequest(header=registry_pb2.UploadHeader(model_name="m3"))
    assert model_of(upload) == "m3"
    assert model_of(registry_pb2.ListModelsRequest()) == ""


def test_tokens_are_found_by_digest_and_model_checks_hold_with_the_cached_wrapper(tmp_path: Path) -> None:
    """The tokens file loads into a table indexed by digest (one lookup per call); the model-checked
    handler of a (method, token) is built once and still refuses a model outside the token's scope."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {"tok-a": {"principal": "a", "scopes": ["read:mlp"]}, "tok-b": {"principal": "b", "scopes": ["read"]}}
        )
    )
    table = load_tokens(str(tokens))
    assert isinstance(table, TokenTable) and set(table) == {"tok-a", "tok-b"}
    method = "/inference.GRPCInferenceService/ModelInfer"
    assert authorize(table, "tok-a", method, "read").principal == "a"
    assert authorize(dict(table), "tok-b", method, "read").principal == "b"  # a plain mapping still works
    with pytest.raises(Unauthenticated, match="unknown bearer token"):
        authorize(table, "tok-c", method, "read")

    async def answer(request: Any, context: Any) -> str:
        return "answered"

    class Aborted(Exception):
        pass

    class Context:
        async def abort(self, code: Any, message: str) -> None:
            raise Aborted(message)

    handler = grpc.unary_unary_rpc_method_handler(answer)
    details: Any = SimpleNamespace(method=method, invocation_metadata=(("authorization", "Bearer tok-a"),))
    interceptor = AuthInterceptor(table, None)
    first = interceptor.wrap(handler, method, details)
    assert interceptor.wrap(handler, method, details) is first  # built once, reused

    async def calls() -> None:
        assert await first.unary_unary(oip.ModelInferRequest(model_name="mlp"), Context()) == "answered"
        with pytest.raises(Aborted, match="may not read model 'other'"):
            await first.unary_unary(oip.ModelInferRequest(model_name="other"), Context())

    asyncio.run(calls())
