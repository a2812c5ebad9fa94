"""A chunk of a large file read, validated and encoded for COPY in a worker process.

In threads, the sync's Python work (parse, validate, encode: ~13 s at a million orders)
and the writer's share one GIL, and the load took twice that work's time. A worker process
does it on the other core while the writer only hands bytes to PostgreSQL. It is used for
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
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from dunning.tasks.orders_sink import PreparedBatch, encode_for_copy, prepare_batch
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


class WorkerFailed(RuntimeError):
    """The worker ended without saying why (killed, out of memory)."""


def worth_a_worker(src: Any, position: str, min_bytes: int | None = None) -> bool:
    """A plain file with at least WORKER_MIN_BYTES after `position`."""
    if type(src) is not FileSource or src.gz:
        return False
    offset = int((position or "0:0").split(":")[0])
    return src.size - offset >= (WORKER_MIN_BYTES if min_bytes is None else min_bytes)


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


def worker_batches(job: ChunkJob) -> Iterator[tuple[Batch, PreparedBatch]]:
    """The chunk's batches as a worker prepares them, each with its orders encoded. An
    error of the worker (an unreadable file, say) is raised here."""
    worker = _take()
    finished = final = False
    try:
        try:
            _send(worker.jobs, job)
        except BrokenPipeError:
            raise WorkerFailed("the sync's worker process is gone") from None
        received = 0
        while True:
            message = _next(worker)
            if message is None:
                finished = True
                return
            if isinstance(message, BaseException):
                finished = True  # it said why and waits for the next job
                raise message
            received += 1
            final = message[0].done or received >= job.max_batches
            yield message
    finally:
        if not finished and final:  # the caller took the last batch: the end follows
            finished = _next(worker) is None
        if finished:
            with _IDLE_LOCK:
                _IDLE.append(worker)
        else:  # stopped early: it would only read on
            worker.stop()


def _next(worker: _Worker) -> Any:
    try:
        return _receive(worker.results)
    except EOFError:
        raise WorkerFailed(
            f"the sync's worker process ended early (exit code {worker.process.poll()})"
        ) from None


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
    batches = src.batches(job.position, job.since, job.batch_size)
    try:
        for n, b in enumerate(batches, start=1):
            prepared = prepare_batch(b.items, job.since, job.shard, job.shards, job.as_of)
            b.items = []  # the parent needs the batch's position and progress only
            _send(out, (b, encode_for_copy(prepared, job.source, job.as_of)))
            if b.done or n >= job.max_batches:
                break
    finally:
        batches.close()
    _send(out, None)


@atexit.register
def _stop_idle() -> None:
    """Idle workers end once their job pipe closes; wait for them briefly."""
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
