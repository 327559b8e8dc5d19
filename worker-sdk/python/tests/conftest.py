"""The real stack run_tests.sh started, and worker processes on the installed package.

Each test enqueues its own jobs and says, in the job's metadata, what the test worker
(app.py) does with it. Workers are separate processes, as in production: SIGTERM, exit
codes and a handler that holds the GIL behave as they would there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent


class Stack:
    """The dispatcher's API as an app uses it, plus PostgreSQL and Redis for checks."""

    def __init__(self) -> None:
        env = os.environ
        self.api = env["GPUQ_TEST_API"]
        self.callback = env["GPUQ_TEST_CALLBACK"]
        self.user = env["GPUQ_TEST_USER"]
        self.storage = Path(env["GPUQ_TEST_STORAGE"])
        self.redis = {"sdxl_queue": env["GPUQ_TEST_REDIS_SDXL"], "wan_queue": env["GPUQ_TEST_REDIS_WAN"]}
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {env['GPUQ_TEST_TOKEN']}"
        self.enqueued: list[str] = []

    def enqueue(self, job_type: str = "sdxl_image_fast", num_images: int = 1, **metadata) -> str:
        body = {"jobType": job_type, "metadata": {"prompt": "a lighthouse at dusk", "num_images": num_images, "seed": 7, **metadata}}
        answer = self.session.post(f"{self.api}/v1/jobs", json=body, timeout=10)
        assert answer.status_code in (200, 201, 202), answer.text
        job_id = answer.json()["job"]["id"]
        self.enqueued.append(job_id)
        return job_id

    def cancel_unfinished(self) -> None:
        """Ends what a test left running or waiting, so the next test's workers see none of it."""
        for job_id in self.enqueued:
            if self.job(job_id)["status"] not in ("completed", "failed", "cancelled"):
                self.cancel(job_id)
        self.enqueued.clear()

    def job(self, job_id: str) -> dict:
        answer = self.session.get(f"{self.api}/v1/jobs/{job_id}", timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["job"]

    def wait_for(self, job_id: str, *statuses: str, timeout: float = 60) -> dict:
        end = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            if time.monotonic() > end:
                raise AssertionError(f"job {job_id} is {job['status']} after {timeout} s, not {statuses}: {job}")
            time.sleep(0.1)

    def cancel(self, job_id: str) -> None:
        answer = self.session.post(f"{self.api}/v1/jobs/{job_id}/cancel", timeout=10)
        assert answer.status_code in (200, 202), answer.text

    def redis_cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-u", os.environ["GPUQ_TEST_REDIS_ADMIN"], "--no-auth-warning", *args], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def key(self, queue: str, name: str) -> str:
        return f"{os.environ['GPUQ_REDIS_NAMESPACE']}:{{{queue}}}:{name}"

    def sql(self, query: str) -> list[str]:
        out = subprocess.run(["psql", os.environ["DATABASE_URL"], "-qAtc", query], check=True, capture_output=True, text=True)
        return [line for line in out.stdout.splitlines() if line]


class Events:
    """What the test workers did, from the JSON lines app.py appends."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self, job_id: str | None = None, event: str | None = None) -> list[dict]:
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
        return [r for r in rows if (job_id is None or r["job"] == job_id) and (event is None or r["event"] == event)]

    def wait(self, job_id: str, event: str, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.all(job_id, event)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} event for {job_id} within {timeout} s: {self.all(job_id)}")


class Workers:
    """Worker processes (app.py, or any script) on the installed package, stopped at teardown."""

    def __init__(self, stack: Stack, events: Events, logs: Path) -> None:
        self.stack, self.events, self.logs = stack, events, logs
        self.procs: list[subprocess.Popen] = []

    def start(self, script: Path = HERE / "app.py", queue: str = "sdxl_queue", **env: str) -> subprocess.Popen:
        full = {
            **os.environ,
            "REDIS_URL": self.stack.redis[queue],
            "GPUQ_QUEUE": queue,
            "GPUQ_CALLBACK_URL": f"{self.stack.callback}/v1/callback",
            "GPUQ_STORAGE_DIR": str(self.stack.storage),
            "GPUQ_TEST_LOG": str(self.events.path),
            **env,
        }
        log = open(self.logs / f"worker-{len(self.procs)}.log", "w")
        proc = subprocess.Popen([sys.executable, str(script)], env=full, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        return (self.logs / f"worker-{self.procs.index(proc)}.log").read_text()

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="session")
def stack() -> Stack:
    return Stack()


@pytest.fixture
def events(tmp_path: Path) -> Events:
    return Events(tmp_path / "events.jsonl")


@pytest.fixture
def workers(stack: Stack, events: Events, tmp_path: Path):
    w = Workers(stack, events, tmp_path)
    yield w
    w.stop_all()
    stack.cancel_unfinished()
