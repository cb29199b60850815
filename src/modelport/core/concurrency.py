"""The one place where the synchronous model world meets the asynchronous serving world."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def run_sync(
    executor: Executor | None, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run a blocking call (a model's predict) on ``executor`` without blocking the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(func, *args, **kwargs))
