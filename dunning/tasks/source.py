"""Where order snapshots come from: a JSON Lines file or the platform's orders API.

One small interface: `open_source(url, token, timeout)` gives a `Source` whose
`batches(position, since, batch_size)` yields `Batch`es of `Item`s. An item is one received
record: its position (line number, page), its raw bytes (kept whole for the quarantine)
and either the parsed JSON value or the reason it could not be parsed (not UTF-8, not JSON,
a line beyond the size limit). Nothing received is dropped silently: blank lines are the
only thing skipped.

Positions are plain strings, so a Prefect task can be handed one and resume there:
- file: `"<byte offset>:<line number>"` of the next line to read;
- API: the `next_cursor` of the last page read (`""` = start).
"""

from __future__ import annotations

import gzip
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from dunning.models.records import RecordError

MAX_LINE_BYTES = 4 * 1024 * 1024
RAW_KEEP_BYTES = 64 * 1024  # what the quarantine keeps of an oversized line
PAGE_LIMIT = 1000
ONE_TICK = timedelta(microseconds=1)


class SourceError(RuntimeError):
    """The source cannot be read at all (missing file, bad URL, refused token)."""


class SourceAuthError(SourceError):
    """The orders API refused the token."""


@dataclass(slots=True)
class Item:
    position: str
    raw: bytes | None  # as received; None when `value` came parsed (the API's pages)
    value: Any  # parsed JSON, or a RecordError when the bytes are not a JSON value

    def raw_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw.rstrip(b"\r\n")
        return orjson.dumps(self.value)


@dataclass(slots=True)
class Batch:
    items: list[Item]
    next_position: str
    done: bool
    bytes_read: int | None = None
    bytes_total: int | None = None


class Source(Protocol):
    name: str
    ordered: bool  # items come oldest change first (the watermark may advance per batch)

    def batches(
        self, position: str, since: datetime | None, batch_size: int
    ) -> Iterator[Batch]: ...

    def close(self) -> None: ...


def open_source(url: str, token: Any = None, timeout: float = 10.0) -> Source:
    url = url.strip()
    if url.startswith(("http://", "https://")):
        return ApiSource(url, token, timeout)
    return FileSource(file_path(url))


def file_path(url: str) -> Path:
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"file URL with a host is not supported: {url}")
        return Path(unquote(parts.path))
    if url.startswith("file:"):
        return Path(url[len("file:") :])
    if "://" in url:
        raise SourceError(
            f"unsupported source {url!r}: use file:PATH, file:///PATH, a path, or http(s)://"
        )
    return Path(url)


def source_name(url: str) -> str:
    """The stable name of a source: watermark key, quarantine source, `sync:<name>`."""
    url = url.strip()
    if url.startswith(("http://", "https://")):
        p = urlsplit(url)
        host = p.hostname or ""
        if p.port:
            host = f"{host}:{p.port}"
        return urlunsplit((p.scheme, host, p.path.rstrip("/"), "", ""))
    return f"file:{file_path(url).expanduser().resolve()}"


# --- JSON Lines files --------------------------------------------------------------------


