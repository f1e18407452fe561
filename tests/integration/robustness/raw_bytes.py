"""Requests as raw bytes: what a client with the wrong .proto, a fuzzer or a hostile peer sends.

``deep_nesting`` builds a message nested 10,000 levels (groups of an unknown field), which no protobuf
parser accepts; ``random_payloads`` yields random, truncated and bit-flipped variants of valid messages.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import grpc

SERVICES = {
    "inference": "inference.GRPCInferenceService",
    "registry": "aiaas.registry.v1.RegistryService",
    "training": "aiaas.training.v1.TrainingService",
    "serialization": "aiaas.serialization.v1.SerializationService",
    "health": "grpc.health.v1.Health",
}


def deep_nesting(depth: int = 10_000) -> bytes:
    """Field 1000 as a group, opened ``depth`` times, then closed as often."""
    start = _varint((1000 << 3) | 3)
    end = _varint((1000 << 3) | 4)
    return start * depth + end * depth


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def unary_raw(channel: grpc.Channel, service: str, method: str) -> grpc.UnaryUnaryMultiCallable:
    """A unary method that sends and returns bytes as they are."""
    return channel.unary_unary(f"/{SERVICES[service]}/{method}")


def random_payloads(rng: random.Random, seeds: Sequence[bytes], count: int) -> Iterator[bytes]:
    """Random bytes, and valid messages truncated, bit-flipped or spliced with random bytes."""
    for i in range(count):
        kind = i % 4
        if kind == 0 or not seeds:
            yield rng.randbytes(rng.randrange(0, 300))
            continue
        seed = bytearray(rng.choice(seeds))
        if kind == 1 and seed:
            yield bytes(seed[: rng.randrange(0, len(seed))])
        elif kind == 2 and seed:
            for _ in range(rng.randrange(1, 4)):
                seed[rng.randrange(len(seed))] ^= 1 << rng.randrange(8)
            yield bytes(seed)
        else:
            cut = rng.randrange(0, len(seed) + 1)
            yield bytes(seed[:cut]) + rng.randbytes(rng.randrange(1, 40)) + bytes(seed[cut:])
