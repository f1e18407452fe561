"""Calibration sentences for text INT8: what a user may upload, what is refused, and the held-out set."""

from __future__ import annotations

import json

import pytest

from aiaas_services.serialization.text import calibration, sentences


def test_lines_and_json_lines_are_read() -> None:
    assert calibration.parse(b"one\n\n  \ntwo words\r\nthree\n", "s.txt") == ("one", "two words", "three")
    rows = "\n".join(json.dumps({"text": t, "label": 1}) for t in ("Grüße", "北京", "  "))
    assert calibration.parse(rows.encode(), "s.jsonl") == ("Grüße", "北京")


@pytest.mark.parametrize(
    ("payload", "name", "words"),
    [
        (b"", "s.txt", "holds no sentences"),
        (b"\n  \n\t\n", "s.txt", "holds no sentences"),
        (b"fine\n\xff\xfe broken\n", "s.txt", "is not UTF-8 text (byte 5 is b'\\xff')"),
        (b'{"text": 3}\n', "s.jsonl", 'line 1 has no string field "text"'),
        (b'{"text": "a"}\nnot json\n', "s.jsonl", "line 2 is not JSON"),
        (b"x\n" * (calibration.MAX_SENTENCES + 1), "s.txt", "at most 10000"),
    ],
)
def test_bad_uploads_are_refused_with_what_to_fix(payload: bytes, name: str, words: str) -> None:
    with pytest.raises(calibration.SentencesRefused) as refused:
        calibration.parse(payload, name)
    assert words in str(refused.value) and name in str(refused.value)


def test_the_built_in_calibration_set_is_held_out_from_the_proof() -> None:
    assert len(calibration.CALIBRATION_SENTENCES) >= 80
    assert not set(calibration.CALIBRATION_SENTENCES) & set(sentences.PROOF_SENTENCES)
