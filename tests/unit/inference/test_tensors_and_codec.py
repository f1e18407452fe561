"""The tensor codec: every datatype, zero-copy raw decoding, BYTES framing, and its error messages."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from aiaas.oip.v2 import grpc_service_pb2 as pb
from aiaas_services.inference.tensors import (
    V2_TO_NUMPY,
    decode_contents,
    decode_raw,
    encode_bytes_tensor,
    encode_raw,
    numpy_to_v2,
)
from aiaas_services.runtime.errors import InvalidArgument

FIXED = [name for name in V2_TO_NUMPY if name != "BYTES"]


@pytest.mark.parametrize("datatype", FIXED)
def test_raw_round_trip_for_every_fixed_size_datatype(datatype: str) -> None:
    dtype = V2_TO_NUMPY[datatype]
    array = (np.arange(6) % 2 == 0) if datatype == "BOOL" else np.arange(6).astype(dtype)
    array = array.reshape(2, 3)
    raw = encode_raw(array, datatype)
    decoded = decode_raw(raw, datatype, (2, 3), "x")
    np.testing.assert_array_equal(decoded, array)
    assert numpy_to_v2(decoded.dtype) == datatype


def test_raw_decoding_is_a_view_of_the_message_bytes() -> None:
    raw = np.arange(64, dtype=np.float32).tobytes()
    decoded = decode_raw(raw, "FP32", (1, 64), "input")
    assert not decoded.flags.owndata and not decoded.flags.writeable  # a view on the bytes: no copy


def test_bytes_framing_round_trip_and_utf8_text() -> None:
    array = np.array(["a", "", "héllo", "x" * 1000], dtype=object).reshape(2, 2)
    raw = encode_bytes_tensor(array)
    assert raw[:5] == struct.pack("<I", 1) + b"a"
    decoded = decode_raw(raw, "BYTES", (2, 2), "s")
    assert decoded.tolist() == array.tolist()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\x01\x00", "truncated length prefix"),
        (b"\x05\x00\x00\x00ab", "claims 5 bytes, only 2 remain"),
        (struct.pack("<I", 1) + b"a", "needs 2 BYTES elements, raw contents hold 1"),
        (struct.pack("<I", 1) + b"\xff" + struct.pack("<I", 0), "not UTF-8"),
    ],
)
def test_bad_bytes_tensors_say_why(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        decode_raw(raw, "BYTES", (1, 2), "s")


def test_wrong_byte_length_names_both_sizes() -> None:
    with pytest.raises(InvalidArgument, match="needs 256 bytes, raw contents hold 252"):
        decode_raw(b"\0" * 252, "FP32", (1, 64), "input")


def test_typed_contents_use_the_protocol_fields() -> None:
    contents = pb.InferTensorContents(int_contents=[1, -2, 3, 4], int64_contents=[5, 6])
    np.testing.assert_array_equal(decode_contents(contents, "INT16", (2, 2), "a"), [[1, -2], [3, 4]])
    assert decode_contents(contents, "INT16", (2, 2), "a").dtype == np.int16
    np.testing.assert_array_equal(decode_contents(contents, "INT64", (2,), "b"), [5, 6])
    with pytest.raises(InvalidArgument, match="FP16 has no typed contents field"):
        decode_contents(contents, "FP16", (1,), "h")
    with pytest.raises(InvalidArgument, match="needs 3 elements, int_contents holds 4"):
        decode_contents(contents, "INT32", (3,), "a")
