"""`/`: the Inkasso settings of the merchant in view (an operator picks one first)."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dunning.db import session_scope
from dunning.models.merchant_settings import SettingsChangeRefused
from dunning.tasks import merchant_settings as store
from dunning.web import queries
from dunning.web.context import (
    check_csrf,
    form_of,
    merchant_in_view,
    not_found,
    render,
    require_login,
    web_of,
)

SWITCHES = ("auto_overdue", "auto_chargebacks")


async def settings_page(request: Request) -> Response:
    principal = await require_login(request)
    merchant = merchant_in_view(request, principal)
    if merchant is None:
        return await _picker(request)
    return await _page(request, merchant)


async def _picker(request: Request) -> Response:
    web = web_of(request)
    rows = await run_in_threadpool(queries.merchants, web.url)
    return render(request, "merchants.html", {"merchants": rows})


async def _page(
    request: Request,
    merchant: str,
    message: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    web = web_of(request)
    view = await run_in_threadpool(queries.settings_view, web.url, merchant, web.installation)
    return render(
        request,
        "settings.html",
        {"view": view, "merchant": merchant, "message": message, "error": error},
        status_code=status,
    )


def refusal_text(exc: SettingsChangeRefused, zone) -> str:
    """The CLI's rule in the seed's words: when the option may change next."""
    if exc.allowed_from is None:
        return str(exc)
    when = exc.allowed_from.astimezone(zone)
    return (
        "Die Mahnoption kann nur alle 30 Tage geändert werden. Die nächste Änderung ist ab "
        f"{when:%d.%m.%Y} um {when:%H:%M} Uhr ({zone.key}) möglich."
    )


async def settings_submit(request: Request) -> Response:
    principal = await require_login(request)
    form = await form_of(request)
    check_csrf(request, form)
    merchant = merchant_in_view(request, principal)
    if merchant is None:
        raise not_found()
    web = web_of(request)
    changes: dict[str, object] = {s: form.get(s) == "on" for s in SWITCHES}
    if form.get("dunning_option"):
        changes["dunning_option"] = form["dunning_option"]

    def apply() -> dict:
        with session_scope(web.url) as session:
            _, diff = store.change(
                session, merchant, changes, datetime.now(UTC), principal.actor, web.installation
            )
            return diff

    try:
        diff = await run_in_threadpool(apply)
    except SettingsChangeRefused as exc:
        text = refusal_text(exc, web.installation.zone)
        return await _page(request, merchant, error=text, status=409)
    message = "Gespeichert." if diff else "Keine Änderung."
    return await _page(request, merchant, message=message)
