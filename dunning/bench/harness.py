"""`dunning bench`: the sample shop through the pipeline, phase by phase, beside a baseline.

One run, on a fresh PostgreSQL database of its own (created on the server the user named,
dropped at the end unless kept):

1. generate N orders of M merchants (cold file) and the changed snapshots of a fraction
   of them (delta file), in one pass, into a temporary folder;
2. the bare baseline (`dunning.bench.baseline`) on the cold file: the yardstick;
3. parse+validate alone (no database): what the sync's reader thread costs in CPU;
4. cold run: sync (load), detect, handover, report -- the cores the flows wrap;
5. incremental run on the delta file an hour later (the hourly schedule; the same local
   day): sync, detect, handover, report;
6. the first run of the next day on the same delta (nothing new): what the day roll costs
   (installments falling due, and the board's rebuild: every open case's overdue_days moves);
7. escalation rounds against the local partner server and an SMTP sink (aiosmtpd), as of
   later days, so that reminders and then handovers fall due; bounded to about
   `escalation_steps` steps by running one shard of `k` (k chosen from the due count);
8. with `shards` > 1: the cold run again on a second fresh database, one OS process per
   shard at once; its case rows must equal those of the unsharded run.

Before the baseline, the cold run, the sharded run and the incremental run the machine is
settled (`sync`, `CHECKPOINT`): each starts without the previous phase's writes pending.

Task runs are counted as the flows would make them (one `sync-batches` task per chunk of
10 batches, plan and finish; one task each for detect, handover and refresh; three for
escalation): the phases run the plain-Python cores, not Prefect, so that each phase can be
timed on its own. Peak RSS is this process's (VmHWM, reset before each phase); the
PostgreSQL server's memory is not included.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

DEFAULT_AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)
BENCH_ENV = {
    "DUNNING_DEFAULT_AUTO_OVERDUE": "true",
    "DUNNING_DEFAULT_AUTO_CHARGEBACKS": "true",
}
# The incremental run comes one scheduled run (an hour) after the cold one.
INCREMENTAL_AFTER = timedelta(hours=1)
# Tasks per flow run besides sync (which makes plan + one per chunk + finish).
TASKS = {"detect": 1, "handover": 1, "escalate": 3, "report": 1}


@dataclass
class BenchConfig:
    orders: int
    merchants: int
    changed_fraction: float = 0.01
    server_url: str = ""  # any database on the server; a fresh one is created beside it
    shards: int = 1
    seed: int = 1
    as_of: datetime = DEFAULT_AS_OF
    escalation_steps: int = 10_000
    escalation_rounds: int = 3
    keep_database: bool = False
    workdir: Path | None = None


@dataclass
class Phase:
    run: str  # baseline / cold / incremental / escalation / sharded
    name: str
    seconds: float
    rows: int
    peak_rss_mib: float
    task_runs: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows_per_s"] = round(self.rows_per_s, 1)
        d["seconds"] = round(self.seconds, 3)
        return d


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


def timed(run: str, name: str, fn: Callable[[], Any], rows: Callable[[Any], int]) -> tuple:
    reset_peak_rss()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    return Phase(run, name, seconds, rows(result), peak_rss_mib()), result


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
            for name in ("shared_buffers", "work_mem", "max_wal_size", "synchronous_commit"):
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


# --- data -------------------------------------------------------------------------------------


def write_sample(cfg: BenchConfig, folder: Path) -> tuple[Path, Path, int, int, datetime]:
    """The cold file and the delta file (changed snapshots), in one pass of the generator."""
    from dunning.sample.generator import generate_orders, mutate_orders

    cold, delta = folder / "orders.jsonl", folder / "delta.jsonl"
    as_of_2 = cfg.as_of + INCREMENTAL_AFTER
    written = 0
    with cold.open("wb") as out:
        buf: list[bytes] = []

        def tee(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            nonlocal written
            for rec in records:
                buf.append(orjson.dumps(rec))
                written += 1
                if len(buf) >= 2000:
                    out.write(b"\n".join(buf) + b"\n")
                    buf.clear()
                yield rec

        records = generate_orders(cfg.orders, cfg.merchants, cfg.seed, cfg.as_of)
        changed = 0
        with delta.open("wb") as dout:
            for rec in mutate_orders(tee(records), cfg.changed_fraction, cfg.seed, as_of_2):
                dout.write(orjson.dumps(rec) + b"\n")
                changed += 1
        if buf:
            out.write(b"\n".join(buf) + b"\n")
    return cold, delta, written, changed, as_of_2


# --- phases ---------------------------------------------------------------------------------


def parse_validate(path: Path, batch_size: int) -> int:
    """What the sync's reader does per batch, without the database: read, parse, validate."""
    from dunning.tasks.orders_sink import prepare_batch
    from dunning.tasks.source import open_source
    from dunning.tasks.sync_chunks import gc_paused

    src = open_source(str(path))
    valid = 0
    with gc_paused():
        try:
            for b in src.batches("", None, batch_size):
                valid += len(prepare_batch(b.items, None).orders)
                if b.done:
                    break
        finally:
            src.close()
    return valid


