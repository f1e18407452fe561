"""`aiaas models|versions|alias|artifacts` against a real registry process."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from aiaas.cli.main import main
from tests.support.processes import ServiceProcess

# The CLI is client-side code: the SQLite registry is enough (the backends are covered elsewhere).
pytestmark = pytest.mark.parametrize("registry", ["sqlite"], indirect=True)


def cli(capsys: pytest.CaptureFixture[str], registry: ServiceProcess, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*argv[:2], "--target", registry.address, *argv[2:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_push_alias_rollback_pull(registry: ServiceProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = f"cli-{uuid.uuid4().hex[:8]}"
    weights = tmp_path / "model.onnx"
    weights.write_bytes(os.urandom(3 * 1024 * 1024))
    for variant in ("fp32", "int8"):
        code, out, _ = cli(
            capsys, registry, "versions", "push", model, str(weights), "--format", "onnx", "--variant", variant
        )
        assert code == 0 and "ready" in out
    code, out, _ = cli(capsys, registry, "versions", "list", model, "--json")
    listed = json.loads(out)
    assert code == 0 and [v["version"] for v in listed] == ["2", "1"]  # int64 as JSON strings
    assert listed[0]["variant"] == "int8" and listed[0]["status"] == "VERSION_STATUS_READY"

    assert cli(capsys, registry, "alias", "set", model, "production", "1", "--reason", "first")[0] == 0
    assert cli(capsys, registry, "alias", "set", model, "production", "2")[0] == 0
    code, out, _ = cli(capsys, registry, "alias", "rollback", model, "production")
    assert code == 0 and "v2 -> v1" in out
    code, out, _ = cli(capsys, registry, "alias", "history", model, "production")
    assert code == 0 and len(out.strip().splitlines()) == 2 + 3  # header, rule, three moves

    code, out, _ = cli(capsys, registry, "versions", "pull", f"{model}@production", str(tmp_path / "pulled"))
    assert code == 0 and (tmp_path / "pulled" / "model.onnx").read_bytes() == weights.read_bytes()
    code, _, _ = cli(capsys, registry, "artifacts", "download", f"{model}:2", "model.onnx", str(tmp_path / "x.onnx"))
    assert code == 0 and (tmp_path / "x.onnx").read_bytes() == weights.read_bytes()

    code, _, err = cli(capsys, registry, "models", "delete", model)
    assert code == 1 and err.startswith("error: FAILED_PRECONDITION:") and "force" in err
    code, out, _ = cli(capsys, registry, "models", "watch", "--after", "0", "--model", model, "--count", "3")
    assert code == 0 and len(out.strip().splitlines()) == 3 and "model_created" in out


def test_errors_map_to_exit_codes(registry: ServiceProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, registry, "versions", "get", "no-such-model:1")
    assert code == 1 and err.startswith("error: NOT_FOUND:")
    code, _, err = cli(capsys, registry, "versions", "get", "no-version-selector")
    assert code == 2 and "model:NUMBER" in err
    code = main(["models", "list", "--target", "127.0.0.1:1", "--timeout", "2"])
    assert code == 3
