"""The benchmark's surroundings: the machine, its own PostgreSQL databases, a settled
start for each phase, peak memory per phase, local servers and processes started together.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Every merchant without settings of its own is pursued automatically: the sample shop's
# cases go through the whole ladder.
BENCH_ENV = {
    "DUNNING_DEFAULT_AUTO_OVERDUE": "true",
    "DUNNING_DEFAULT_AUTO_CHARGEBACKS": "true",
}


# --- memory: peak RSS per phase ------------------------------------------------------------


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM, so each phase gets its own peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- machine ---------------------------------------------------------------------------------


def machine_info(dsn: str | None = None) -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
    if dsn:
        import psycopg

        with psycopg.connect(dsn) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
            for name in (
                "shared_buffers",
                "work_mem",
                "max_wal_size",
                "synchronous_commit",
                "autovacuum",
            ):
                info[f"pg_{name}"] = conn.execute(f"SHOW {name}").fetchone()[0]
    return info


# --- databases ------------------------------------------------------------------------------


def libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq URL (postgresql://...)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def sa_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"the benchmark needs PostgreSQL, not {u.get_backend_name()}")
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def create_database(server_url: str, prefix: str = "dunning_bench") -> str:
    """A fresh, empty database beside the one named (which is only connected to)."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(sa_url(server_url)).set(database=name).render_as_string(hide_password=False)


def settle(url: str) -> bool:
    """Start a phase from a settled machine: the page cache written out and a CHECKPOINT
    done, so that one phase's writes (the generated files, the baseline's tables) are
    not flushed on the next phase's clock. False when the role may not CHECKPOINT."""
    import psycopg

    os.sync()
    try:
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def drop_database(server_url: str, url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    from dunning.db import dispose_engine

    dispose_engine(url)
    name = make_url(url).database
    with psycopg.connect(libpq(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


CASE_COLUMNS = (
    "order_id, merchant_id, kind, state, dunning_option, currency, default_date, "
    "principal_amount, fees_amount, interest_amount, paid_amount, outstanding_amount, "
    "next_step_at, blocked_reason"
)


def case_rows(url: str) -> list[tuple]:
    """The case rows that must not depend on sharding (no ids, no timestamps of the run)."""
    from sqlalchemy import text

    from dunning.db import get_engine

    with get_engine(url).connect() as conn:
        cols = {c for (c,) in conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'cases'"
        ))}  # fmt: skip
        wanted = ", ".join(c.strip() for c in CASE_COLUMNS.split(",") if c.strip() in cols)
        cases = conn.execute(text(f"SELECT {wanted} FROM cases ORDER BY order_id, state"))
        items = conn.execute(
            text(
                "SELECT c.order_id, i.item_type, i.installment_number, i.due_date, "
                "i.default_date, i.amount, i.paid_amount FROM case_items i "
                "JOIN cases c USING (case_id) ORDER BY 1, 2, 3"
            )
        )
        return [tuple(r) for r in cases] + [("item", *r) for r in items]


# --- local servers and processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[2]} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class LocalServers:
    """The partner API and an SMTP sink (aiosmtpd), each in its own process."""

    def __enter__(self) -> LocalServers:
        self.smtp_port, self.partner_port = free_port(), free_port()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "aiosmtpd", "-n", "-l",
                 f"127.0.0.1:{self.smtp_port}", "-c", "aiosmtpd.handlers.Sink"],
                **quiet,
            ),
            subprocess.Popen(
                [sys.executable, "-m", "dunning.servers.partner_api",
                 "--port", str(self.partner_port)],
                **quiet,
            ),
        ]  # fmt: skip
        try:
            wait_port(self.smtp_port, self.procs[0])
            wait_port(self.partner_port, self.procs[1])
        except BaseException:
            self.__exit__()
            raise
        self.smtp_url = f"smtp://127.0.0.1:{self.smtp_port}"
        self.partner_url = f"http://127.0.0.1:{self.partner_port}"
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def at_once(target: Callable[..., None], argsets: list[tuple]) -> tuple[float, list[tuple]]:
    """Run `target(*args, q, go)` in one spawned process per argset, all at once; the clock
    starts when every process has imported its modules (put ("ready", id) on q) and `go`
    is set. Each process puts one result tuple whose last item is an error or None.
    Returns (wall seconds, results); raises if any process failed."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    go = ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, q, go)) for args in argsets]
    for proc in procs:
        proc.start()
    results = []
    for _ in procs:  # each says "ready", or fails before
        got = q.get()
        if got[0] != "ready":
            results.append(got)
    reset_peak_rss()
    started = time.perf_counter()
    go.set()
    while len(results) < len(procs):
        results.append(q.get())
    wall = time.perf_counter() - started
    for proc in procs:
        proc.join()
    errors = [f"shard {r[0]}: {r[-1]}" for r in results if r[-1]]
    if errors:
        raise RuntimeError("; ".join(errors))
    return wall, results
