"""The sync's worker process (large plain files into PostgreSQL): the file tests again with
every file read through a worker; a worker's errors, its reuse, and its end when the
caller stops early or the worker dies."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import UTC, datetime

import pytest

from dunning.db import upgrade
from dunning.sample import generate_orders, write_jsonl
from dunning.tasks import sync_chunks, sync_worker
from dunning.tasks.source import FileSource, SourceError
from dunning.tasks.sync_run import run_sync
from tests.integration.tasks import test_sync_file as file_tests

AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)
pytestmark = pytest.mark.postgres


@pytest.fixture
def worker_for_every_file(monkeypatch) -> list:
    """Every plain file goes through a worker; the jobs it was given are listed."""
    jobs: list = []
    real = sync_worker.worker_batches

    def recorded(job, *rest):
        jobs.append(job)
        return real(job, *rest)

    monkeypatch.setattr(sync_worker, "WORKER_MIN_BYTES", 1)
    monkeypatch.setattr(sync_chunks, "worker_batches", recorded)
    return jobs


@pytest.mark.parametrize(
    "case",
    [
        file_tests.test_full_load_counts_and_rows,
        file_tests.test_incremental_load_takes_only_changes,
        file_tests.test_a_newer_snapshot_leaves_exactly_its_own_children,
        file_tests.test_newest_wins_out_of_order,
        file_tests.test_crash_between_batches_then_rerun_converges,
        file_tests.test_quarantined_order_fixed_later_is_resolved,
        file_tests.test_buyer_type_is_stored_and_an_unknown_one_quarantined,
        file_tests.test_two_syncs_at_once_insert_each_order_once,
    ],
    ids=lambda case: case.__name__.removeprefix("test_"),
)
def test_file_sync_through_a_worker(case, worker_for_every_file, postgres_url, tmp_path):
    upgrade(postgres_url)
    case(postgres_url, tmp_path)
    assert worker_for_every_file, "the worker was not used"


def test_awkward_text_and_broken_lines_come_through_the_worker_as_through_the_thread(
    worker_for_every_file, postgres_url, tmp_path
):
    """COPY text is escaped where a field holds a tab, a newline or a backslash; broken
    lines are quarantined with their field and reason either way."""
    shop = list(generate_orders(300, merchants=3, seed=4, as_of=AS_OF))
    shop[5]["buyer"]["last_name"] = "Tab\there, new\nline, back\\slash, \u00fc"
    shop[6]["product"]["name"] = "\\N"  # the text, not a NULL
    shop[7]["total_amount"] = "12.345"  # quarantined: more than two decimals
    path = tmp_path / "shop.jsonl"
    write_jsonl(shop, path)
    with path.open("ab") as f:
        f.write(b"{not json\n")
    sqlite = f"sqlite:///{tmp_path / 'thread.db'}"
    for url in (postgres_url, sqlite):
        upgrade(url)
        result = run_sync(url, str(path), batch_size=100, as_of=AS_OF)
        assert (result.counts.inserted, result.counts.quarantined) == (299, 2)
    assert worker_for_every_file and len(worker_for_every_file) == 1  # SQLite: no worker
    assert file_tests.snapshot(postgres_url) == file_tests.snapshot(sqlite)
    assert _quarantine(postgres_url) == _quarantine(sqlite)
    assert any("Tab\there, new\nline, back\\slash" in b[1] for b in _buyers(postgres_url))


def _quarantine(url: str) -> list[tuple]:
    from sqlalchemy import select

    from dunning.db import get_engine
    from dunning.models.schema import QuarantinedRecord as Q

    with get_engine(url).connect() as conn:
        return sorted(conn.execute(select(Q.position, Q.order_id, Q.field, Q.reason)).all())


def _buyers(url: str) -> list[tuple]:
    from sqlalchemy import select

    from dunning.db import get_engine
    from dunning.models.schema import Buyer, Order

    with get_engine(url).connect() as conn:
        rows = conn.execute(select(Buyer.order_id, Buyer.last_name)).all()
        names = conn.execute(select(Order.product_name).where(Order.product_name == "\\N")).all()
        assert len(names) == 1
        return rows


def _job(path, batches: int = 10, batch_size: int = 100) -> sync_worker.ChunkJob:
    src = FileSource(path)
    return sync_worker.ChunkJob(
        str(path), src.max_line_bytes, src.name, "", None, AS_OF, batch_size, batches, None, 1
    )


def _shop(folder, name: str, orders: int, seed: int):
    path = folder / name
    write_jsonl(generate_orders(orders, merchants=3, seed=seed, as_of=AS_OF), path)
    return path


@pytest.fixture
def shop_file(tmp_path):
    return _shop(tmp_path, "shop.jsonl", 500, seed=2)


def test_a_workers_error_is_raised_here_and_the_worker_serves_on(shop_file, tmp_path):
    gone = tmp_path / "gone.jsonl"
    gone.write_bytes(shop_file.read_bytes())
    job = _job(gone)
    gone.unlink()
    with pytest.raises(SourceError, match="cannot read"):  # found before a worker starts
        list(sync_worker.worker_batches(job))
    with pytest.raises(SourceError, match="source file not found"):  # the worker's own
        list(sync_worker._Running(job))
    (worker,) = sync_worker._IDLE[-1:]
    batches = list(sync_worker.worker_batches(_job(shop_file)))
    assert sum(len(prepared.orders) for _, prepared in batches) == 500
    assert batches[-1][0].done
    assert worker in sync_worker._IDLE and worker.process.poll() is None  # serves on


def test_the_next_chunk_is_read_ahead_and_taken_by_the_next_call(shop_file):
    """Chunks of 2 x 100 lines: each call's batches are those of one chunk, the next chunk
    is waiting read ahead when the next call asks for it, and all 500 orders arrive once."""
    src = FileSource(shop_file)
    position, seen, taken_ahead = "", [], 0
    while True:
        job = sync_worker.replace(_job(shop_file, batches=2), position=position)
        key = (src.identity, sync_worker._bounded(job))
        taken_ahead += key in sync_worker._AHEAD
        batches = list(sync_worker.worker_batches(job, src.identity))
        assert len(batches) <= 2
        seen += [oid for _, p in batches for oid in p.orders.ids]
        position = batches[-1][0].next_position
        if batches[-1][0].done:
            break
    assert len(seen) == len(set(seen)) == 500
    assert taken_ahead == 2  # chunks 2 and 3 of 3
    assert not sync_worker._AHEAD  # nothing left behind after the last chunk


@pytest.fixture
def long_file(tmp_path):
    """Long enough that a worker is still busy when the test acts (~0.3 s of work)."""
    return _shop(tmp_path, "long.jsonl", 20_000, seed=3)


def test_a_caller_that_stops_early_ends_its_worker(long_file, shop_file):
    batches = sync_worker.worker_batches(_job(long_file, batch_size=50, batches=400))
    first, _ = next(batches)
    assert not first.done
    busy = _busy_worker_pid()
    batches.close()
    assert not os.path.exists(f"/proc/{busy}") and busy not in _idle_pids()
    # the next job gets a worker that answers
    assert sum(len(p.orders) for _, p in sync_worker.worker_batches(_job(shop_file))) == 500


def test_a_worker_that_dies_mid_chunk_fails_the_chunk_plainly(long_file):
    batches = sync_worker.worker_batches(_job(long_file, batch_size=50, batches=400))
    next(batches)
    os.kill(_busy_worker_pid(), signal.SIGKILL)
    with pytest.raises(sync_worker.WorkerFailed, match="ended early"):
        list(batches)


def _busy_worker_pid() -> int:
    """The one worker child of this process that is not idle."""
    (pid,) = [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and _is_worker(int(p)) and int(p) not in _idle_pids()
    ]
    return pid


def _idle_pids() -> set[int]:
    return {w.process.pid for w in sync_worker._IDLE}


def _is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        with open(f"/proc/{pid}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return False
    return b"dunning.tasks.sync_worker" in cmd and parent == os.getpid()


_KILLED_SYNC = """
import sys
from datetime import datetime
from dunning.tasks import sync_worker
from dunning.tasks.sync_run import run_sync
sync_worker.WORKER_MIN_BYTES = 1
run_sync(sys.argv[1], sys.argv[2], batch_size=100, batches_per_chunk=2,
         as_of=datetime.fromisoformat(sys.argv[3]))