def pipeline_phases(
    run: str,
    url: str,
    source: Path,
    as_of: datetime,
    settings: Any,
    *,
    shard: int | None = None,
    shards: int = 1,
) -> list[Phase]:
    """sync (load), detect, handover, report: the cores of the flows of `dunning_run`."""
    from dunning.tasks.detect import detect_cases_core
    from dunning.tasks.handover import apply_handover_core
    from dunning.tasks.report import refresh_report
    from dunning.tasks.sync_run import run_sync

    phases = []
    p, res = timed(
        run,
        "load",
        lambda: run_sync(url, str(source), as_of=as_of, shard=shard, shards=shards),
        lambda r: r.counts.inserted + r.counts.updated,
    )
    p.task_runs = 2 + res.chunks
    p.details = {**res.counts.as_dict(), "batches": res.batches}
    phases.append(p)
    p, res = timed(
        run,
        "detect",
        lambda: detect_cases_core(url, as_of, settings, shard=shard, shards=shards),
        lambda r: r["candidates"],
    )
    p.task_runs, p.details = TASKS["detect"], res
    phases.append(p)
    p, res = timed(
        run,
        "handover",
        lambda: apply_handover_core(url, as_of, settings, shard=shard, shards=shards),
        lambda r: sum(v for v in r.values() if isinstance(v, int)),
    )
    p.task_runs, p.details = TASKS["handover"], dict(res)
    phases.append(p)
    p, res = timed(
        run,
        "report",
        lambda: refresh_report(url, as_of, timezone=settings.timezone, shard=shard, shards=shards),
        lambda r: r.cases,
    )
    p.task_runs = TASKS["report"]
    p.details = {
        "cases": res.cases,
        "snapshot_rows": res.snapshot_rows,
        "mode": res.mode,
        "rows_rewritten": res.rows_rewritten,
    }
    phases.append(p)
    return phases


