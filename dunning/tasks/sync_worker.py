"""A chunk of a large file read, validated and encoded for COPY in a worker process.

In threads, the sync's Python work (parse, validate, encode: ~15 s at a million orders)
and the writer's share one GIL, and the load took twice that work's time. Worker processes
do it while the writer only hands bytes to PostgreSQL; unsharded, a second worker reads
the next chunk ahead meanwhile, so that the server rarely waits. They are used for
a plain file with `WORKER_MIN_BYTES` or more left to read into PostgreSQL; smaller reads
(an hourly change file), gzip files (which cannot seek: their reader is kept open between
chunks) and the orders API (bound by the network) stay on the reader thread.

A worker is a `python -m dunning.tasks.sync_worker` of its own (no fork of a process with
threads, no re-import of the caller's main module); it serves one chunk after another
and waits idle in between, so its start (~0.5 s) is paid once per process. Jobs and
batches travel as pickles over two pipes. A worker whose parent is gone reads EOF, or
fails to write, and ends.
"""

from __future__ import annotations

import atexit
import gc
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from dunning.tasks.orders_sink import PreparedBatch
from dunning.tasks.read_groups import prepared_batches
from dunning.tasks.source import Batch, FileSource, SourceError

WORKER_MIN_BYTES = 32 << 20  # ~30,000 orders: below that the thread keeps up


@dataclass(frozen=True)
class ChunkJob:
    path: str  # the file, already allowed by the parent (the worker reads no settings)
    max_line_bytes: int
    source: str  # the source's name, as written into `orders`
    position: str
    since: datetime | None
    as_of: datetime
    batch_size: int
    max_batches: int
    shard: int | None
    shards: int
    end: int | None = None  # where to stop (a line's start; set by `_bounded`)
    following: str = ""  # the position after `end`


class WorkerFailed(RuntimeError):
    """The worker ended without saying why (killed, out of memory)."""


def worth_a_worker(src: Any, position: str) -> bool:
    """A plain file with at least WORKER_MIN_BYTES after `position`."""
    if type(src) is not FileSource or src.gz:
        return False
    offset = int((position or "0:0").split(":")[0])
    return src.size - offset >= WORKER_MIN_BYTES


# --- framing: a length, then a pickle -----------------------------------------------------

_LENGTH = struct.Struct("!Q")


def _send(out: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(data)))
    out.write(data)
    out.flush()


def _receive(source: BinaryIO) -> Any:
    head = source.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError
    size = _LENGTH.unpack(head)[0]
    data = source.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


# --- the parent's side ----------------------------------------------------------------------


class _Worker:
    def __init__(self) -> None:
        jobs_r, jobs_w = os.pipe()
        out_r, out_w = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(jobs_r), str(out_w)],
            pass_fds=(jobs_r, out_w),
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": _package_root()},
        )
        os.close(jobs_r)
        os.close(out_w)
        self.jobs = os.fdopen(jobs_w, "wb")
        self.results = os.fdopen(out_r, "rb", buffering=1 << 20)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.jobs.close()
        self.results.close()


def _package_root() -> str:
    """Where `dunning` is imported from here, first on the worker's path (whatever this
    process added to its own `sys.path`, the worker would not know)."""
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)


_IDLE: list[_Worker] = []
_IDLE_LOCK = threading.Lock()


def _take() -> _Worker:
    with _IDLE_LOCK:
        while _IDLE:
            worker = _IDLE.pop()
            if worker.process.poll() is None:
                return worker
            worker.stop()
    return _Worker()


def worker_batches(
    job: ChunkJob, identity: tuple | None = None
) -> Iterator[tuple[Batch, PreparedBatch]]:
    """The chunk's batches as a worker prepares them, each with its orders encoded. The
    chunk is `max_batches * batch_size` lines; unsharded, the next chunk is read ahead by a
    second worker meanwhile, for the next call (`identity`: the file's, see FileSource).
    An error of a worker (an unreadable file, say) is raised here."""
    job = _bounded(job)
    assert job.end is not None
    running = _claim_ahead((identity, job)) or _Running(job)
    try:
        if job.end < _size(job.path) and _reads_ahead(job):
            following = _bounded(replace(job, position=job.following, end=None))
            _read_ahead((identity, following), _Running(following))
        yield from running
    finally:
        running.cancel()


def _reads_ahead(job: ChunkJob) -> bool:
    """Unsharded only: shards run as processes of their own, each with its worker, and
    already share the cores (two shards of a million: load 29-30 s with the read-ahead,
    27-29 s without)."""
    return job.shards == 1


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # gone: nothing to read ahead


def _bounded(job: ChunkJob) -> ChunkJob:
    """The job with the offset where its lines end, and the position that follows."""
    offset, line_no = (int(p) for p in (job.position or "0:0").split(":"))
    try:
        with open(job.path, "rb") as f:
            end, end_line = _after_lines(f, offset, line_no, job.max_batches * job.batch_size)
    except OSError as exc:
        raise SourceError(f"cannot read {job.path}: {exc}") from None
    return replace(job, end=end, following=f"{end}:{end_line}")


