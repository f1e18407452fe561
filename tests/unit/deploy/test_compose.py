"""compose.yaml: valid against the Compose specification's schema; inference replicas use every core; the
registry encrypts at rest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[3] / "compose.yaml"


def test_compose_file_matches_the_compose_spec_schema() -> None:
    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(tool).exists():
        pytest.skip("check-jsonschema is not installed")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_inference_replicas_run_a_worker_per_core() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    replicas = [name for name in services if name.startswith("inference")]
    assert len(replicas) >= 2
    for name in replicas:
        assert services[name]["environment"]["AIAAS_INFERENCE_WORKERS"] == "auto", name


def test_registry_encrypts_at_rest_with_a_secret_key() -> None:
    """#19: encryption at rest is on in compose.yaml, the key-encryption key coming from a secret."""
    compose = yaml.safe_load(COMPOSE.read_text())
    registry = compose["services"]["registry"]
    key_file = registry["environment"]["AIAAS_REGISTRY_ENCRYPTION_KEY_FILE"]
    (secret,) = registry["secrets"]
    assert key_file == f"/run/secrets/{secret}" and secret in compose["secrets"]
