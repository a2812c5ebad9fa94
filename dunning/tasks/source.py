"""Where order snapshots come from: a JSON Lines file or the platform's orders API.

One small interface: `open_source(url, token, timeout)` gives a `Source` whose
`batches(position, since, batch_size)` yields `Batch`es of `Item`s. An item is one received
record: its position (line number, page), its raw bytes (kept whole for the quarantine)
and either the parsed JSON value (a file line that fits the contract's types comes typed,
as an `OrderRecord`) or the reason it could not be parsed (not UTF-8, not JSON, a line
beyond the size limit). Nothing received is dropped silently: blank lines are the
only thing skipped.

Positions are plain strings, so a Prefect task can be handed one and resume there:
- file: `"<byte offset>:<line number>"` of the next line to read;
- API: the `next_cursor` of the last page read (`""` = start).

Issue 19: sources are configuration. A file given instead of DUNNING_SOURCE_URL must lie
inside DUNNING_SOURCE_ROOT; DUNNING_SOURCE_TOKEN is sent only to the scheme, host and port
of DUNNING_SOURCE_URL; a line that cannot be parsed is kept as a short, redacted excerpt
(it may be anything: `/proc/self/environ` is one line of secrets). An API read ends by
its deadline and never follows a cursor it has seen.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson

from dunning.models.record_check import NOT_TYPED, decode_record
from dunning.models.records import RecordError

MAX_LINE_BYTES = 4 * 1024 * 1024
EXCERPT_CHARS = 200  # what the quarantine keeps of a line it cannot parse
PAGE_LIMIT = 1000
ONE_TICK = timedelta(microseconds=1)


class SourceError(RuntimeError):
    """The source cannot be read at all (missing file, bad URL, refused token)."""


class SourceAuthError(SourceError):
    """The orders API refused the token."""


def source_unreachable(exc: BaseException) -> bool:
    """The orders API did not answer after every attempt (connection refused, timeouts,
    5xx): the next run reads again. Not a refusal: a wrong token or answer is SourceError."""
    from dunning.tasks.http_client import TransientHTTPError

    return isinstance(exc, TransientHTTPError) and not isinstance(exc, SourceError)


# What looks like a secret in text of unknown origin: credentials in URLs, bearer tokens,
# values of keys named like secrets, and every KEY=value (an environment, a .env file).
_SECRETS = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\x00\"',;]+"), r"\1\2***"),
    (re.compile(r"(://[^/\s:@\x00]*:)[^@\s/\x00]*@"), r"\1***@"),
    (
        re.compile(
            r"(?i)((?:token|secret|passw(?:or)?d|pwd|api[_-]?key|authorization)[\"']?"
            r"\s*[:=]\s*[\"']?)[^\s\x00\"',;&]+"
        ),
        r"\1***",
    ),
    (re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*=)[^\x00\r\n&;]+"), r"\1***"),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def excerpt(head: bytes, size: int, digest: str) -> bytes:
    """What the quarantine keeps of a line it cannot parse: at most EXCERPT_CHARS
    characters, secrets redacted, then its size and digest (two lines alike in their
    first characters stay two entries)."""
    text = redact(head[: 4 * EXCERPT_CHARS].decode("utf-8", errors="backslashreplace"))
    kept = text[:EXCERPT_CHARS]
    if len(text) > EXCERPT_CHARS or size > len(head[: 4 * EXCERPT_CHARS]):
        kept += f" ... [cut: {size} bytes, sha256 {digest[:16]}]"
    return kept.encode("utf-8")


def _line_excerpt(line: bytes) -> bytes:
    line = line.rstrip(b"\r\n")
    return excerpt(line, len(line), hashlib.sha256(line).hexdigest())


@dataclass(slots=True)
class Item:
    position: str
    raw: bytes | None  # as received; None when `value` came parsed (the API's pages)
    # an OrderRecord (a line that fits the contract's types), other parsed JSON, or a
    # RecordError when the bytes are not a JSON value
    value: Any

    def raw_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw.rstrip(b"\r\n")
        try:
            return orjson.dumps(self.value)
        except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels)
            return b'"(not kept: nested too deeply to write back)"'


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


def open_source(
    url: str, token: Any = None, timeout: float = 10.0, deadline: float | None = None
) -> Source:
    """`deadline`: a `time.time()` instant by which an API read must end."""
    url = url.strip()
    if url.startswith(("http://", "https://")):
        return ApiSource(url, token, timeout, deadline=deadline)
    return FileSource(allowed_file(url))


def _origin(url: str) -> tuple[str, str, int | None] | None:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return parts.scheme, (parts.hostname or "").lower(), port


def token_for(url: str, settings: Any) -> Any:
    """DUNNING_SOURCE_TOKEN, if `url` is on the scheme, host and port of DUNNING_SOURCE_URL;
    None for any other place (`--source http://elsewhere` is read without a token)."""
    origin = _origin(url)
    if origin is not None and origin == _origin(settings.source_url):
        return settings.source_token
    return None


def allowed_file(url: str) -> Path:
    """The file of a file source, if it may be read: DUNNING_SOURCE_URL itself, or a file
    inside DUNNING_SOURCE_ROOT (default: the working folder) once symlinks are resolved."""
    from dunning.config import get_settings

    settings = get_settings()
    path = file_path(url).expanduser()
    real = path.resolve()
    configured = settings.source_url.strip()
    is_api = configured.startswith(("http://", "https://"))
    if not is_api and real == file_path(configured).expanduser().resolve():
        return path
    root = (settings.source_root or Path.cwd()).expanduser().resolve()
    if not real.is_relative_to(root):
        raise SourceError(
            f"source {path} is outside the folder sources may be read from ({root}); move "
            "the file there, or set DUNNING_SOURCE_ROOT or DUNNING_SOURCE_URL"
        )
    return path


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


def _parse_plainly(line: bytes) -> Any:
    """A line that does not fit the contract's types, parsed plainly so that the
    quarantine can say what is wrong with it (or why it is no JSON at all)."""
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

    def batches(
        self, position: str, since: datetime | None, batch_size: int, end: int | None = None
    ) -> Iterator[Batch]:
        """`end`: the offset of a line's start where to stop (not for gzip files)."""
        offset, line_no = (int(p) for p in (position or "0:0").split(":"))
        reader = self._open(offset)
        keep = finished = yielded = False
        try:
            limit = self.max_line_bytes
            items: list[Item] = []
            readline = reader.readline
            while True:
                if end is not None and offset >= end and offset < self.size:
                    if items or not yielded:  # the range's last batch
                        yield Batch(items, f"{offset}:{line_no}", False, offset, self.size)
                    finished = True
                    return
                line = readline(limit + 1)
                if not line:
                    break
                line_no += 1
                offset += len(line)
                if len(line) > limit and not line.endswith(b"\n"):
                    total = len(line)
                    digest = hashlib.sha256(line)
                    while True:  # consume the rest of the oversized line
                        more = readline(1 << 20)
                        offset += len(more)
                        total += len(more)
                        digest.update(more.rstrip(b"\r\n"))
                        if not more or more.endswith(b"\n"):
                            break
                    items.append(
                        Item(
                            f"line {line_no}",
                            excerpt(line, total, digest.hexdigest()),
                            RecordError(
                                "(line)",
                                f"is {total} bytes long, more than the limit of {limit}; "
                                "an excerpt is kept",
                            ),
                        )
                    )
                else:
                    if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                        line = line[3:]
                    try:  # typed in one pass when the line fits (nearly always)
                        value = decode_record(line)
                    except NOT_TYPED:
                        value = _parse_plainly(line)
                        if type(value) is RecordError:
                            if not line.strip():
                                continue  # a blank line carries nothing
                            line = _line_excerpt(line)
                    items.append(Item(f"line {line_no}", line, value))
                if len(items) >= batch_size:
                    next_pos = f"{offset}:{line_no}"
                    yield Batch(items, next_pos, False, self._progress(reader), self.size)
                    items, yielded = [], True
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
    deadline: float | None = None  # time.time() by which the read must end; None: none
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

    def _failed(self, reason: str) -> SourceError:
        return SourceError(f"the orders API at {self.name}: {reason}")

    def _page(self, cursor: str, since: datetime | None) -> tuple[list[Any], str | None]:
        from dunning.tasks.http_client import (
            BadAnswer,
            DeadlineExceeded,
            ResponseTooLarge,
            parse_json,
            request_with_retries,
        )

        params: dict[str, Any] = {"limit": self.page_limit}
        if cursor:
            params["cursor"] = cursor
        if since is not None:
            # updated_since is exclusive; ask from one microsecond earlier so that
            # snapshots stamped exactly at the watermark are read again (see sync.py).
            params["updated_since"] = (since - ONE_TICK).isoformat()
        refused = None
        try:
            response = request_with_retries(
                self.client,
                "GET",
                self.path,
                params=params,
                attempts=self.attempts,
                deadline=self.deadline,
            )
        except (ResponseTooLarge, DeadlineExceeded, BadAnswer) as exc:  # issue 9, 19
            refused = str(exc)
            if isinstance(exc, DeadlineExceeded):
                refused += " (the read's deadline: DUNNING_READ_DEADLINE_SECONDS)"
        if refused is not None:  # raised here: no exception of httpx rides along as context
            raise self._failed(refused)
        if response.status_code in (401, 403):
            hint = (
                "check DUNNING_SOURCE_TOKEN"
                if self.token
                else "no token was sent: DUNNING_SOURCE_TOKEN goes only to the host of "
                "DUNNING_SOURCE_URL"
            )
            raise SourceAuthError(
                f"the orders API at {self.name} refused the token (HTTP "
                f"{response.status_code}); {hint}"
            )
        if response.status_code != 200:
            raise self._failed(f"answered HTTP {response.status_code}")
        try:
            page = parse_json(response.content, "a page")
        except (ValueError, BadAnswer) as exc:
            refused = str(exc)
        if refused is not None:
            raise self._failed(refused)
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise self._failed("sent a page without an 'items' list")
        next_cursor = page.get("next_cursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise self._failed("sent a non-string next_cursor")
        return page["items"], next_cursor

    def batches(self, position: str, since: datetime | None, batch_size: int) -> Iterator[Batch]:
        cursor = position or ""
        seen = {cursor}
        items: list[Item] = []
        pages = 0
        while True:
            if self.deadline is not None and time.time() >= self.deadline:
                raise self._failed(
                    f"the read passed its deadline (DUNNING_READ_DEADLINE_SECONDS) after "
                    f"{pages} page(s) in this chunk; the watermark stays at the last "
                    "committed batch"
                )
            page, next_cursor = self._page(cursor, since)
            pages += 1
            where = f"cursor {cursor or 'start'}"
            for i, value in enumerate(page):
                items.append(Item(f"{where} #{i}", None, value))
            if next_cursor is None:
                yield Batch(items, cursor, True)
                return
            if next_cursor in seen:
                raise self._failed(
                    f"sent a next_cursor it had sent before (a cycle, after {pages} page(s)); "
                    "paging would never end"
                )
            seen.add(next_cursor)
            cursor = next_cursor
            if len(items) >= batch_size:
                yield Batch(items, cursor, False)
                items = []
