"""gpuq worker SDK for Python: the Rust worker SDK behind a Pythonic surface.

Claiming, lease renewal, fencing, signed callbacks with retries, uploads and graceful
shutdown are the Rust SDK's own code. Leases are renewed from a Rust thread that never
needs the GIL, so a handler holding the GIL for minutes keeps its job.

    from gpuq_worker import Asset, Output, Worker

    def generate(job, ctx):
        ctx.progress(0.5, "denoising")
        path = ctx.upload(0, "png", render(job.prompt), "image/png")
        return Output.images([Asset(path, seed=job.config.seed)])

    Worker.from_env(generate).run()
"""

from ._native import (
    Asset,
    Cancellation,
    ConfigError,
    Context,
    Job,
    JobConfig,
    JobFailed,
    Output,
    PermanentError,
    RetryableError,
    Worker,
    WorkerError,
    __version__,
)

__all__ = [
    "Asset",
    "Cancellation",
    "ConfigError",
    "Context",
    "Job",
    "JobConfig",
    "JobFailed",
    "Output",
    "PermanentError",
    "RetryableError",
    "Worker",
    "WorkerError",
    "__version__",
]
