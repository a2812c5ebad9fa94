"""Login and logout: a token is exchanged for a session cookie (HttpOnly, SameSite=Strict,
Secure behind TLS). Attempts are rate-limited per client address."""

from __future__ import annotations

import hmac
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dunning.web.context import check_csrf, form_of, render, require_login, web_of
from dunning.web.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS
from dunning.web.tokens import principal_for_secret


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe_next(target: str | None) -> str:
    """Only a path of this site: never `//host` or a scheme."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_form(request: Request, error: str | None = None, status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"login_csrf": nonce, "error": error, "next": _safe_next(request.query_params.get("next"))},
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=3600,
    )
    return response


async def login_page(request: Request) -> Response:
    return _login_form(request)


async def login_submit(request: Request) -> Response:
    web = web_of(request)
    client = request.client.host if request.client else "unknown"
    if not web.limiter.allow(client):
        return _login_form(request, "Zu viele Anmeldeversuche; bitte warte eine Minute.", 429)
    form = await form_of(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, form.get("csrf", "")):
        return _login_form(request, "Das Formular ist abgelaufen; bitte erneut anmelden.", 403)
    principal = await run_in_threadpool(principal_for_secret, web.url, form.get("token", ""))
    if principal is None:
        return _login_form(request, "Dieser Zugang ist unbekannt oder gesperrt.", 401)
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        web.signer.session_value(principal.token_id),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        max_age=SESSION_SECONDS,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


async def logout(request: Request) -> Response:
    await require_login(request)
    check_csrf(request, await form_of(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
