"""Type stubs of the native module (``gpuq_worker`` re-exports every name)."""

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Literal, Union, final

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
__version__: str

@final
class JobConfig:
    """A job's generation parameters."""

    @property
    def steps(self) -> int: ...
    @property
    def guidance(self) -> float: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def frames(self) -> int: ...
    @property
    def num_images(self) -> int: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def reference_image(self) -> str | None: ...
    @property
    def reference_strength(self) -> float | None: ...
    @property
    def denoise_strength(self) -> float | None: ...
    @property
    def exact_copy(self) -> bool: ...
    @property
    def enhance_prompt(self) -> bool: ...

@final
class Job:
    """One job, as the dispatcher accepted it (read-only)."""

    @property
    def id(self) -> str: ...
    @property
    def job_type(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def negative_prompt(self) -> str | None: ...
    @property
    def config(self) -> JobConfig: ...
    @property
    def user_id(self) -> str: ...
    @property
    def tenant(self) -> str | None: ...
    @property
    def bucket(self) -> str: ...
    @property
    def model_variant(self) -> str:
        """The type's model."""
    @property
    def model(self) -> str | None:
        """The checkpoint the job names (from its type's allow-list); None: ``model_variant``."""
    @property
    def model_key(self) -> str:
        """What the job needs loaded: ``model``, else ``model_variant``."""
    @property
    def loras(self) -> list[tuple[str, float]]:
        """The LoRAs to apply, in order, as (name, weight)."""
    @property
    def vram_gb(self) -> int | None:
        """GiB of GPU memory the job needs, when its envelope says."""
    @property
    def attempt(self) -> int:
        """This delivery's attempt, from 1."""
    @property
    def max_attempts(self) -> int: ...
    @property
    def created_at(self) -> str:
        """RFC 3339."""
    @property
    def metadata(self) -> Any:
        """The app's metadata (decoded JSON)."""

@final
class Cancellation:
    """Truthy once the job is cancelled; ``wait()`` blocks for it; ``await`` it in a coroutine."""

    def __bool__(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool:
        """Blocks without the GIL until cancelled or ``timeout`` seconds; returns whether cancelled."""
    def __await__(self) -> Generator[Any, None, None]: ...
    def _on_cancel(self, callback: Callable[[], object]) -> None: ...

@final
class Context:
    """One job's context, valid while its handler runs."""

    @property
    def job_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def fence(self) -> str:
        """This delivery's fence; reports of an older delivery change nothing."""
    @property
    def bucket(self) -> str: ...
    @property
    def cancel_grace(self) -> float:
        """Seconds a cancelled handler has to return before it is stopped."""
    @property
    def cancelled(self) -> Cancellation: ...
    def loaded(self, name: str) -> None:
        """Says ``name`` (a checkpoint such as ``job.model_key``, or a LoRA) is loaded now: routed claims prefer jobs that need it."""
    def evicted(self, name: str) -> None:
        """Says ``name`` is no longer loaded."""
    def progress(self, fraction: float, message: str = "") -> None:
        """Reports progress (0..1); never blocks, throttled, best effort."""
    def output_key(self, index: int, ext: str) -> str: ...
    def upload(self, index: int, ext: str, data: bytes, content_type: str) -> str:
        """Stores output ``index`` and returns the path for its ``Asset``; raises ``RetryableError`` on storage trouble."""

@final
class Asset:
    """One produced file, as uploaded."""

    def __new__(
        cls,
        path: str,
        *,
        seed: int | None = None,
        width: int | None = None,
        height: int | None = None,
        duration_seconds: float | None = None,
        thumbnail_path: str | None = None,
        metadata: Any = None,
    ) -> Asset: ...
    @property
    def path(self) -> str: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def width(self) -> int | None: ...
    @property
    def height(self) -> int | None: ...
    @property
    def duration_seconds(self) -> float | None: ...
    @property
    def thumbnail_path(self) -> str | None: ...

@final
class Output:
    """What a job produced."""

    @staticmethod
    def images(assets: list[Asset], *, enhanced_prompt: str | None = None) -> Output: ...
    @staticmethod
    def video(asset: Asset, *, enhanced_prompt: str | None = None) -> Output: ...
    def __len__(self) -> int: ...

_Handler = Union[
    Callable[[Job, Context], Output],
    Callable[[Job, Context], Awaitable[Output]],
]

@final
class Worker:
    """A worker serving one queue with one handler (a function or an ``async def``)."""

    def __new__(
        cls,
        handler: _Handler,
        *,
        redis_url: str = ...,
        queue: str = ...,
        callback_url: str = ...,
        callback_secret: str = ...,
        storage_dir: str | None = None,
        namespace: str = "gpuq",
        concurrency: int = 1,
        lease_seconds: float = 30.0,
        heartbeat_seconds: float | None = None,
        shutdown_deadline_seconds: float = 300.0,
        cancel_grace_seconds: float = 2.0,
        progress_interval_seconds: float = 1.0,
        claim_wait_seconds: float = 2.0,
        callback_retries: int | None = None,
        worker_name: str | None = None,
        gpu_name: str | None = None,
        models: list[str] | Literal["*"] | None = None,
        model_wait_seconds: float | None = None,
        vram_gb: int | None = None,
        run_limit_seconds: dict[str, float] | None = None,
        exit_if_stuck: bool = False,
    ) -> Worker: ...
    @staticmethod
    def from_env(handler: _Handler, **overrides: Any) -> Worker:
        """Settings from ``REDIS_URL``, ``GPUQ_QUEUE``, ``GPUQ_CALLBACK_URL``, ``GPUQ_CALLBACK_SECRET``, ``GPUQ_STORAGE_DIR`` / ``GPUQ_S3_*``, ...; keywords override them."""
    @property
    def consumer(self) -> str: ...
    def run(self, *, handle_signals: bool = True) -> None:
        """Serves until SIGTERM/ctrl-c or ``stop()``; raises ``WorkerError`` if the callback service refuses this worker."""
    def stop(self) -> None: ...

class JobFailed(Exception): ...
class RetryableError(JobFailed): ...
class PermanentError(JobFailed): ...
class ConfigError(ValueError): ...
class WorkerError(Exception): ...
