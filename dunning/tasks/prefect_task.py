"""`@task` for the task modules, with Prefect imported only when a flow uses the task.

The CLI and the tests call the plain functions of these modules (`.fn`, or the function the
task wraps); importing Prefect costs ~2 s per command, which only what runs flows should pay.
The Prefect `Task` is built on first use, with the options given here, and every task of
the pipeline runs without Prefect's result cache: each run must do its work again.

Tasks that talk to the outside world say so with `calls_outside=True` (the tests check they
retry), not with a tag: Prefect acquires a concurrency lease for every tag of a task run,
and the first acquisition after a few idle seconds cost 1.7 s per run (measured, Prefect
3.9: the sync's only task run of an hourly run spent 1.7 of its 2.0 s there).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


class LazyTask:
    """A Prefect task built on first use; calls and attributes go to it."""

    def __init__(
        self, fn: Callable[..., Any], options: dict[str, Any], calls_outside: bool = False
    ) -> None:
        self.fn = fn
        self.calls_outside = calls_outside
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


def task(calls_outside: bool = False, **options: Any) -> Callable[[Callable[..., Any]], LazyTask]:
    """Like `prefect.task(**options)`, built when a flow first calls or inspects it.
    `calls_outside`: the task reads or sends to a system outside the database."""
    return lambda fn: LazyTask(fn, options, calls_outside)