# The next chunk of a file, read ahead: claimed by the call that asks for it; the oldest
# is ended once more are waiting (a sync that stopped leaves its last one behind).
_AHEAD: dict[tuple, _Running] = {}
_AHEAD_LOCK = threading.Lock()
_AHEAD_MAX = 2


def _claim_ahead(key: tuple) -> _Running | None:
    with _AHEAD_LOCK:
        return _AHEAD.pop(key, None)


def _read_ahead(key: tuple, running: _Running) -> None:
    with _AHEAD_LOCK:
        _AHEAD[key] = running
        stale = list(_AHEAD)[:-_AHEAD_MAX]
        ended = [_AHEAD.pop(k) for k in stale]
    for old in ended:
        old.cancel()


def _after_lines(f: BinaryIO, offset: int, line_no: int, lines: int) -> tuple[int, int]:
    """Where the line `lines` lines after `offset` starts, and its number less one (the end
    of the file, if it comes first). Counted in blocks: ~1 ms per 5 MB."""
    f.seek(offset)
    while lines > 0:
        block = f.read(1 << 22)
        if not block:
            return offset, line_no
        found = block.count(b"\n")
        if found < lines:
            offset, line_no, lines = offset + len(block), line_no + found, lines - found
            continue
        at = -1
        for _ in range(lines):
            at = block.index(b"\n", at + 1)
        return offset + at + 1, line_no + lines
    return offset, line_no


class _Running:
    """A job on a worker, its messages received on a thread of their own: the worker never
    waits for this process to read (a chunk's messages are some tens of MB at most)."""

    def __init__(self, job: ChunkJob) -> None:
        self.job = job
        self.last_taken = False
        self.worker = _take()
        self.messages: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.ended = self.cancelled = False
        try:
            _send(self.worker.jobs, job)
        except BrokenPipeError:
            self.worker.stop()
            raise WorkerFailed("the sync's worker process is gone") from None
        self.thread = threading.Thread(target=self._receive, name="sync-worker-in", daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        worker = self.worker
        try:
            while True:
                message = _receive(worker.results)
                if message is None or isinstance(message, BaseException):
                    break  # its job is over: it waits for the next one
                self.messages.put(message)
        except (EOFError, OSError, ValueError):  # it died, or was ended by `cancel`
            self.messages.put(
                WorkerFailed(
                    f"the sync's worker process ended early (exit code {worker.process.poll()})"
                )
            )
            return
        except Exception as exc:  # an answer that cannot be read: never leave the reader waiting
            self.messages.put(WorkerFailed(f"unreadable answer of the sync's worker: {exc}"))
            return
        with self.lock:  # idle again before the caller learns of the end
            if not self.cancelled:
                self.ended = True
                with _IDLE_LOCK:
                    _IDLE.append(worker)
        self.messages.put(message)

    def __iter__(self) -> Iterator[tuple[Batch, PreparedBatch]]:
        while True:
            message = self.messages.get()
            if message is None:
                return
            if isinstance(message, BaseException):
                raise message
            b = message[0]
            self.last_taken = b.done or b.next_position == self.job.following
            yield message

    def cancel(self) -> None:
        """End the worker unless it finished its job (then it is back among the idle)."""
        if self.last_taken:  # its end follows at once: let it go back to the idle
            self.thread.join()
        with self.lock:
            self.cancelled = True
            if self.ended:
                return
        self.worker.stop()
        self.thread.join()


# --- the worker's side ----------------------------------------------------------------------


def _serve(jobs: BinaryIO, out: BinaryIO) -> None:
    gc.disable()  # see sync_chunks.gc_paused: batches hold no cycles
    while True:
        try:
            job = _receive(jobs)
        except EOFError:
            return  # the parent is gone
        try:
            _run(job, out)
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:  # handed to the parent, raised there
            if type(exc) is not SourceError:  # one the parent surely can unpickle
                exc = WorkerFailed(f"{type(exc).__name__}: {exc}")
            _send(out, exc)


def _run(job: ChunkJob, out: BinaryIO) -> None:
    src = FileSource(Path(job.path), job.max_line_bytes)
    batches = prepared_batches(
        src, job.position, job.since, job.batch_size, shard=job.shard, shards=job.shards,
        as_of=job.as_of, copy_to=job.source, end=job.end,
    )  # fmt: skip
    try:
        for b, prepared in batches:
            _send(out, (b, prepared))
            if b.done:  # else the source stops at the job's end
                break
    finally:
        batches.close()
    _send(out, None)


@atexit.register
def _stop_idle() -> None:
    """Idle workers end once their job pipe closes; wait for them briefly."""
    with _AHEAD_LOCK:
        ahead = list(_AHEAD.values())
        _AHEAD.clear()
    for running in ahead:
        running.cancel()
    with _IDLE_LOCK:
        idle = list(_IDLE)
        _IDLE.clear()
    for worker in idle:
        worker.jobs.close()
        try:
            worker.process.wait(2)
        except subprocess.TimeoutExpired:
            worker.process.kill()
        worker.results.close()


if __name__ == "__main__":
    # Serve from the module as imported by name: what it pickles names its real module.
    from dunning.tasks import sync_worker

    with os.fdopen(int(sys.argv[1]), "rb") as jobs, os.fdopen(int(sys.argv[2]), "wb") as out:
        sync_worker._serve(jobs, out)
