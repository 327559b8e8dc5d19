#!/usr/bin/env python3
"""Webhook delivery latency and sender throughput of a real gpuq-dispatcher (ADR 0016).

Starts the dispatcher binary (``--bin-dir``, default target/release) on a fresh database and
namespace, registers one endpoint for ``queued`` events pointing at a receiver in this
process (asyncio, keep-alive, answers 200 at once), enqueues ``--jobs`` jobs over HTTP with
``--clients`` concurrent clients, and reports, per event, the time from the state change
(the event's ``timestamp``: its transaction's start) to its arrival at the receiver
(p50/p90/p99/max), and the sender's throughput (events delivered per second from the first
arrival to the last). With ``--backlog`` the jobs are enqueued while the sender is off (a
dispatcher with ``webhooks.enabled: false``), then a dispatcher with the sender starts and
drains the outbox: the sender's own throughput. Needs PostgreSQL and Redis as the README
starts them.

    python3 benches/webhooks.py --jobs 3000 --clients 32 --bin-dir target/release
    python3 benches/webhooks.py --jobs 10000 --backlog --bin-dir target/release
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

PG = os.environ.get("PG_BASE_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
ADMIN = "bench-admin-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """An HTTP/1.1 server that records (arrival, event timestamp) and answers 200."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, float]] = []
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_until_complete(server.serve_forever())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                arrived = time.time()
                stamp = json.loads(body)["timestamp"]
                sent = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()
                self.arrivals.append((arrived, sent))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def request(url: str, token: str, body: dict | None = None, method: str = "POST") -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--backlog", action="store_true", help="enqueue with the sender off, then time the drain")
    a = ap.parse_args()

    db = f"gpuq_bench_webhooks_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", PG, "-qc", f"CREATE DATABASE {db}"], check=True)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"{PG}/{db}", "REDIS_URL": REDIS, "GPUQ_LISTEN": f"127.0.0.1:{port}",
        "GPUQ_REDIS_NAMESPACE": f"bench-wh-{uuid.uuid4().hex[:6]}", "GPUQ_JWT_SECRET": uuid.uuid4().hex * 2,
        "GPUQ_ADMIN_TOKEN": ADMIN, "GPUQ__LIMITS__MAX_ACTIVE_JOBS_PER_USER": "1000000",
        "GPUQ__LIMITS__REQUESTS_PER_SECOND": "1000000", "GPUQ__LIMITS__BURST": "1000000",
        "GPUQ__QUEUE__MAX_DEPTH": "1000000", "RUST_LOG": "warn",
    }
    binary = os.path.join(a.bin_dir, "gpuq-dispatcher")
    api = f"http://127.0.0.1:{port}"

    def serve(sender: bool) -> subprocess.Popen:
        p = subprocess.Popen([binary, "serve"], env={**env, "GPUQ__WEBHOOKS__ENABLED": str(sender).lower()})
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{api}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        return p

    proc = serve(sender=not a.backlog)
    try:
        receiver = Receiver()
        request(f"{api}/admin/webhooks", ADMIN, {"url": f"http://127.0.0.1:{receiver.port}/hook", "events": ["queued"]})
        users = [str(uuid.uuid4()) for _ in range(50)]
        tokens = [subprocess.run([binary, "mint-token", u, "3600"], env=env, capture_output=True, text=True, check=True).stdout.strip() for u in users]
        body = {"jobType": "sdxl_image_fast", "metadata": {"prompt": "a lighthouse"}}
        started = time.time()
        with ThreadPoolExecutor(a.clients) as pool:
            list(pool.map(lambda i: request(f"{api}/v1/jobs", tokens[i % len(tokens)], body), range(a.jobs)))
        enqueued = time.time() - started
        drain_started = None
        if a.backlog:
            proc.terminate()
            proc.wait()
            drain_started = time.time()
            proc = serve(sender=True)
        deadline = time.time() + 120
        while len(receiver.arrivals) < a.jobs and time.time() < deadline:
            time.sleep(0.05)
        got = list(receiver.arrivals)
        latencies = [(arrived - sent) * 1000 for arrived, sent in got]
        first, last = min(t for t, _ in got), max(t for t, _ in got)
        figures = {
            "events": len(got), "jobs": a.jobs, "clients": a.clients,
            "enqueue_per_s": round(a.jobs / enqueued, 1),
            "latency_ms_p50": round(percentile(latencies, 50), 1), "latency_ms_p90": round(percentile(latencies, 90), 1),
            "latency_ms_p99": round(percentile(latencies, 99), 1), "latency_ms_max": round(max(latencies), 1),
            "latency_ms_mean": round(statistics.fmean(latencies), 1),
            "delivered_per_s": round(len(got) / max(last - first, 1e-9), 1),
        }
        if drain_started is not None:
            # Latency is meaningless for a backlog (the events waited on purpose).
            figures = {k: v for k, v in figures.items() if not k.startswith("latency")}
            figures["drain_seconds_incl_start"] = round(last - drain_started, 2)
        print(json.dumps(figures))
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["psql", PG, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=False)


if __name__ == "__main__":
    main()