def _parse_line(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return RecordError(
                "(line)",
                f"is not UTF-8: byte 0x{line[bad.start]:02x} at offset {bad.start} "
                "cannot be decoded",
            )
        return RecordError("(line)", f"is not valid JSON: {exc}")


# Open gzip readers kept between task runs of one process: a gzip stream cannot seek
# cheaply, so the next chunk continues where the last one stopped instead of
# decompressing the file again from the start.
_OPEN_READERS: dict[tuple[tuple[str, int, int], int], Any] = {}
_OPEN_LOCK = threading.Lock()


class FileSource:
    ordered = False  # a file may hold snapshots in any order

    def __init__(self, path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path = path.expanduser()
        self.name = f"file:{self.path.resolve()}"
        self.max_line_bytes = max_line_bytes
        if not self.path.is_file():
            raise SourceError(f"source file not found: {self.path}")
        self.gz = self.path.suffix == ".gz"
        stat = self.path.stat()
        self.size = stat.st_size
        self.identity = (str(self.path), stat.st_mtime_ns, stat.st_size)

    def close(self) -> None:
        with _OPEN_LOCK:
            for key in [k for k in _OPEN_READERS if k[0] == self.identity]:
                _close(_OPEN_READERS.pop(key))

    def _open(self, offset: int):
        with _OPEN_LOCK:
            reader = _OPEN_READERS.pop((self.identity, offset), None)
        if reader is not None:
            return reader
        if self.gz:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed with the reader
            reader = io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 20)
            reader.raw_file = raw  # type: ignore[attr-defined]
            if offset:
                reader.seek(offset)
        else:
            reader = open(self.path, "rb", buffering=1 << 20)  # noqa: SIM115
            reader.raw_file = None  # type: ignore[attr-defined]
            reader.seek(offset)
        return reader

    def _progress(self, reader) -> int:
        raw = reader.raw_file
        return raw.tell() if raw is not None else reader.tell()

    def batches(self, position: str, since: datetime | None, batch_size: int) -> Iterator[Batch]:
        offset, line_no = (int(p) for p in (position or "0:0").split(":"))
        reader = self._open(offset)
        keep = finished = False
        try:
            limit = self.max_line_bytes
            items: list[Item] = []
            readline = reader.readline
            while True:
                line = readline(limit + 1)
                if not line:
                    break
                line_no += 1
                offset += len(line)
                if len(line) > limit and not line.endswith(b"\n"):
                    total = len(line)
                    head = line[:RAW_KEEP_BYTES]
                    while True:  # consume the rest of the oversized line
                        more = readline(1 << 20)
                        offset += len(more)
                        total += len(more)
                        if not more or more.endswith(b"\n"):
                            break
                    items.append(
                        Item(
                            f"line {line_no}",
                            head,
                            RecordError(
                                "(line)",
                                f"is {total} bytes long, more than the limit of {limit}; "
                                f"the first {len(head)} bytes are kept",
                            ),
                        )
                    )
                else:
                    if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                        line = line[3:]
                    value = _parse_line(line)
                    if type(value) is RecordError and not line.strip():
                        continue  # a blank line carries nothing
                    items.append(Item(f"line {line_no}", line, value))
                if len(items) >= batch_size:
                    next_pos = f"{offset}:{line_no}"
                    yield Batch(items, next_pos, False, self._progress(reader), self.size)
                    items = []
            finished = True
            yield Batch(items, f"{offset}:{line_no}", True, self.size, self.size)
        except GeneratorExit:
            # The consumer stopped after a batch: keep a gzip reader for the next chunk.
            if self.gz and not finished:
                keep = True
                with _OPEN_LOCK:
                    _OPEN_READERS[(self.identity, offset)] = reader
            raise
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SourceError(f"cannot read {self.path}: {exc}") from None
        finally:
            if not keep:
                _close(reader)


def _close(reader) -> None:
    raw = getattr(reader, "raw_file", None)
    reader.close()
    if raw is not None:
        raw.close()


# --- the orders API ----------------------------------------------------------------------


@dataclass
class ApiSource:
    url: str
    token: Any
    timeout: float
    page_limit: int | None = None  # None: PAGE_LIMIT (the contract's maximum)
    attempts: int = 6
    ordered: bool = True
    name: str = field(init=False)

    def __post_init__(self) -> None:
        from dunning.tasks.http_client import make_client

        self.name = source_name(self.url)
        if self.page_limit is None:
            self.page_limit = PAGE_LIMIT
        base = self.url.rstrip("/")
        self.path = "/v1/orders"
        if base.endswith("/v1/orders"):
            base = base[: -len("/v1/orders")]
        self.client = make_client(base, self.token, self.timeout)

    def close(self) -> None:
        self.client.close()

    def _page(self, cursor: str, since: datetime | None) -> tuple[list[Any], str | None]:
        from dunning.tasks.http_client import request_with_retries

        params: dict[str, Any] = {"limit": self.page_limit}
        if cursor:
            params["cursor"] = cursor
        if since is not None:
            # updated_since is exclusive; ask from one microsecond earlier so that
            # snapshots stamped exactly at the watermark are read again (see sync.py).
            params["updated_since"] = (since - ONE_TICK).isoformat()
        from dunning.tasks.http_client import ResponseTooLarge

        try:
            response = request_with_retries(
                self.client, "GET", self.path, params=params, attempts=self.attempts
            )
        except ResponseTooLarge as exc:  # issue 9: refused while streaming, not kept
            raise SourceError(f"the orders API at {self.name}: {exc}") from None
        if response.status_code in (401, 403):
            raise SourceAuthError(
                f"the orders API at {self.name} refused the token (HTTP "
                f"{response.status_code}); check DUNNING_SOURCE_TOKEN"
            )
        if response.status_code != 200:
            raise SourceError(
                f"the orders API at {self.name} answered HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        try:
            page = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise SourceError(
                f"the orders API at {self.name} sent a page that is not JSON"
            ) from None
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise SourceError(f"the orders API at {self.name} sent a page without an 'items' list")
        next_cursor = page.get("next_cursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise SourceError(f"the orders API at {self.name} sent a non-string next_cursor")
        return page["items"], next_cursor

    def batches(self, position: str, since: datetime | None, batch_size: int) -> Iterator[Batch]:
        import httpx

        cursor = position or ""
        items: list[Item] = []
        page_no = 0
        while True:
            try:
                page, next_cursor = self._page(cursor, since)
            except httpx.HTTPError as exc:  # pragma: no cover - request_with_retries wraps
                raise SourceError(f"orders API: {exc}") from None
            page_no += 1
            where = f"cursor {cursor or 'start'}"
            for i, value in enumerate(page):
                items.append(Item(f"{where} #{i}", None, value))
            if next_cursor is None:
                yield Batch(items, cursor, True)
                return
            if next_cursor == cursor:
                raise SourceError(
                    f"the orders API at {self.name} answered the same cursor twice; "
                    "paging would never end"
                )
            cursor = next_cursor
            if len(items) >= batch_size:
                yield Batch(items, cursor, False)
                items = []
