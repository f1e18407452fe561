"""The vetting of an uploaded HF folder and the parsing of a labelled text table (no services, no model)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from aiaas_services.textmodel.folder import FolderRefused, unpack, vet
from aiaas_services.training.text.data import TableError, check_split, parse_table

CONFIG = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 8, "max_position_embeddings": 64}


def _tar(path: Path, files: dict[str, bytes], kind: bytes = tarfile.REGTYPE) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            info.type = kind
            if kind != tarfile.REGTYPE:
                info.linkname = "/etc/passwd"
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def _folder_files() -> dict[str, bytes]:
    return {
        "config.json": json.dumps(CONFIG).encode(),
        "vocab.txt": b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n",
        "model.safetensors": save({"w": np.zeros(2, np.float32)}),
        "README.md": b"# model",
    }


def test_a_clean_folder_unpacks_and_vets(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    kept, skipped = unpack(_tar(tmp_path / "a.tar", _folder_files()), dest, 1 << 20, 1 << 20)
    assert sorted(kept) == ["config.json", "model.safetensors", "vocab.txt"] and skipped == ["README.md"]
    folder = vet(dest, kept, skipped, "embedding")
    assert folder.model_type == "bert" and folder.hidden_size == 8 and folder.labels == ()


@pytest.mark.parametrize(
    ("files", "kind", "words"),
    [
        ({"pytorch_model.bin": b"x"}, tarfile.REGTYPE, "pickled checkpoint"),
        ({"model.ckpt": b"x"}, tarfile.REGTYPE, "pickled checkpoint"),
        ({"../x.txt": b"x"}, tarfile.REGTYPE, "plain top-level file name"),
        ({"/etc/cron.d/x": b"x"}, tarfile.REGTYPE, "plain top-level file name"),
        ({"sub/config.json": b"x"}, tarfile.REGTYPE, "plain top-level file name"),
        ({"vocab.txt": b""}, tarfile.SYMTYPE, "not a regular file"),
        ({"vocab.txt": b""}, tarfile.LNKTYPE, "not a regular file"),
        ({"big.safetensors": b"x" * 2048}, tarfile.REGTYPE, "per-file limit"),
    ],
)
def test_hostile_entries_are_refused(tmp_path: Path, files: dict[str, bytes], kind: bytes, words: str) -> None:
    with pytest.raises(FolderRefused, match=words.replace("(", r"\(")):
        unpack(_tar(tmp_path / "h.tar", files, kind), tmp_path, 1024, 1 << 20)


def test_not_a_tar_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(b"\x1f\x8b gzip or garbage" * 100)
    with pytest.raises(FolderRefused, match="uncompressed tar"):
        unpack(path, tmp_path, 1 << 20, 1 << 20)


@pytest.mark.parametrize(
    ("change", "task", "words"),
    [
        ({"config.json": json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}).encode()},
         "embedding", "unsupported architecture LlamaForCausalLM"),
        ({"config.json": b"{not json"}, "embedding", "not JSON"),
        ({"model.safetensors": b"\x00\x01 not safetensors"}, "embedding", "not a readable safetensors"),
        ({}, "sequence-classification", "ForSequenceClassification"),
        ({}, "translation", "task must be one of"),
    ],
)  # fmt: skip
def test_vet_refuses_what_cannot_be_served(tmp_path: Path, change: dict[str, bytes], task: str, words: str) -> None:
    files = _folder_files() | change
    del files["README.md"]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(FolderRefused, match=words):
        vet(tmp_path, list(files), [], task)


def test_missing_vocab_or_weights(tmp_path: Path) -> None:
    files = _folder_files()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(FolderRefused, match=r"vocab\.txt"):
        vet(tmp_path, ["config.json", "model.safetensors"], [], "embedding")
    with pytest.raises(FolderRefused, match=r"no \*\.safetensors"):
        vet(tmp_path, ["config.json", "vocab.txt"], [], "embedding")


def test_tables_parse_csv_and_jsonl() -> None:
    table = parse_table(b"text,label\nhello there,a\nbye now,b\nhi,a\nciao,b\n", "t.csv")
    assert table.label_names == ("a", "b") and table.labels.tolist() == [0, 1, 0, 1]
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in (("x", 1), ("y", 2), ("z", 1), ("w", 2))]
    table = parse_table("\n".join(lines).encode(), "t.jsonl")
    assert table.label_names == ("1", "2") and table.texts == ["x", "y", "z", "w"]


@pytest.mark.parametrize(
    ("payload", "name", "words"),
    [
        (b"\xff\xfe", "t.csv", "not UTF-8"),
        (b"sentence,target\na,b\n", "t.csv", "columns text and label"),
        (b"text,label\na,x\nb,x\nc,y\n", "t.csv", "two labels with two rows each"),
        (b"text,label\na,\n", "t.csv", "row 2"),
        (b'{"text": "a"}\n', "t.jsonl", "row 1"),
        (b"[1, 2]\n", "t.jsonl", "must be an object"),
        (b"text,label\n", "t.csv", "has no rows"),
        (b"text,label\na,x\nb,x,extra\n", "t.csv", "row 3: more fields than the header"),
        (b"text,label\n  ,x\n", "t.csv", "row 2: needs a non-empty text"),
    ],
)
def test_bad_tables_name_the_problem(payload: bytes, name: str, words: str) -> None:
    with pytest.raises(TableError, match=words):
        parse_table(payload, name)


def test_a_split_needs_every_label_on_both_sides() -> None:
    check_split(10, 3, 0.3)
    for rows, classes, fraction in ((6, 3, 0.2), (4, 2, 0.9)):
        with pytest.raises(TableError, match="cannot be split"):
            check_split(rows, classes, fraction)
