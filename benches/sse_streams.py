#!/usr/bin/env python3
"""Memory and Redis connections per open event stream of a real gpuq-dispatcher.

Starts the dispatcher binary (``--bin-dir``, default target/release) on a fresh database
and namespace, opens ``--streams`` SSE streams (``GET /v1/jobs/{id}/events``) on one job
from plain sockets, and prints the process' RSS and Redis' ``connected_clients`` before,
while open, and after they are closed. Needs PostgreSQL and Redis as the README starts them.

    python3 benches/sse_streams.py --streams 1500 --bin-dir target/release
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid

PG = os.environ.get("PG_BASE_URL", "postgres://postgres@127.0.0.1:5432")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def redis_clients() -> int:
    out = subprocess.run(["redis-cli", "-u", REDIS, "info", "clients"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("connected_clients:"):
            return int(line.split(":")[1])
    return -1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def open_stream(port: int, path: str, token: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.decode(errors="replace"))
    return writer


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1500)
    ap.add_argument("--bin-dir", default="target/release")
    a = ap.parse_args()
    db = f"gpuq_sse_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", PG, "-qc", f"CREATE DATABASE {db}"], check=True)
    port, ns, secret, user = free_port(), f"sse-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, str(uuid.uuid4())
    env = dict(os.environ, DATABASE_URL=f"{PG}/{db}", REDIS_URL=REDIS, GPUQ_REDIS_NAMESPACE=ns,
               GPUQ_JWT_SECRET=secret, GPUQ_LISTEN=f"127.0.0.1:{port}", RUST_LOG="warn",
               GPUQ__LIMITS__MAX_STREAMS_PER_USER=str(a.streams), GPUQ__LIMITS__MAX_STREAMS=str(a.streams))
    binary = os.path.join(a.bin_dir, "gpuq-dispatcher")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL)
    try:
        token = subprocess.run([binary, "mint-token", user, "3600"], env=env, capture_output=True,
                               text=True, check=True).stdout.strip()
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/readyz")
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(f"{base}/v1/jobs", method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            data=json.dumps({"jobType": "sdxl_image_fast", "metadata": {"prompt": "x"}}).encode())
        job = json.load(urllib.request.urlopen(req))["job"]["id"]
        time.sleep(1)
        before = (rss_kib(proc.pid), redis_clients())
        writers = []
        for i in range(0, a.streams, 100):
            batch = [open_stream(port, f"/v1/jobs/{job}/events", token) for _ in range(min(100, a.streams - i))]
            writers += await asyncio.gather(*batch)
        await asyncio.sleep(2)
        during = (rss_kib(proc.pid), redis_clients())
        for w in writers:
            w.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        closed_in = time.monotonic()
        # Each stream notices its client left at its next keep-alive (15 s) at the latest.
        while redis_clients() > before[1] + 10 and time.monotonic() - closed_in < 60:
            await asyncio.sleep(1)
        closed_in = time.monotonic() - closed_in
        after = (rss_kib(proc.pid), redis_clients())
        per = (during[0] - before[0]) / a.streams
        print(json.dumps({"streams": a.streams, "rss_kib": {"before": before[0], "open": during[0], "closed": after[0]},
                          "redis_clients": {"before": before[1], "open": during[1], "closed": after[1]},
                          "kib_per_stream": round(per, 1), "freed_after_s": round(closed_in, 1)}))
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["psql", PG, "-qc", f"DROP DATABASE IF EXISTS {db}"])


if __name__ == "__main__":
    asyncio.run(main())
