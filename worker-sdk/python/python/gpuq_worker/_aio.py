"""Running ``async def`` handlers, and awaiting a job's cancellation.

Each job runs on a worker thread of its own, so an ``async def`` handler gets an event loop
of its own there (``asyncio.run``). Cancellation escalates as in the Rust SDK: the soft
signal (``ctx.cancelled`` fires), then ``ctx.cancel_grace`` seconds for the handler to
return by itself, then the hard stop (its task is cancelled).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable


def adapt(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The callable the native worker calls with ``(job, ctx)`` on a worker thread."""
    if not callable(handler):
        raise TypeError(f"the handler must be callable, got {type(handler).__name__}")
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)
    ):
        return functools.partial(_run_async, handler)
    return handler


def _run_async(handler: Callable[..., Any], job: Any, ctx: Any) -> Any:
    return asyncio.run(_supervise(handler(job, ctx), ctx))


async def _supervise(coro: Any, ctx: Any) -> Any:
    task = asyncio.ensure_future(coro)
    cancelled = asyncio.ensure_future(wait_cancelled(ctx.cancelled))
    try:
        await asyncio.wait({task, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=ctx.cancel_grace)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
        return task.result()
    finally:
        cancelled.cancel()


async def wait_cancelled(cancellation: Any) -> None:
    """Returns once ``cancellation`` fires (``await ctx.cancelled``)."""
    if cancellation:
        return
    loop = asyncio.get_running_loop()
    fired = loop.create_future()

    def fire() -> None:
        if not fired.done():
            fired.set_result(None)

    # Called from a runtime thread: hand over to this loop's thread.
    cancellation._on_cancel(lambda: loop.call_soon_threadsafe(fire))
    await fired
