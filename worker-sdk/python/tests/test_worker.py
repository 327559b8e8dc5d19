"""The Python SDK against the real stack: each test is one promise of worker-sdk/python."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from gpuq_worker import Asset, ConfigError, Output, Worker, WorkerError


def is_png(path) -> bool:
    return path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_job_completes_with_its_rows_and_files(stack, workers, events):
    job_id = stack.enqueue(num_images=3)
    workers.start()
    job = stack.wait_for(job_id, "completed")
    assert job["attempts"] == 1
    rows = stack.sql(f"SELECT bucket || '/' || storage_path FROM images WHERE job_id = '{job_id}' ORDER BY image_index")
    assert len(rows) == 3
    for i, row in enumerate(rows):
        assert row.endswith(f"{stack.user}/{job_id}/{i}.png"), row
        assert is_png(stack.storage / row)
    started = events.all(job_id, "start")
    assert len(started) == 1 and started[0]["ctx_attempt"] == 1 and started[0]["fence"]


def test_a_handler_holding_the_gil_for_three_lease_periods_keeps_its_job_and_runs_once(stack, workers, events):
    # Two workers with 1-second leases: had the holder's lease lapsed, the dispatcher would
    # have handed the job to the idle one (it reaps expired leases every 250 ms).
    for _ in range(2):
        workers.start(GPUQ_LEASE_SECS="1")
    time.sleep(1)
    job_id = stack.enqueue(mode="hold_gil", seconds=3.5)
    job = stack.wait_for(job_id, "completed", timeout=30)
    assert job["attempts"] == 1
    assert len(events.all(job_id, "start")) == 1, events.all(job_id)
    assert events.all(job_id, "held")[0]["spins"] > 0
    assert stack.sql(f"SELECT count(*) FROM images WHERE job_id = '{job_id}'") == ["1"]


@pytest.mark.parametrize("handler_kind", ["function", "async def"])
def test_cancelling_a_running_job_reaches_ctx_cancelled(stack, workers, events, handler_kind):
    # A worker learns of a cancel when it renews the lease: every second with a 3 s lease.
    workers.start(GPUQ_TEST_ASYNC="1" if handler_kind == "async def" else "0", GPUQ_LEASE_SECS="3")
    job_id = stack.enqueue(mode="wait_cancel")
    events.wait(job_id, "start")
    stack.cancel(job_id)
    seen = events.wait(job_id, "cancelled", timeout=5)
    assert seen["flag"] is True
    assert stack.wait_for(job_id, "cancelled")["status"] == "cancelled"
    assert not events.all(job_id, "not_cancelled")
    if handler_kind == "async def":
        # The soft signal was ignored: after the grace the handler's task was cancelled.
        events.wait(job_id, "hard_stopped", timeout=10)


def test_a_retryable_error_is_retried_after_a_backoff(stack, workers, events):
    workers.start()
    job_id = stack.enqueue(mode="retry_once")
    job = stack.wait_for(job_id, "completed", timeout=60)
    assert job["attempts"] == 2
    raised = events.wait(job_id, "raised")
    second = [e for e in events.all(job_id, "start") if e["attempt"] == 2]
    assert len(second) == 1
    # run_tests.sh sets the backoff base to 1 s; the queue never retries at once.
    assert second[0]["t"] - raised["t"] >= 0.4, (raised, second)


def test_a_permanent_error_dead_letters_the_job_at_once(stack, workers, events):
    workers.start()
    job_id = stack.enqueue(mode="permanent")
    job = stack.wait_for(job_id, "failed")
    assert job["attempts"] == 1
    assert job["errorMessage"] == "the prompt was refused by the safety filter", job
    assert len(events.all(job_id, "start")) == 1
    assert stack.redis_cli("ZSCORE", stack.key("sdxl_queue", "dead"), job_id), "in the dead-letter set"


def test_an_unexpected_exception_is_retried_and_a_wrong_return_is_permanent(stack, workers, events):
    workers.start()
    crash = stack.enqueue(mode="crash")
    wrong = stack.enqueue(mode="wrong_return")
    job = stack.wait_for(wrong, "failed")
    assert "not a gpuq_worker.Output" in job["errorMessage"], job
    events.wait(crash, "start")
    deadline = time.monotonic() + 30
    while len(events.all(crash, "start")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(events.all(crash, "start")) >= 2, "a ValueError is retried"


def test_sys_exit_in_a_handler_fails_the_attempt_not_the_worker(stack, workers, events):
    worker = workers.start()
    job_id = stack.enqueue(mode="exit")
    job = stack.wait_for(job_id, "completed", timeout=60)
    assert job["attempts"] == 2
    assert worker.poll() is None, "the worker is still running"
    assert "SystemExit" in workers.log(worker)


def test_a_wait_for_cancellation_ends_when_the_handler_returns(stack, workers, events):
    workers.start()
    job_id = stack.enqueue(mode="watcher")
    stack.wait_for(job_id, "completed")
    ended = events.wait(job_id, "watcher_done", timeout=5)
    assert ended["fired"] is False


def test_sigterm_during_a_job_hands_it_back_and_another_worker_finishes_it(stack, workers, events):
    first = workers.start(GPUQ_TEST_SLOW="1", GPUQ_SHUTDOWN_DEADLINE_SECS="1")
    job_id = stack.enqueue()
    started = events.wait(job_id, "start")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=20) == 0, workers.log(first)
    events.wait(job_id, "stopped")
    workers.start()
    job = stack.wait_for(job_id, "completed", timeout=30)
    done = events.wait(job_id, "done")
    assert done["pid"] != started["pid"]
    fences = {e["fence"] for e in events.all(job_id, "start")}
    assert len(fences) == 2, "the second delivery has a fence of its own"
    assert job["attempts"] == 1, "an attempt handed back on shutdown is not counted"


def settings(stack, **over):
    base = dict(
        redis_url=stack.redis["sdxl_queue"],
        queue="sdxl_queue",
        callback_url=f"{stack.callback}/v1/callback",
        callback_secret=os.environ["GPUQ_CALLBACK_SECRET"],
        storage_dir=str(stack.storage),
    )
    return {**base, **over}


def never(job, ctx):
    raise AssertionError("a refused worker must not claim")


@pytest.mark.parametrize("wrong", ["secret", "route"], ids=["wrong secret", "not the callback route"])
def test_a_misconfigured_callback_is_refused_at_start_up_and_nothing_is_claimed(stack, wrong):
    if wrong == "secret":
        bad = {"callback_secret": "not-the-secret"}
    else:
        bad = {"callback_url": f"{stack.api}/v1/callback"}  # the dispatcher answers 404
    job_id = stack.enqueue()
    worker = Worker(never, **settings(stack, **bad))
    started = time.monotonic()
    with pytest.raises(WorkerError, match="refused"):
        worker.run(handle_signals=False)
    assert time.monotonic() - started < 15
    assert stack.job(job_id)["status"] == "queued"
    stack.cancel_unfinished()


def test_bad_settings_are_refused_with_the_setting_named():
    with pytest.raises(ConfigError, match="redis_url"):
        Worker(never, queue="sdxl_queue")
    with pytest.raises(TypeError, match="concurency"):
        Worker(never, concurency=2)
    with pytest.raises(ConfigError, match="lease_seconds"):
        Worker(never, lease_seconds=-1)
    with pytest.raises(TypeError):
        Worker(42)


def test_from_env_names_the_missing_variable_and_keywords_stand_in_for_variables(monkeypatch):
    for name in ("GPUQ_QUEUE", "GPUQ_STORAGE_DIR", "GPUQ_CALLBACK_URL", "GPUQ_CALLBACK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GPUQ_STORAGE_DIR", "/tmp")
    monkeypatch.setenv("GPUQ_CALLBACK_URL", "http://127.0.0.1:1/v1/callback")
    monkeypatch.setenv("GPUQ_CALLBACK_SECRET", "s")
    with pytest.raises(ConfigError, match="GPUQ_QUEUE"):
        Worker.from_env(never)
    monkeypatch.setenv("GPUQ_QUEUE", "sdxl_queue")
    assert Worker.from_env(never, concurrency=2).consumer.startswith("sdxl-queue")
    monkeypatch.delenv("GPUQ_QUEUE")
    monkeypatch.delenv("GPUQ_CALLBACK_SECRET")
    assert Worker.from_env(never, queue="wan_queue", callback_secret="s").consumer.startswith("wan-queue")
    with pytest.raises(TypeError, match="concurency"):
        Worker.from_env(never, concurency=None)
    with pytest.raises(ConfigError, match="0.3"):
        Worker.from_env(never, queue="wan_queue", callback_secret="s", lease_seconds=0.1)


def test_outputs_are_built_from_assets():
    out = Output.images([Asset("u/j/0.png", seed=1, width=2, height=3, metadata={"k": [1, 2]})])
    assert len(out) == 1
    assert len(Output.video(Asset("u/j/0.gif", duration_seconds=2.5))) == 1
    with pytest.raises(TypeError):
        Output.images(["u/j/0.png"])


def profiles(stack) -> list[dict]:
    keys = stack.redis_cli("--scan", "--pattern", stack.key("sdxl_queue", "profile:pytest*")).split()
    return [json.loads(stack.redis_cli("GET", k)) for k in keys]


def wait_for_profile(stack, vram_gb: int, timeout: float = 15) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [p for p in profiles(stack) if p.get("vramGb") == vram_gb]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no worker advertised {vram_gb} GiB within {timeout} s: {profiles(stack)}")


def test_a_routing_worker_takes_no_job_too_big_for_its_gpu_and_advertises_what_it_loaded(stack, workers, events):
    workers.start(GPUQ_TEST_VRAM_GB="8", GPUQ_GPU_NAME="NVIDIA T4")
    small = wait_for_profile(stack, 8)
    assert (small["gpu"], small["loads"], small["loaded"]) == ("NVIDIA T4", 0, [])
    job_id = stack.enqueue()  # sdxl_image_fast needs 10 GiB (the catalog's vram_gb)
    time.sleep(2)
    assert stack.job(job_id)["status"] == "queued" and events.all(job_id) == []

    workers.start(GPUQ_TEST_VRAM_GB="12")
    start = events.wait(job_id, "start")
    assert (start["model_key"], start["vram_gb"], start["loras"]) == ("lustify_sdxl", 10, [])
    stack.wait_for(job_id, "completed")
    end = time.monotonic() + 15
    while (big := wait_for_profile(stack, 12))["loads"] != 1 and time.monotonic() < end:
        time.sleep(0.2)
    assert (big["loaded"], big["loads"]) == (["lustify_sdxl"], 1)


def test_routing_settings_are_checked():
    with pytest.raises(ConfigError, match="models"):
        Worker(never, models="sdxl")
    with pytest.raises(ConfigError, match="models"):
        Worker(never, models=[])
    with pytest.raises(ConfigError, match="vram_gb"):
        Worker(never, vram_gb=0)
    base = {"redis_url": "redis://127.0.0.1:1", "queue": "sdxl_queue", "callback_url": "http://127.0.0.1:1/v1/callback", "callback_secret": "s", "storage_dir": "/tmp"}
    with pytest.raises(ConfigError, match="model name"):
        Worker(never, models=["a,b"], **base)
    assert Worker(never, models=["lustify_sdxl"], model_wait_seconds=30, vram_gb=24, **base).consumer


def test_a_handler_stuck_past_its_run_limit_is_counted_then_the_worker_exits_for_a_clean_one(stack, workers, events):
    proc = workers.start(GPUQ_TEST_STUCK="1")
    job_id = stack.enqueue(mode="hang", seconds=60)
    events.wait(job_id, "start")
    # 1 s limit, 0.5 s to return, 0.5 s more to end once dropped: then the report, then exit 70.
    assert proc.wait(timeout=30) == 70, workers.log(proc)
    assert "exiting so that a clean worker replaces this one" in workers.log(proc)
    assert stack.sql(f"SELECT status || ' ' || error_code FROM jobs WHERE id = '{job_id}'") == ["queued execution_timeout"]
    assert stack.sql(f"SELECT outcome FROM job_attempts WHERE job_id = '{job_id}'") == ["retried"]


def test_run_limit_settings_are_checked():
    with pytest.raises(ConfigError, match="unknown job type"):
        Worker(never, run_limit_seconds={"sdxl": 1.0})
    with pytest.raises(ConfigError, match="run_limit_seconds"):
        Worker(never, run_limit_seconds={"sdxl_image_fast": -1.0})
    with pytest.raises(ConfigError, match="run_limit_seconds"):
        Worker(never, run_limit_seconds=[1.0])
