"""`aiaas train` and `aiaas jobs ...` as a user runs them: a real CLI process against the real services."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import ServiceProcess


def aiaas(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiaas.cli.main", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_train_follows_the_job_and_jobs_commands_show_it(training_process: ServiceProcess) -> None:
    target = ["--target", training_process.address]
    run = aiaas(
        "train", "cli-iris", *target, "--arch", "mlp", "--hidden", "16", "--data", "sklearn:iris",
        "--epochs", "5", "--lr", "0.01", "--seed", "3", "--tag", "owner=cli",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "SUCCEEDED" in run.stdout and "registered: cli-iris version" in run.stdout
    assert "epoch 5/5" in run.stderr  # one line per epoch when stderr is not a terminal
    job_id = run.stdout.split("job ", 1)[1].split()[0]

    listed = aiaas("jobs", "ls", *target, "--json", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    assert job_id in {job["job_id"] for job in json.loads(listed.stdout)}

    shown = aiaas("jobs", "show", job_id, *target)
    assert shown.returncode == 0 and "SUCCEEDED" in shown.stdout and "EPOCH" in shown.stdout

    watched = aiaas("jobs", "watch", job_id, *target, "--json")
    assert watched.returncode == 0 and json.loads(watched.stdout)["spec"]["tags"] == {"owner": "cli"}


def test_cli_errors_have_clear_messages_and_exit_codes(training_process: ServiceProcess) -> None:
    target = ["--target", training_process.address]
    refused = aiaas("train", "bad", *target, "--arch", "rnn", "--sequence-length", "5", "--data", "sklearn:digits")
    assert refused.returncode == 1
    assert "error: INVALID_ARGUMENT" in refused.stderr and "does not divide the 64 features" in refused.stderr
    missing = aiaas("jobs", "cancel", "no-such-job", *target)
    assert missing.returncode == 1 and "error: NOT_FOUND" in missing.stderr
    usage = aiaas("train", "no-data", *target)
    assert usage.returncode == 2 and "give the data" in usage.stderr
    unreachable = aiaas("jobs", "ls", "--target", "127.0.0.1:1", "--timeout", "3")
    assert unreachable.returncode == 3
