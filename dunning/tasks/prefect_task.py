"""`@task` for the task modules, with Prefect imported only when a flow uses the task.

The CLI and the tests call the plain functions of these modules (`.fn`, or the function the
task wraps); importing Prefect costs ~2 s per command, which only what runs flows should pay.
The Prefect `Task` is built on first use, with the options given here, and every task of
the pipeline runs without Prefect's result cache: each run must do its work again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


class LazyTask:
    """A Prefect task built on first use; calls and attributes go to it."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self.fn = fn
        self._options = options
        self._task: Any = None
        functools.update_wrapper(self, fn)

    @property
    def task(self) -> Any:
        if self._task is None:
            from prefect import task
            from prefect.cache_policies import NO_CACHE

            self._task = task(cache_policy=NO_CACHE, **self._options)(self.fn)
        return self._task

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.task(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)


def task(**options: Any) -> Callable[[Callable[..., Any]], LazyTask]:
    """Like `prefect.task(**options)`, built when a flow first calls or inspects it."""
    return lambda fn: LazyTask(fn, options)
