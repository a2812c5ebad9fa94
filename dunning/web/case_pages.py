"""`/cases`, `/cases.csv`, `/cases/{id}` and the actions on one case. A case of another
merchant is 404 on every route, as if it did not exist."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dunning.models.board import DIALECTS, STATUS_CHOICES, BoardFilter, BoardFilterError
from dunning.models.operator import ActionRefused
from dunning.tasks.case_ops import case_action_core
from dunning.web import queries
from dunning.web.context import (
    ACTION_LABELS,
    OPERATOR_ACTIONS,
    check_csrf,
    form_of,
    merchant_in_view,
    not_found,
    render,
    require_login,
    web_of,
)
from dunning.web.tokens import Principal

FILTER_PARAMS = ("status", "from", "to", "min_amount", "max_amount", "search")


def _filters(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "")[:200] for k in FILTER_PARAMS}


def _board_filter(values: dict[str, str], merchant: str | None) -> BoardFilter:
    return BoardFilter.parse(
        status=values["status"] or None,
        opened_from=values["from"],
        opened_to=values["to"],
        min_amount=values["min_amount"],
        max_amount=values["max_amount"],
        search=values["search"],
        merchant_id=merchant,
    )


async def board(request: Request) -> Response:
    principal = await require_login(request)
    merchant = merchant_in_view(request, principal)
    web = web_of(request)
    values = _filters(request)
    context: dict[str, Any] = {
        "merchant": merchant,
        "filters": values,
        "statuses": STATUS_CHOICES,
        "page": None,
        "error": None,
        "after": request.query_params.get("after"),
        "sort": queries.parse_sort(request.query_params.get("sort")),
        "default_sort": queries.DEFAULT_SORT,
    }
    try:
        f = _board_filter(values, merchant)
    except BoardFilterError as exc:
        context["error"] = str(exc)
        return render(request, "cases.html", context, status_code=400)
    try:
        limit = min(int(request.query_params.get("limit") or queries.PAGE_SIZE), 200)
    except ValueError:
        limit = queries.PAGE_SIZE
    try:
        page = int(request.query_params.get("page") or 1)
    except ValueError:
        page = 1
    context["page"] = await run_in_threadpool(
        lambda: queries.board_page(
            web.url,
            f,
            web.installation.timezone,
            request.query_params.get("after"),
            max(limit, 1),
            sort=context["sort"],
            before=request.query_params.get("before"),
            page=page,
        )
    )
    return render(request, "cases.html", context)


async def board_csv(request: Request) -> Response:
    principal = await require_login(request)
    merchant = merchant_in_view(request, principal)
    web = web_of(request)
    dialect = request.query_params.get("dialect") or "excel-de"
    if dialect not in DIALECTS:
        raise HTTPException(400, f"unbekanntes CSV-Format {dialect[:20]!r}; excel-de oder rfc4180")
    try:
        f = _board_filter(_filters(request), merchant)
    except BoardFilterError as exc:
        raise HTTPException(400, str(exc)) from None
    name = f"inkasso-faelle{'-' + merchant if merchant else ''}.csv"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return StreamingResponse(
        queries.csv_chunks(
            web.url, f, dialect, web.installation.zone, request.query_params.get("sort")
        ),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{safe}"'},
    )


async def _visible_case(request: Request, principal: Principal) -> int:
    """The case id of the path, if it exists and the login may see it; else 404."""
    raw = request.path_params.get("case_id", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise not_found()
    case_id = int(raw)
    owner = await run_in_threadpool(queries.case_merchant, web_of(request).url, case_id)
    if owner is None or (not principal.is_operator and owner != principal.merchant_id):
        raise not_found()
    return case_id


async def _case_page(
    request: Request, case_id: int, result: dict | None = None, status: int = 200
) -> Response:
    view = await run_in_threadpool(queries.case_view, web_of(request).url, case_id)
    if view is None:
        raise not_found()
    merchant = view.case["merchant_id"] if request.query_params.get("merchant") else None
    return render(
        request,
        "case.html",
        {"view": view, "result": result, "merchant": merchant},
        status_code=status,
    )


async def case_page(request: Request) -> Response:
    principal = await require_login(request)
    case_id = await _visible_case(request, principal)
    return await _case_page(request, case_id)


def _allowed_action(request: Request, principal: Principal) -> str:
    action = request.path_params.get("action", "")
    if action not in ACTION_LABELS:
        raise not_found()
    if not principal.is_operator and action not in ("start", "cancel"):
        raise HTTPException(403, "Diese Aktion ist dem Betreiber vorbehalten")
    assert action in OPERATOR_ACTIONS
    return action


async def confirm_page(request: Request) -> Response:
    principal = await require_login(request)
    case_id = await _visible_case(request, principal)
    action = _allowed_action(request, principal)
    return await _confirm(request, case_id, action)


async def _confirm(
    request: Request, case_id: int, action: str, error: str | None = None, status: int = 200
) -> Response:
    view = await run_in_threadpool(queries.case_view, web_of(request).url, case_id)
    if view is None:
        raise not_found()
    defaults = {
        "start": "Freigabe im Inkasso-Bereich",
        "resume": "Fortsetzung im Inkasso-Bereich",
    }
    return render(
        request,
        "confirm.html",
        {
            "view": view,
            "action": action,
            "error": error,
            "reason": defaults.get(action, ""),
            "merchant": request.query_params.get("merchant"),
        },
        status_code=status,
    )


async def act(request: Request) -> Response:
    principal = await require_login(request)
    form = await form_of(request)
    check_csrf(request, form)
    case_id = await _visible_case(request, principal)
    action = _allowed_action(request, principal)
    web = web_of(request)
    reason = form.get("reason", "")[:500]
    now = datetime.now(UTC)
    try:
        result = await run_in_threadpool(
            case_action_core,
            action,
            str(case_id),
            reason,
            principal.actor,
            now,
            web.url,
            web.installation,
        )
    except ActionRefused as exc:
        return await _confirm(request, case_id, action, error=str(exc), status=409)
    return await _case_page(request, case_id, result=result)
