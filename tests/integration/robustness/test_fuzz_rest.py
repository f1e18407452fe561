"""Property-based fuzzing of the REST front door: generated JSON and binary infer bodies (and, under bearer
tokens, generated Authorization headers, models and endpoints) never get a 5xx, a traceback or a leaked path;
every refusal is a JSON ``{"error": ...}``; the service stays healthy."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.integration.robustness.conftest import GUARDED_TOKENS, assert_clean_details, fuzz_settings
from tests.support.processes import ServiceProcess

FUZZ = fuzz_settings(500)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=30,
)
names = st.one_of(st.sampled_from(["digits", "", "..", "a" * 300, "dig its", "nul\x00l"]), st.text(max_size=20))
datatypes = st.one_of(
    st.sampled_from(["FP32", "FP16", "BF16", "INT64", "INT8", "UINT8", "BOOL", "BYTES"]), st.text(max_size=6)
)
shapes = st.one_of(
    st.lists(st.one_of(st.integers(-3, 70), st.integers(-(2**62), 2**62)), max_size=4), json_values, st.just([1, 64])
)


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": draw(st.one_of(st.sampled_from(["input", "output", ""]), json_values)),
        "datatype": draw(datatypes),
        "shape": draw(shapes),
    }
    choice = draw(st.sampled_from(["floats", "any", "binary", "none"]))
    if choice == "floats":
        tensor["data"] = draw(st.lists(st.floats(width=32, allow_nan=False), max_size=130))
    elif choice == "any":
        tensor["data"] = draw(json_values)
    elif choice == "binary":
        tensor["parameters"] = {"binary_data_size": draw(st.one_of(st.integers(-5, 600), json_values))}
    if draw(st.booleans()):
        del tensor[draw(st.sampled_from(["name", "datatype", "shape"]))]
    return tensor


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    name = draw(names)
    path = f"/v2/models/{quote(name, safe='')}" + draw(st.sampled_from(["", "/versions/1", "/versions/x"])) + "/infer"
    if draw(st.integers(0, 9)) == 0:
        return path, draw(st.binary(max_size=300)), {}
    header: dict[str, Any] = {"inputs": draw(st.one_of(st.lists(tensors(), max_size=3), json_values))}
    if draw(st.booleans()):
        header["outputs"] = draw(
            st.one_of(st.lists(st.fixed_dictionaries({"name": json_values}), max_size=2), json_values)
        )
    if draw(st.booleans()):
        header["parameters"] = draw(st.one_of(st.fixed_dictionaries({"binary_data_output": json_values}), json_values))
    if draw(st.booleans()):
        header["id"] = draw(json_values)
    text = json.dumps(header).encode()
    binary = draw(st.binary(max_size=400))
    length = draw(
        st.one_of(
            st.just(len(text)), st.integers(-3, len(text) + 500).map(str), st.text("abc-1.", min_size=1, max_size=4)
        )
    )
    headers = {"Inference-Header-Content-Length": str(length)} if binary or draw(st.booleans()) else {}
    return path, text + binary, headers


def test_fuzz_rest_infer(inference_standalone: ServiceProcess) -> None:
    url = inference_standalone.http_url
    session = requests.Session()

    @FUZZ
    @given(bodies())
    def check(case: tuple[str, bytes, dict[str, str]]) -> None:
        path, body, headers = case
        reply = session.post(url + path, data=body, headers=headers, timeout=10)
        assert reply.status_code < 500 or reply.status_code == 503, (reply.status_code, reply.text, case)
        if reply.status_code != 200:
            message = reply.json()["error"]
            assert message and "Traceback" not in message, case
            assert_clean_details(message, inference_standalone.home)

    check()
    session.close()
    assert inference_standalone.process.poll() is None
    assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200


# Header text requests can send: printable latin-1, no line breaks.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
authorizations = st.one_of(
    st.sampled_from([f"Bearer {token}" for token in GUARDED_TOKENS]),
    st.builds(
        lambda prefix, token: prefix + token,
        st.sampled_from(["Bearer ", "bearer  ", "Basic ", "", "Bearer"]),
        st.one_of(st.sampled_from(list(GUARDED_TOKENS)), header_text),
    ).filter(lambda value: not value[:1].isspace()),  # what an HTTP client lets through
    st.none(),
)
endpoints = st.sampled_from(
    [
        ("POST", "/v2/models/{m}/infer"),
        ("POST", "/v2/models/{m}/versions/1/infer"),
        ("GET", "/v2/models/{m}"),
        ("GET", "/v2/models/{m}/ready"),
        ("GET", "/v2/models/{m}/config"),
        ("GET", "/v2/models/{m}/stats"),
        ("GET", "/v2/models/stats"),
        ("POST", "/v2/repository/index"),
        ("POST", "/v2/repository/models/{m}/unload"),
        ("GET", "/v2"),
        ("GET", "/v2/health/ready"),
    ]
)
GOOD = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]})


def test_fuzz_rest_tokens_scopes_and_limits(guarded_inference: ServiceProcess) -> None:
    url = guarded_inference.http_url
    session = requests.Session()
    seen: set[int] = set()

    @FUZZ
    @given(authorizations, endpoints, st.one_of(st.sampled_from(["digits", "other", "ghost"]), names), st.booleans())
    def check(authorization: str | None, endpoint: tuple[str, str], model: str, good: bool) -> None:
        method, template = endpoint
        path = template.format(m=quote(model, safe=""))
        headers = {} if authorization is None else {"Authorization": authorization}
        reply = session.request(method, url + path, data=GOOD if good else b"{", headers=headers, timeout=10)
        seen.add(reply.status_code)
        assert reply.status_code < 500 or reply.status_code == 503, (reply.status_code, reply.text)
        if reply.status_code == 429:
            assert int(reply.headers["Retry-After"]) >= 1
        if reply.status_code >= 400:
            message = reply.json()["error"]
            assert message and "Traceback" not in message
            assert_clean_details(message, guarded_inference.home)

    check()
    session.close()
    assert {401, 403, 429} <= seen, seen  # the generated calls did reach every kind of refusal
    assert guarded_inference.process.poll() is None
    ok = requests.post(
        f"{url}/v2/models/digits/infer", data=GOOD, headers={"Authorization": "Bearer digits-only"}, timeout=10
    )
    assert ok.status_code == 200, ok.text
