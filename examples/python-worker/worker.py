"""A gpuq worker in Python, on the gpuq-worker package (worker-sdk/python).

It draws a placeholder with Pillow where a real worker runs its pipeline, uploads it and
returns the outputs; claiming, leases, signed reports and shutdown are the SDK's. Settings
come from the variables every gpuq worker reads:

    GPUQ_QUEUE=sdxl_queue GPUQ_CALLBACK_URL=http://127.0.0.1:8081/v1/callback \\
    GPUQ_CALLBACK_SECRET=... GPUQ_STORAGE_DIR=./outputs python worker.py

Model routing (ADR 0020): with GPUQ_MODELS (the checkpoints this GPU can run, or `*`) or
GPUQ_VRAM_GB (its memory) set, the worker's claims prefer jobs whose checkpoint and LoRAs it
has loaded, and never take one that needs more memory than it has. The handler keeps that
true by telling its context what it loaded and evicted (`Pipelines` below); the worker
advertises it, with GPUQ_GPU_NAME, in `/admin/workers`.
"""

import io
import random
from collections import OrderedDict

from PIL import Image, ImageDraw

from gpuq_worker import Asset, Context, Job, Output, PermanentError, Worker


class Pipelines:
    """The checkpoints resident on this GPU, least recently used first, with their LoRAs.

    A real worker loads a diffusers pipeline here; this one keeps the names, which is all
    routing needs: every load and eviction is told to the job's context.
    """

    def __init__(self, resident: int = 1) -> None:
        self.resident = resident
        self.loaded: OrderedDict[str, set[str]] = OrderedDict()

    def ready(self, job: Job, ctx: Context) -> None:
        model = job.model_key
        if model in self.loaded:
            self.loaded.move_to_end(model)
        else:
            while len(self.loaded) >= self.resident:
                old, old_loras = self.loaded.popitem(last=False)
                for name in (old, *old_loras):
                    ctx.evicted(name)
            ctx.progress(0.01, f"loading {model}")
            self.loaded[model] = set()
            ctx.loaded(model)
        loras = self.loaded[model]
        for name, _weight in job.loras:
            if name not in loras:
                loras.add(name)
                ctx.loaded(name)


PIPELINES = Pipelines()


def frame(prompt: str, width: int, height: int, rng: random.Random) -> Image.Image:
    img = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randrange(8, max(9, min(width, height) // 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    draw.text((8, 8), prompt[:80], fill="white")
    return img


def encode(frames: list[Image.Image], fmt: str) -> bytes:
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=len(frames) > 1, append_images=frames[1:], duration=125, loop=0)
    return buf.getvalue()


def generate(job: Job, ctx: Context) -> Output:
    cfg = job.config
    if not job.prompt and not cfg.exact_copy:
        raise PermanentError("the job has no prompt")
    PIPELINES.ready(job, ctx)
    seed = cfg.seed if cfg.seed is not None else random.randrange(2**32)
    prompt = f"{job.prompt}, highly detailed" if cfg.enhance_prompt else job.prompt
    count = cfg.num_images if cfg.frames == 1 else 1
    assets = []
    for i in range(count):
        rng = random.Random(seed + i)
        frames = [frame(prompt, cfg.width, cfg.height, rng) for _ in range(min(cfg.frames, 8))]
        ext, mime = ("png", "image/png") if cfg.frames == 1 else ("gif", "image/gif")
        path = ctx.upload(i, ext, encode(frames, ext.upper()), mime)
        assets.append(Asset(path, seed=seed + i, width=cfg.width, height=cfg.height))
        ctx.progress((i + 1) / count, f"output {i + 1} of {count} stored")
    extra = {"enhanced_prompt": prompt} if cfg.enhance_prompt else {}
    if cfg.frames > 1:
        video = Asset(assets[0].path, seed=seed, width=cfg.width, height=cfg.height, duration_seconds=cfg.frames / 8)
        return Output.video(video, **extra)
    return Output.images(assets, **extra)


if __name__ == "__main__":
    Worker.from_env(generate).run()