def due_by_shard(url: str, as_of: datetime, shards: int) -> list[int]:
    from sqlalchemy import text

    from dunning.db import get_engine

    sql = text(
        "SELECT m.shard_key % :k, COUNT(*) FROM cases c JOIN merchants m USING (merchant_id) "
        "WHERE c.state IN ('scheduled', 'reminder_1', 'reminder_2') AND c.next_step_at <= :t "
        "GROUP BY 1"
    )
    counts = [0] * shards
    with get_engine(url).connect() as conn:
        for key, n in conn.execute(sql, {"k": shards, "t": as_of}):
            counts[int(key)] = int(n)
    return counts


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
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "aiosmtpd",
                    "-n",
                    "-l",
                    f"127.0.0.1:{self.smtp_port}",
                    "-c",
                    "aiosmtpd.handlers.Sink",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dunning.servers.partner_api",
                    "--port",
                    str(self.partner_port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
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


def escalation_rounds(
    url: str, start: datetime, settings: Any, target_steps: int, rounds: int, processes: int = 1
) -> list[Phase]:
    """Rounds `reminder_2_days`+1 days apart on one shard of k with ~`target_steps` due.
    With `processes` > 1, round 1 again on other cases as that many shard processes at
    once (see parallel_round)."""
    from dunning.tasks.escalate import run_escalation

    with LocalServers() as servers:
        cfg = settings.model_copy(
            update={"smtp_url": servers.smtp_url, "partner_url": servers.partner_url}
        )
        # Shard of the first round fixed for all rounds: the same cases walk up the ladder.
        total = sum(due_by_shard(url, start, 1))
        k = max(1, round(total / target_steps)) if target_steps > 0 else 1
        phases = []
        gap = timedelta(days=max(cfg.default_reminder_1_days, cfg.default_reminder_2_days) + 1)
        for n in range(rounds):
            as_of = start + n * gap
            due = due_by_shard(url, as_of, k)[0]
            p, res = timed(
                "escalation",
                f"escalate r{n + 1}",
                lambda as_of=as_of: run_escalation(as_of, url, 0, k, cfg),
                lambda r: r.get("claimed", 0),
            )
            p.task_runs = TASKS["escalate"]
            p.details = {
                "as_of": as_of.isoformat(),
                "shard": f"0/{k}",
                "due_before": due,
                "performed": res.get("performed", {}),
            }
            phases.append(p)
            if n == 0 and processes > 1:
                phases += parallel_round(url, as_of, cfg, k, processes)
    return phases


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


def _escalation_worker(url: str, as_of: datetime, shard: int, shards: int, cfg, q, go) -> None:
    try:
        from dunning.tasks.escalate import run_escalation

        q.put(("ready", shard))
        go.wait()
        result = run_escalation(as_of, url, shard, shards, cfg)
        q.put((shard, result.get("claimed", 0), result.get("performed", {}), None))
    except BaseException as exc:  # handed to the parent
        q.put((shard, 0, {}, repr(exc)))


def parallel_round(url: str, as_of: datetime, cfg: Any, k: int, processes: int) -> list[Phase]:
    """Round 1 as `processes` shard processes at once (as n process workers would run the
    escalation flow's shards), on cases the single-process rounds never touch: shards
    1..P of P*k hold the cases of shards 1..P of k (never shard 0), together about as many
    as one shard of k. Needs k > P; skipped otherwise (a small shop)."""
    if k <= processes:
        return []
    shards = processes * k
    argsets = [(url, as_of, s, shards, cfg) for s in range(1, processes + 1)]
    wall, results = at_once(_escalation_worker, argsets)
    performed: Counter = Counter()
    for _, _, done, _ in results:
        performed.update(done)
    phase = Phase(
        "escalation",
        f"escalate r1, {processes} processes",
        wall,
        sum(claimed for _, claimed, _, _ in results),
        peak_rss_mib(),
        TASKS["escalate"] * processes,
        {
            "as_of": as_of.isoformat(),
            "shards": [f"{s}/{shards}" for s in range(1, processes + 1)],
            "performed": dict(performed),
            "note": "peak RSS is the parent's; each process has its own",
        },
    )
    return [phase]


# --- sharded cold run: one OS process per shard -------------------------------------------------


def _shard_worker(url: str, source: str, as_of: datetime, shard: int, shards: int, q, go) -> None:
    os.environ.update(BENCH_ENV)
    from dunning.config import get_settings

    try:
        settings = get_settings()
        from dunning.tasks import detect, handover, report, sync_run  # noqa: F401

        q.put(("ready", shard))
        go.wait()
        started = time.perf_counter()
        phases = pipeline_phases(
            "sharded", url, Path(source), as_of, settings, shard=shard, shards=shards
        )
        q.put((shard, time.perf_counter() - started, [p.as_dict() for p in phases], None))
    except BaseException as exc:  # handed to the parent
        q.put((shard, 0.0, [], repr(exc)))


def run_sharded(url: str, source: Path, as_of: datetime, shards: int) -> dict[str, Any]:
    """The cold pipeline as `shards` processes at once (as n process workers would run it);
    the clock starts when every process has imported its modules."""
    from dunning.db import upgrade

    upgrade(url)
    wall, results = at_once(
        _shard_worker, [(url, str(source), as_of, i, shards) for i in range(shards)]
    )
    return {
        "shards": shards,
        "wall_seconds": round(wall, 3),
        "per_shard": {s: {"seconds": round(sec, 3), "phases": ph} for s, sec, ph, _ in results},
    }


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


# --- the whole benchmark --------------------------------------------------------------------


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    from dunning.bench.baseline import run_baseline
    from dunning.config import Settings, get_settings
    from dunning.db import upgrade

    os.environ.update(BENCH_ENV)
    get_settings.cache_clear()
    tmp = tempfile.TemporaryDirectory(prefix="dunning-bench-", dir=cfg.workdir)
    folder = Path(tmp.name)
    root_before = os.environ.get("DUNNING_SOURCE_ROOT")
    os.environ["DUNNING_SOURCE_ROOT"] = str(folder)  # the generated shops are read from here
    get_settings.cache_clear()
    result: dict[str, Any] = {
        "config": {
            "orders": cfg.orders,
            "merchants": cfg.merchants,
            "changed_fraction": cfg.changed_fraction,
            "shards": cfg.shards,
            "seed": cfg.seed,
            "as_of": cfg.as_of.isoformat(),
            "task_runs": "counted as the flows would make them; phases run the flow cores",
        },
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    url = create_database(cfg.server_url)
    sharded_url = None
    try:
        result["machine"] = machine_info(libpq(url))
        log(f"database {url.rsplit('/', 1)[-1]}; generating {cfg.orders:,} orders ...")
        started = time.perf_counter()
        cold, delta, n, changed, as_of_2 = write_sample(cfg, folder)
        result["generate_seconds"] = round(time.perf_counter() - started, 2)
        result["config"]["changed_orders"] = changed
        log(f"generated {n:,} orders, {changed:,} changed, in {result['generate_seconds']} s")

        phases: list[Phase] = []
        result["config"]["settled"] = settle(url)
        reset_peak_rss()
        base = run_baseline(cold, libpq(url), cfg.as_of.date())
        for name, seconds in base.seconds.items():
            rows = base.orders if name != "sql" else base.cases
            phases.append(Phase("baseline", name, seconds, rows, peak_rss_mib()))
        result["baseline"] = {
            "seconds": {k: round(v, 3) for k, v in base.seconds.items()},
            "total_seconds": round(base.total_seconds, 3),
            "orders": base.orders,
            "installments": base.installments,
            "transactions": base.transactions,
            "cases": base.cases,
        }
        log(f"baseline {base.total_seconds:.1f} s")

        settings = Settings(database_url=url)
        p, _valid = timed("cold", "parse+validate", lambda: parse_validate(cold, 5000), int)
        p.details = {"note": "reader alone, no database; inside load it overlaps the writes"}
        phases.append(p)
        log(f"parse+validate {p.seconds:.1f} s")
        upgrade(url)
        settle(url)
        cold_phases = pipeline_phases("cold", url, cold, cfg.as_of, settings)
        phases += cold_phases
        log("cold " + ", ".join(f"{p.name} {p.seconds:.1f} s" for p in cold_phases))
        cold_total = sum(p.seconds for p in cold_phases)
        if cfg.shards > 1:
            # The same cold run as `shards` processes on a second database; its case rows
            # must equal the unsharded run's (compared before the incremental run).
            sharded_url = create_database(cfg.server_url)
            log(f"sharded cold run: {cfg.shards} processes ...")
            settle(sharded_url)
            sharded = run_sharded(sharded_url, cold, cfg.as_of, cfg.shards)
            sharded["same_case_rows"] = case_rows(url) == case_rows(sharded_url)
            sharded["unsharded_cold_seconds"] = round(cold_total, 3)
            sharded["load_after"] = [round(x, 2) for x in os.getloadavg()]
            result["sharded"] = sharded
            drop_database(cfg.server_url, sharded_url)
            sharded_url = None
            log(
                f"sharded wall {sharded['wall_seconds']} s vs unsharded {cold_total:.1f} s; "
                f"same case rows: {sharded['same_case_rows']}"
            )
        settle(url)
        inc_phases = pipeline_phases("incremental", url, delta, as_of_2, settings)
        phases += inc_phases
        log("incremental " + ", ".join(f"{p.name} {p.seconds:.1f} s" for p in inc_phases))
        next_day = cfg.as_of + timedelta(days=1)
        day_phases = pipeline_phases("next day", url, delta, next_day, settings)
        phases += day_phases
        log("next day " + ", ".join(f"{p.name} {p.seconds:.1f} s" for p in day_phases))
        if cfg.escalation_rounds > 0:
            esc = escalation_rounds(
                url,
                cfg.as_of + timedelta(days=2),
                settings,
                cfg.escalation_steps,
                cfg.escalation_rounds,
                processes=cfg.shards,
            )
            phases += esc
            log("escalation " + ", ".join(f"{p.rows} steps {p.seconds:.1f} s" for p in esc))

        inc_total = sum(p.seconds for p in inc_phases)
        result["summary"] = {
            "cold_pipeline_seconds": round(cold_total, 2),
            "cold_sync_orders_per_s": round(cold_phases[0].rows_per_s, 1),
            "ratio_to_baseline": round(cold_total / base.total_seconds, 2),
            "incremental_seconds": round(inc_total, 2),
            "next_day_seconds": round(sum(p.seconds for p in day_phases), 2),
            "task_runs_cold": sum(p.task_runs for p in cold_phases) + TASKS["escalate"],
            "peak_rss_mib": round(max(p.peak_rss_mib for p in phases), 1),
        }
        if cfg.escalation_rounds > 0 and esc:
            single = [p for p in esc if "processes" not in p.name]
            steps = sum(p.rows for p in single)
            secs = sum(p.seconds for p in single)
            result["summary"]["escalation_steps_per_s"] = round(steps / secs, 1) if secs else 0
            result["summary"]["escalation_seconds_per_10k"] = (
                round(10_000 * secs / steps, 1) if steps else None
            )
            for p in esc:
                if p not in single and p.rows:
                    result["summary"]["escalation_seconds_per_10k_sharded"] = round(
                        10_000 * p.seconds / p.rows, 1
                    )

        result["phases"] = [p.as_dict() for p in phases]
        result["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
        result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return result
    finally:
        tmp.cleanup()
        if root_before is None:
            os.environ.pop("DUNNING_SOURCE_ROOT", None)
        else:
            os.environ["DUNNING_SOURCE_ROOT"] = root_before
        get_settings.cache_clear()
        if not cfg.keep_database:
            drop_database(cfg.server_url, url)
            if sharded_url:
                drop_database(cfg.server_url, sharded_url)
        else:
            result["database_url"] = url


def render(result: dict[str, Any]):
    """A Rich table of the phases plus the summary lines."""
    from rich.table import Table

    table = Table(title=f"dunning bench: {result['config']['orders']:,} orders")
    for col in ("run", "phase", "seconds", "rows", "rows/s", "peak RSS MiB", "task runs"):
        table.add_column(col, justify="left" if col in ("run", "phase") else "right")
    for p in result["phases"]:
        table.add_row(
            p["run"],
            p["name"],
            f"{p['seconds']:.2f}",
            f"{p['rows']:,}",
            f"{p['rows_per_s']:,.0f}",
            f"{p['peak_rss_mib']:.0f}",
            str(p["task_runs"]),
        )
    return table
