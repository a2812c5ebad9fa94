"""What every page shares: the installation, who is logged in, which merchant is in view,
CSRF checks, form parsing and rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from dunning.config import Settings
from dunning.models.enums import STATE_LABELS, CaseState
from dunning.web import queries
from dunning.web.i18n import LANG_COOKIE, LANGS, chosen_lang, switch_url, translator
from dunning.web.security import SESSION_COOKIE, RateLimiter, Signer
from dunning.web.tokens import Principal, principal_for_id, principal_for_secret

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 64 * 1024

OPTION_LABELS = {
    "court": "Option a: Mahnwesen + Inkasso + gerichtliches Mahnverfahren",
    "cancellation": "Option b: Mahnwesen + Inkasso + Kündigung",
}
PLAN_LABELS = {
    "one_time_payment": "Einmalzahlung",
    "breakdown_payment": "Ratenzahlung",
    "abonnement": "Abonnement",
}
ACTION_LABELS = {
    "start": "Mahnprozess starten",
    "cancel": "Abbrechen",
    "hold": "Pausieren",
    "resume": "Fortsetzen",
}
MERCHANT_ACTIONS = ("start", "cancel")
OPERATOR_ACTIONS = ("start", "cancel", "hold", "resume")


@dataclass
class Web:
    """The app's state: database, installation settings, signer, limiter, templates."""

    url: str
    installation: Settings
    signer: Signer = field(default_factory=Signer)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    templates: Jinja2Templates = field(init=False)

    def __post_init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.autoescape = True
        zone = self.installation.zone
        env.filters["money"] = queries.money
        env.filters["local"] = lambda v, with_time=True: queries.local(v, zone, with_time)
        env.globals.update(
            state_label=lambda s: STATE_LABELS.get(CaseState(s), s) if s else "",
            option_label=lambda o: OPTION_LABELS.get(o, o or ""),
            plan_label=lambda p: PLAN_LABELS.get(p, p or ""),
            action_label=lambda a: ACTION_LABELS.get(a, a),
            zone_name=self.installation.timezone,
        )


def web_of(request: Request) -> Web:
    return request.app.state.web


async def principal_of(request: Request) -> Principal | None:
    """From `Authorization: Bearer TOKEN`, else from the session cookie."""
    web = web_of(request)
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        request.state.via = "bearer"
        return await run_in_threadpool(principal_for_secret, web.url, header[7:].strip())
    token_id = web.signer.session_token_id(request.cookies.get(SESSION_COOKIE))
    if token_id is None:
        return None
    request.state.via = "cookie"
    return await run_in_threadpool(principal_for_id, web.url, token_id)


class LoginRequired(Exception):
    """No valid login: a browser goes to the form, a script gets 401."""


async def require_login(request: Request) -> Principal:
    principal = await principal_of(request)
    if principal is None:
        raise LoginRequired()
    request.state.principal = principal
    return principal


def merchant_in_view(request: Request, principal: Principal) -> str | None:
    """A merchant sees its own; an operator the one of `?merchant=ID`, or all (None)."""
    if not principal.is_operator:
        return principal.merchant_id
    chosen = (request.query_params.get("merchant") or "").strip()
    return chosen[:64] or None


def not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Nicht gefunden")


async def form_of(request: Request) -> dict[str, str]:
    """A url-encoded form (the only kind the pages send), first value per field."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(status_code=413, detail="Formular zu groß")
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """Every form post of a session carries its CSRF token; a bearer script has no cookie
    a foreign page could ride on."""
    if getattr(request.state, "via", None) == "bearer":
        return
    web = web_of(request)
    if not web.signer.csrf_ok(request.cookies.get(SESSION_COOKIE), form.get("csrf")):
        raise HTTPException(status_code=403, detail="Ungültiges oder fehlendes CSRF-Token")


def csrf_token(request: Request) -> str:
    cookie = request.cookies.get(SESSION_COOKIE)
    return web_of(request).signer.csrf_for(cookie) if cookie else ""


def with_merchant(path: str, merchant: str | None, **params: Any) -> str:
    query = {k: v for k, v in params.items() if v not in (None, "")}
    if merchant:
        query = {"merchant": merchant, **query}
    return f"{path}?{urlencode(query)}" if query else path


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    principal = getattr(request.state, "principal", None)
    lang = chosen_lang(request)
    t = translator(lang)
    base = {
        "lang": lang,
        "t": t,
        "other_lang": (other := "de" if lang == "en" else "en"),
        # an error page links to the start page: a 404 must not echo what was asked for
        "lang_url": f"/?lang={other}" if name == "error.html" else switch_url(request, other),
        "state_label": lambda s: t(STATE_LABELS.get(CaseState(s), s)) if s else "",
        "option_label": lambda o: t(OPTION_LABELS.get(o, o or "")),
        "plan_label": lambda p: t(PLAN_LABELS.get(p, p or "")),
        "action_label": lambda a: t(ACTION_LABELS.get(a, a)),
        "principal": principal,
        "csrf": csrf_token(request),
        "with_merchant": with_merchant,
        "actions_for": lambda: (
            OPERATOR_ACTIONS
            if principal is not None and principal.is_operator
            else MERCHANT_ACTIONS
        ),
    }
    response = web_of(request).templates.TemplateResponse(
        request, name, {**base, **context}, status_code=status_code
    )
    if request.query_params.get("lang") in LANGS:  # the switch: kept for the next pages
        response.set_cookie(
            LANG_COOKIE,
            lang,
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response
