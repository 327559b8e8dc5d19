"""The test worker: what it does with a job is in the job's metadata (`mode`), and what it did
goes to GPUQ_TEST_LOG as JSON lines. Settings come from the environment (Worker.from_env).

Modes: ok (upload num_images PNGs), hold_gil (a pure-Python loop for `seconds`, with the
switch interval raised so no other Python thread could run), wait_cancel (block until the
job is cancelled), retry_once (RetryableError on attempt 1), permanent (PermanentError),
crash (a ValueError), wrong_return (returns a dict), exit (sys.exit on attempt 1), watcher
(a thread blocks in ctx.cancelled.wait() without a timeout). GPUQ_TEST_SLOW=1: every job waits for
its cancellation (a worker to be stopped mid-job). GPUQ_TEST_ASYNC=1: an `async def` handler.
Mode hang: sleeps in C for `seconds`, deaf to cancellation. GPUQ_TEST_STUCK=1: a 1 s run
limit for sdxl_image_fast, a 0.5 s cancel grace and exit_if_stuck (by keyword).
GPUQ_TEST_VRAM_GB=N: a routing worker (models="*", vram_gb=N, by keyword) whose handler says
it loaded each job's model.
"""

import asyncio
import json
import os
import struct
import sys
import threading
import time
import zlib

from gpuq_worker import Asset, Output, PermanentError, RetryableError, Worker

LOG = os.environ["GPUQ_TEST_LOG"]


def log(event: str, job, **extra) -> None:
    row = {"event": event, "job": job.id, "attempt": job.attempt, "pid": os.getpid(), "t": time.time(), **extra}
    with open(LOG, "a") as f:
        f.write(json.dumps(row) + "\n")


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x80\x40\x20" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def outputs(job, ctx) -> Output:
    paths = [ctx.upload(i, "png", png(4, 4), "image/png") for i in range(job.config.num_images)]
    ctx.progress(1.0, "stored")
    return Output.images([Asset(p, seed=job.config.seed, width=4, height=4) for p in paths])


def handler(job, ctx):
    mode = job.metadata.get("mode", "ok")
    log("start", job, fence=ctx.fence, ctx_attempt=ctx.attempt, model_key=job.model_key, vram_gb=job.vram_gb, loras=job.loras)
    if ROUTING:
        ctx.loaded(job.model_key)
    if os.environ.get("GPUQ_TEST_SLOW") == "1":
        while not ctx.cancelled.wait(0.2):
            pass
        log("stopped", job)
        raise RetryableError("stopped by shutdown")
    if mode == "hold_gil":
        sys.setswitchinterval(1000.0)
        end, spins = time.monotonic() + float(job.metadata["seconds"]), 0
        while time.monotonic() < end:
            spins += 1
        sys.setswitchinterval(0.005)
        log("held", job, spins=spins)
    elif mode == "wait_cancel":
        log("cancelled" if ctx.cancelled.wait(30) else "not_cancelled", job, flag=bool(ctx.cancelled))
        raise RetryableError("cancelled")
    elif mode == "retry_once" and job.attempt == 1:
        log("raised", job)
        raise RetryableError("the reference download timed out")
    elif mode == "hang":
        time.sleep(float(job.metadata.get("seconds", 60)))
    elif mode == "permanent":
        raise PermanentError("the prompt was refused by the safety filter")
    elif mode == "crash":
        raise ValueError("a bug in the handler")
    elif mode == "wrong_return":
        return {"images": []}
    elif mode == "exit" and job.attempt == 1:
        sys.exit(3)
    elif mode == "watcher":
        def watch() -> None:
            fired = ctx.cancelled.wait()
            log("watcher_done", job, fired=fired)

        threading.Thread(target=watch, daemon=True).start()
    out = outputs(job, ctx)
    log("done", job)
    return out


async def async_handler(job, ctx):
    if job.metadata.get("mode") != "wait_cancel":
        return await asyncio.to_thread(handler, job, ctx)
    log("start", job, fence=ctx.fence)
    try:
        await asyncio.wait_for(ctx.cancelled, 30)
        log("cancelled", job, flag=bool(ctx.cancelled))
        await asyncio.sleep(60)  # ignores the soft signal: the hard stop must cancel this
    except asyncio.CancelledError:
        log("hard_stopped", job)
        raise
    except asyncio.TimeoutError:
        log("not_cancelled", job)
    raise RetryableError("cancelled")


ROUTING = "GPUQ_TEST_VRAM_GB" in os.environ

if __name__ == "__main__":
    chosen = async_handler if os.environ.get("GPUQ_TEST_ASYNC") == "1" else handler
    routing = {"models": "*", "vram_gb": int(os.environ["GPUQ_TEST_VRAM_GB"]), "model_wait_seconds": 60} if ROUTING else {}
    if os.environ.get("GPUQ_TEST_STUCK") == "1":
        routing.update(run_limit_seconds={"sdxl_image_fast": 1.0}, cancel_grace_seconds=0.5, exit_if_stuck=True)
    Worker.from_env(chosen, worker_name="pytest", **routing).run()
