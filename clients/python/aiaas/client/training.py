"""Typed clients of ``aiaas.training.v1.TrainingService``: ``TrainingClient`` (blocking, for scripts and the
CLI) and ``AsyncTrainingClient`` (asyncio), plus ``parse_spec`` for specs written as JSON.

    client = TrainingClient(grpc.insecure_channel("127.0.0.1:50052"))
    job = client.start(parse_spec({"model_name": "digits", "architecture": {"mlp": {"hidden_sizes": [64]}},
                                   "data": {"sklearn": "digits"}, "epochs": 20}))
    for event in client.watch(job.job_id):   # history first, then live, until the job ends
        ...
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import grpc
from google.protobuf import json_format

from aiaas.common.v1 import common_pb2
from aiaas.training.v1 import training_pb2, training_pb2_grpc
from aiaas.wire import TERMINAL_JOB_STATES

TERMINAL_STATES = TERMINAL_JOB_STATES


def parse_spec(spec: Mapping[str, Any] | str) -> training_pb2.TrainingSpec:
    """A TrainingSpec from its JSON form (a dict or a JSON string; proto field names or camelCase)."""
    text = spec if isinstance(spec, str) else json.dumps(spec)
    return json_format.Parse(text, training_pb2.TrainingSpec())


def state_name(state: int) -> str:
    """``JOB_STATE_SUCCEEDED`` -> ``SUCCEEDED``."""
    return common_pb2.JobState.Name(state).removeprefix("JOB_STATE_")


class TrainingClient:
    """Blocking client over a ``grpc.Channel``."""

    def __init__(self, channel: grpc.Channel, timeout: float | None = 30.0) -> None:
        self.stub = training_pb2_grpc.TrainingServiceStub(channel)
        self.timeout = timeout

    def start(self, spec: training_pb2.TrainingSpec, request_id: str = "") -> training_pb2.Job:
        """Queue a job; returns it QUEUED (a retry with the same request_id returns the same job)."""
        request = training_pb2.StartTrainingJobRequest(spec=spec, request_id=request_id)
        return self.stub.StartTrainingJob(request, timeout=self.timeout).job

    def get(self, job_id: str) -> training_pb2.Job:
        return self.stub.GetJob(training_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout).job

    def list(self, state: Any = common_pb2.JOB_STATE_UNSPECIFIED, limit: int = 50) -> list[training_pb2.Job]:
        """Newest first, following pages until ``limit`` jobs."""
        jobs: list[training_pb2.Job] = []
        token = ""
        while len(jobs) < limit:
            request = training_pb2.ListJobsRequest(page_size=min(100, limit - len(jobs)), page_token=token, state=state)
            response = self.stub.ListJobs(request, timeout=self.timeout)
            jobs.extend(response.jobs)
            token = response.next_page_token
            if not token:
                break
        return jobs

    def cancel(self, job_id: str) -> training_pb2.Job:
        return self.stub.CancelJob(training_pb2.CancelJobRequest(job_id=job_id), timeout=self.timeout).job

    def watch(self, job_id: str, after_sequence: int = 0) -> Iterator[training_pb2.WatchJobResponse]:
        """Events after ``after_sequence`` until the job ends (no deadline: jobs take their time)."""
        yield from self.stub.WatchJob(training_pb2.WatchJobRequest(job_id=job_id, after_sequence=after_sequence))

    def wait(self, job_id: str) -> training_pb2.Job:
        """Block until the job ends; returns it with its history."""
        for _ in self.watch(job_id):
            pass
        return self.get(job_id)


class AsyncTrainingClient:
    """asyncio client over a ``grpc.aio.Channel``."""

    def __init__(self, channel: grpc.aio.Channel, timeout: float | None = 30.0) -> None:
        self.stub = training_pb2_grpc.TrainingServiceStub(channel)
        self.timeout = timeout

    async def start(self, spec: training_pb2.TrainingSpec, request_id: str = "") -> training_pb2.Job:
        request = training_pb2.StartTrainingJobRequest(spec=spec, request_id=request_id)
        response = await self.stub.StartTrainingJob(request, timeout=self.timeout)
        return response.job

    async def get(self, job_id: str) -> training_pb2.Job:
        response = await self.stub.GetJob(training_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout)
        return response.job

    async def cancel(self, job_id: str) -> training_pb2.Job:
        response = await self.stub.CancelJob(training_pb2.CancelJobRequest(job_id=job_id), timeout=self.timeout)
        return response.job

    async def watch(self, job_id: str, after_sequence: int = 0) -> AsyncIterator[training_pb2.WatchJobResponse]:
        call = self.stub.WatchJob(training_pb2.WatchJobRequest(job_id=job_id, after_sequence=after_sequence))
        async for event in call:
            yield event

    async def wait(self, job_id: str) -> training_pb2.Job:
        async for _ in self.watch(job_id):
            pass
        return await self.get(job_id)