"""


def test_a_sync_killed_with_its_workers_running_leaves_no_worker_and_converges(
    postgres_url, long_file, tmp_path
):
    """SIGKILL after the third committed batch (a chunk being written, the next read
    ahead): the workers end on their own, and a rerun loads what a clean load does."""
    import subprocess
    import sys
    import time

    upgrade(postgres_url)
    mark = f"SYNC_WORKER_TEST={uuid.uuid4().hex}"  # its workers inherit the environment
    env = {
        **os.environ,
        "DUNNING_CRASH_AT": "sync.batch:3",
        "DUNNING_SOURCE_ROOT": str(tmp_path),
        mark.split("=")[0]: mark.split("=")[1],
    }
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_SYNC, postgres_url, str(long_file), AS_OF.isoformat()],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert file_tests.rows(postgres_url)["orders"] == 300  # three batches committed
    deadline = time.monotonic() + 10
    while _workers_with(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _workers_with(mark)
    rerun = run_sync(postgres_url, str(long_file), batch_size=5000, as_of=AS_OF)
    assert (rerun.counts.inserted, rerun.counts.unchanged) == (19_700, 300)
    clean = f"sqlite:///{tmp_path / 'clean.db'}"
    upgrade(clean)
    run_sync(clean, str(long_file), as_of=AS_OF)
    assert file_tests.snapshot(clean) == file_tests.snapshot(postgres_url)


def _workers_with(mark: str) -> list[int]:
    """Live worker processes whose environment holds `mark`."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{p}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{p}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"dunning.tasks.sync_worker" in cmd and mark.encode() in environ and state != "Z":
            found.append(int(p))
    return found


def test_a_shard_reads_no_chunk_ahead(shop_file):
    """Shard processes already share the cores: each keeps to one worker."""
    src = FileSource(shop_file)
    job = sync_worker.replace(_job(shop_file, batches=2), shards=2, shard=0)
    batches = list(sync_worker.worker_batches(job, src.identity))
    assert not batches[-1][0].done and not sync_worker._AHEAD
