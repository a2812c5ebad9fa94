"""The web app: routes, error pages, security headers. `create_app` is what `dunning web`
serves and what the tests start."""

from __future__ import annotations

from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dunning.config import Settings, get_settings
from dunning.db import ensure_schema
from dunning.web import case_pages, login, settings_page
from dunning.web.context import HERE, LoginRequired, Web, render
from dunning.web.security import SecurityHeaders, Signer


async def _login_required(request: Request, exc: Exception) -> Response:
    if "authorization" in request.headers or request.url.path.endswith(".csv"):
        return PlainTextResponse(
            "login required", status_code=401, headers={"www-authenticate": "Bearer"}
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.headers.get("authorization"):
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
    return render(
        request,
        "error.html",
        {"status": exc.status_code, "detail": exc.detail, "merchant": None},
        status_code=exc.status_code,
    )


def create_app(
    database_url: str | None = None,
    installation: Settings | None = None,
    secret_key: bytes | None = None,
) -> Starlette:
    installation = installation or get_settings()
    url = database_url or installation.database_url
    ensure_schema(url)
    routes = [
        Route("/", settings_page.settings_page, methods=["GET"]),
        Route("/settings", settings_page.settings_submit, methods=["POST"]),
        Route("/login", login.login_page, methods=["GET"]),
        Route("/login", login.login_submit, methods=["POST"]),
        Route("/logout", login.logout, methods=["POST"]),
        Route("/cases", case_pages.board, methods=["GET"]),
        Route("/cases.csv", case_pages.board_csv, methods=["GET"]),
        Route("/cases/{case_id}", case_pages.case_page, methods=["GET"]),
        Route("/cases/{case_id}/{action}", case_pages.confirm_page, methods=["GET"]),
        Route("/cases/{case_id}/{action}", case_pages.act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={LoginRequired: _login_required, HTTPException: _http_error},
    )
    app.state.web = Web(
        url=url,
        installation=installation,
        signer=Signer(secret_key),
    )
    app.add_middleware(SecurityHeaders)
    return app


def serve(host: str, port: int, app: Starlette) -> None:
    """Run with uvicorn; no access log (URLs carry buyers' names in searches)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
