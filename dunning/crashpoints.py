"""Test hook: make the process kill itself (SIGKILL) at a named point, for crash tests.

Off unless `DUNNING_CRASH_AT=<point>:<n>` is set in the environment: the n-th time the
process passes `crashpoint("<point>")` it sends itself SIGKILL - no cleanup, no finally, no
commit, exactly like a machine losing power or the OOM killer. tests/reliability uses it to
kill `dunning run` precisely inside sync, escalation (before/after an e-mail is accepted)
and refresh. Costs one dictionary lookup per pass when unset.
"""

from __future__ import annotations

import os
import signal
import threading

_passes: dict[str, int] = {}
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    spec = os.environ.get("DUNNING_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.rpartition(":")
    if point != name:
        return
    with _lock:
        _passes[name] = count = _passes.get(name, 0) + 1
        if count >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
