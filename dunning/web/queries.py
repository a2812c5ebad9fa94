"""What the pages read: a board page (keyset-paginated), CSV chunks, one case, a merchant's
settings summary. Every query goes through `dunning.models.board` and the task modules; the
merchant scope is applied here, once, for every route."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select

from dunning.config import Settings
from dunning.db import get_engine, session_scope
from dunning.models.board import (
    GERMAN_HEADERS,
    BoardFilter,
    board_count,
    board_select,
    csv_cell,
    csv_encoding,
    csv_options,
)
from dunning.models.enums import ActionStatus, CaseState
from dunning.models.ladder import MAIL_STEPS
from dunning.models.merchant_settings import OPTION_CHANGE_INTERVAL, MerchantConfig
from dunning.models.schema import (
    REPORT_COLUMNS,
    Action,
    Case,
    CaseCharge,
    CaseHistory,
    CaseItem,
    CaseReport,
    Merchant,
    Order,
)
from dunning.tasks import merchant_settings as store
from dunning.tasks.mailer import PHRASES
from dunning.tasks.report import last_data_updates

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
CSV_CHUNK = 2000


# `sort=` of the URL: a board column, `-` first for descending. The default (newest opened
# first) and `opened_at` page by keyset on (opened_at, case_id); every other order pages by
# OFFSET (`page=`), with case_id as tie-breaker so the order is total.
DEFAULT_SORT = "-opened_at"
SORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("last_name", "first_name"),
    "order_id": ("order_id",),
    "payment_plan": ("payment_plan",),
    "state": ("state",),
    "overdue_days": ("overdue_days",),
    "outstanding_amount": ("outstanding_amount",),
    "order_amount": ("order_amount",),
    "paid_amount": ("paid_amount",),
    "cancellation_costs": ("cancellation_costs",),
    "dunning_option": ("dunning_option",),
    "opened_at": ("opened_at",),
}
KEYSET_SORTS = frozenset({"opened_at", "-opened_at"})
MAX_OFFSET_PAGE = 10_000


def parse_sort(text: str | None) -> str:
    """A known `sort=` value, else the default."""
    text = (text or "").strip()
    return text if text.lstrip("-") in SORT_COLUMNS and text.count("-") <= 1 else DEFAULT_SORT


@dataclass
class BoardPage:
    rows: list[dict[str, Any]]
    total: int
    next_cursor: str | None
    sort: str = DEFAULT_SORT
    # URL parameters of the neighbouring pages (None: there is none); the first page is
    # the URL without them.
    next_params: dict[str, str] | None = None
    prev_params: dict[str, str] | None = None
    first_page: bool = True


def parse_cursor(text: str | None) -> tuple[datetime, int] | None:
    """`after`/`before` of the URL: `<opened_at ISO>~<case_id>` of a row of the page."""
    if not text or "~" not in text or len(text) > 80:
        return None
    when, _, case_id = text.rpartition("~")
    try:
        opened = datetime.fromisoformat(when)
        return (opened if opened.tzinfo else opened.replace(tzinfo=UTC)), int(case_id)
    except ValueError:
        return None


def make_cursor(row: dict[str, Any]) -> str:
    return f"{row['opened_at'].astimezone(UTC).isoformat()}~{row['case_id']}"


def _beyond(cursor: tuple[datetime, int], descending: bool) -> Any:
    """Rows after `cursor` in the order (opened_at, case_id), descending or ascending. The
    redundant bound on opened_at alone is what lets the opened_at index start at the cursor
    (without it a deep page scans every row before it and filters them out)."""
    opened, case_id = cursor
    r = CaseReport
    if descending:
        return and_(
            r.opened_at <= opened,
            or_(r.opened_at < opened, and_(r.opened_at == opened, r.case_id < case_id)),
        )
    return and_(
        r.opened_at >= opened,
        or_(r.opened_at > opened, and_(r.opened_at == opened, r.case_id > case_id)),
    )


def _keyset_order(descending: bool) -> list[Any]:
    r = CaseReport
    if descending:
        return [r.opened_at.desc(), r.case_id.desc()]
    return [r.opened_at.asc(), r.case_id.asc()]


def _offset_order(sort: str) -> list[Any]:
    descending = sort.startswith("-")
    columns = [getattr(CaseReport, c) for c in SORT_COLUMNS[sort.lstrip("-")]]
    order = [c.desc() if descending else c.asc() for c in columns]
    tie = CaseReport.case_id.desc() if descending else CaseReport.case_id.asc()
    return [*order, tie]


def board_page(
    url: str,
    f: BoardFilter,
    zone: str,
    after: str | None,
    limit: int = PAGE_SIZE,
    *,
    sort: str | None = None,
    before: str | None = None,
    page: int = 1,
) -> BoardPage:
    """One page of the board in `sort` order. Keyset for the opened_at orders, so a deep
    page costs what the first does; OFFSET (`page`) for the others."""
    sort = parse_sort(sort)
    stmt = board_select(f, zone).order_by(None)
    with get_engine(url).connect() as conn:
        total = int(conn.scalar(board_count(f, zone)) or 0)
        if sort in KEYSET_SORTS:
            result = _keyset_page(conn, stmt, sort, after, before, limit)
        else:
            result = _offset_page(conn, stmt, sort, page, limit)
    result.total = total
    result.sort = sort
    return result


def _keyset_page(
    conn: Any, stmt: Any, sort: str, after: str | None, before: str | None, limit: int
) -> BoardPage:
    descending = sort.startswith("-")
    back = parse_cursor(before)
    ahead = None if back is not None else parse_cursor(after)
    if back is not None:  # the page before `before`: read backwards, then turn around
        query = stmt.where(_beyond(back, not descending)).order_by(*_keyset_order(not descending))
        rows = [dict(r._mapping) for r in conn.execute(query.limit(limit + 1))]
        more_before = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        more_after = True
    else:
        if ahead is not None:
            stmt = stmt.where(_beyond(ahead, descending))
        rows = [
            dict(r._mapping)
            for r in conn.execute(stmt.order_by(*_keyset_order(descending)).limit(limit + 1))
        ]
        more_after = len(rows) > limit
        rows = rows[:limit]
        more_before = ahead is not None
    next_cursor = make_cursor(rows[-1]) if more_after and rows else None
    return BoardPage(
        rows,
        0,
        next_cursor,
        next_params={"after": next_cursor} if next_cursor else None,
        prev_params={"before": make_cursor(rows[0])} if more_before and rows else None,
        first_page=not more_before,
    )


def _offset_page(conn: Any, stmt: Any, sort: str, page: int, limit: int) -> BoardPage:
    page = min(max(page, 1), MAX_OFFSET_PAGE)
    query = stmt.order_by(*_offset_order(sort)).offset((page - 1) * limit).limit(limit + 1)
    rows = [dict(r._mapping) for r in conn.execute(query)]
    more = len(rows) > limit
    return BoardPage(
        rows[:limit],
        0,
        None,
        next_params={"page": str(page + 1)} if more else None,
        prev_params=({"page": str(page - 1)} if page > 2 else {}) if page > 1 else None,
        first_page=page == 1,
    )


def csv_chunks(
    url: str, f: BoardFilter, dialect: str, zone: Any, sort: str | None = None
) -> Iterator[bytes]:
    """The filtered board as CSV bytes, a chunk of rows at a time, in the board's `sort`
    order (the CLI's dialects, headers and formula safety: `csv_cell` neutralises `=`, `+`,
    `-`, `@` ...)."""
    sort = parse_sort(sort)
    stmt = board_select(f, zone)
    if sort != DEFAULT_SORT:
        stmt = stmt.order_by(None).order_by(*_offset_order(sort))
    encoding = csv_encoding(dialect)  # type: ignore[arg-type]
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, **csv_options(dialect))  # type: ignore[arg-type]
    headers = (
        [GERMAN_HEADERS[c] for c in REPORT_COLUMNS]
        if dialect == "excel-de"
        else list(REPORT_COLUMNS)
    )
    writer.writerow(headers)

    def take() -> bytes:
        data = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return data.encode("utf-8")

    yield (b"\xef\xbb\xbf" if encoding == "utf-8-sig" else b"") + take()
    with get_engine(url).connect() as conn:
        result = conn.execution_options(yield_per=CSV_CHUNK).execute(stmt)
        for part in result.partitions():
            for row in part:
                m = row._mapping
                writer.writerow([csv_cell(m[c], dialect, zone) for c in REPORT_COLUMNS])  # type: ignore[arg-type]
            yield take()


def case_merchant(url: str, case_id: int) -> str | None:
    with session_scope(url) as session:
        return session.scalar(select(Case.merchant_id).where(Case.case_id == case_id))


@dataclass
class CaseView:
    case: dict[str, Any]
    order: dict[str, Any] | None
    report: dict[str, Any] | None
    items: list[dict[str, Any]] = field(default_factory=list)
    charges: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    reminders: list[dict[str, Any]] = field(default_factory=list)


def _plain(obj: Any, names: list[str]) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names}


def case_view(url: str, case_id: int) -> CaseView | None:
    with session_scope(url) as session:
        case = session.get(Case, case_id)
        if case is None:
            return None
        view = CaseView(
            case=_plain(case, [c.name for c in Case.__table__.columns]),
            order=None,
            report=None,
        )
        order = session.get(Order, case.order_id)
        if order is not None:
            view.order = _plain(order, ["order_id", "total_amount", "product_name", "order_date"])
        report = session.get(CaseReport, case_id)
        if report is not None:
            view.report = _plain(report, list(REPORT_COLUMNS))
        view.items = [
            _plain(i, ["item_type", "installment_number", "due_date", "amount", "paid_amount"])
            for i in session.scalars(
                select(CaseItem)
                .where(CaseItem.case_id == case_id)
                .order_by(CaseItem.installment_number, CaseItem.item_type)
            )
        ]
        view.charges = [
            _plain(c, ["kind", "day", "amount", "reason"])
            for c in session.scalars(
                select(CaseCharge).where(CaseCharge.case_id == case_id).order_by(CaseCharge.id)
            )
        ]
        view.history = [
            _plain(h, ["at", "actor", "from_state", "to_state", "reason"])
            for h in session.scalars(
                select(CaseHistory).where(CaseHistory.case_id == case_id).order_by(CaseHistory.id)
            )
        ]
        levels = {"reminder_1": 1, "reminder_2": 2, "termination_notice": 3}
        steps = [s.value for s in MAIL_STEPS]
        for a in session.scalars(
            select(Action)
            .where(Action.case_id == case_id, Action.step.in_(steps))
            .order_by(Action.id)
        ):
            subject = PHRASES["de"]["subject"][levels[a.step]].format(order_id=case.order_id)
            view.reminders.append(
                {
                    "step": a.step,
                    "subject": subject,
                    "sent_at": a.done_at or a.sent_at,
                    "status": a.status,
                    "done": a.status == ActionStatus.DONE.value,
                }
            )
        return view


@dataclass
class SettingsView:
    merchant_id: str
    config: MerchantConfig
    stored: bool
    option_changed_at: datetime | None
    option_locked_until: datetime | None
    blocked_open: int
    history: list[dict[str, Any]]
    updates: list[tuple[str, datetime, dict[str, Any] | None]]


def settings_view(url: str, merchant_id: str, installation: Settings) -> SettingsView:
    now = datetime.now(UTC)
    with session_scope(url) as session:
        config, row = store.load(session, merchant_id, installation)
        changed = row.option_changed_at if row is not None else None
        locked = (
            changed + OPTION_CHANGE_INTERVAL
            if changed is not None and now < changed + OPTION_CHANGE_INTERVAL
            else None
        )
        history = [
            {"changed_at": h.changed_at, "changed_by": h.changed_by, "changes": h.changes}
            for h in reversed(store.history(session, merchant_id))
        ]
        blocked = session.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.merchant_id == merchant_id, Case.state == CaseState.BLOCKED.value)
        )
    return SettingsView(
        merchant_id=merchant_id,
        config=config,
        stored=row is not None,
        option_changed_at=changed,
        option_locked_until=locked,
        blocked_open=int(blocked or 0),
        history=history,
        updates=last_data_updates(url),
    )


def merchants(url: str) -> list[dict[str, Any]]:
    """For an operator's picker: every merchant with its number of cases."""
    with session_scope(url) as session:
        counts = dict(
            session.execute(select(Case.merchant_id, func.count()).group_by(Case.merchant_id)).all()
        )
        names = dict(session.execute(select(Merchant.merchant_id, Merchant.name)).all())
    ids = sorted(set(counts) | set(names))
    return [{"merchant_id": m, "name": names.get(m), "cases": counts.get(m, 0)} for m in ids]


def money(value: Decimal | None) -> str:
    """1234.5 -> 1.234,50 (German)."""
    if value is None:
        return ""
    text = f"{Decimal(value):,.2f}"
    return text.replace(",", "X").replace(".", ",").replace("X", ".")


def local(value: datetime | None, zone: Any, with_time: bool = True) -> str:
    if value is None:
        return ""
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    shown = value.astimezone(zone)
    return shown.strftime("%d.%m.%Y %H:%M %Z" if with_time else "%d.%m.%Y")
