"""examples/python-worker/worker.py, the worker a Python team starts from, on the real stack."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from PIL import Image


def test_the_example_worker_renders_uploads_and_completes_images_and_a_video(stack, workers):
    images = stack.enqueue("sdxl_image_fast", num_images=3)
    enhanced = stack.enqueue("image7b_fast_enhanced")
    video = stack.enqueue("video_fast")
    example = Path(os.environ["GPUQ_TEST_EXAMPLE"])
    workers.start(example, GPUQ_CONCURRENCY="2")
    # A routing worker: it says what it loaded, and advertises it.
    workers.start(example, queue="wan_queue", GPUQ_CONCURRENCY="2", GPUQ_MODELS="*", GPUQ_VRAM_GB="24")
    for job_id, table, count, fmt in ((images, "images", 3, "PNG"), (enhanced, "images", 1, "PNG"), (video, "videos", 1, "GIF")):
        job = stack.wait_for(job_id, "completed", timeout=90)
        assert job["attempts"] == 1
        rows = stack.sql(f"SELECT bucket || '/' || storage_path FROM {table} WHERE job_id = '{job_id}'")
        assert len(rows) == count, rows
        for row in rows:
            with Image.open(stack.storage / row) as img:
                assert img.format == fmt
    assert stack.sql(f"SELECT enhanced_prompt IS NOT NULL FROM jobs WHERE id = '{enhanced}'") == ["t"]
    end = time.monotonic() + 15
    while True:
        keys = stack.redis_cli("--scan", "--pattern", stack.key("wan_queue", "profile:*")).split()
        loaded = [json.loads(stack.redis_cli("GET", k)) for k in keys]
        routed = [p for p in loaded if p.get("vramGb") == 24]
        if routed and routed[0]["loaded"] == ["wan_2_1_1_3b"] or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert routed and (routed[0]["loaded"], routed[0]["loads"]) == (["wan_2_1_1_3b"], 1), loaded
