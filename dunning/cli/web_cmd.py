"""`dunning web`: the merchant's Inkasso area as a web page, and its login tokens."""

from __future__ import annotations

import getpass
import os

import typer

from dunning.cli.common import UserError, console, database_url, settings

app = typer.Typer(
    help=(
        "The merchant's Inkasso area in the browser: settings, case board, CSV and actions. "
        "Without a subcommand: serve it (`dunning web --host 127.0.0.1 --port 8080`)."
    ),
    invoke_without_command=True,
)
token_app = typer.Typer(
    help="Logins of the web area: create (shown once), list, revoke.", no_args_is_help=True
)
app.add_typer(token_app, name="token")


@app.callback()
def web(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Serve the web area on the configured database (DUNNING_DATABASE_URL).

    Sessions are signed with DUNNING_WEB_SECRET (hex, 32 bytes) if set, else with a key
    made at start (a restart then logs everyone out)."""
    if ctx.invoked_subcommand is not None:
        return
    from dunning.web.app import create_app, serve

    key = _secret_key()
    app_ = create_app(database_url(), settings(), secret_key=key)
    console.print(f"Inkasso web area on http://{host}:{port}/ (Ctrl+C ends)", highlight=False)
    serve(host, port, app_)


def _secret_key() -> bytes | None:
    raw = os.environ.get("DUNNING_WEB_SECRET", "").strip()
    if not raw:
        return None
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise UserError("DUNNING_WEB_SECRET must be hex (e.g. `openssl rand -hex 32`)") from None
    if len(key) < 16:
        raise UserError("DUNNING_WEB_SECRET must be at least 16 bytes (32 hex digits)")
    return key


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "admin"


def new_token(url: str, merchant: str | None, operator: str | None) -> tuple[int, str]:
    """A login token (id, secret) created by whoever runs the command; `token create` and
    `dunning demo` both make theirs here."""
    from dunning.web.tokens import TokenError, create_token

    try:
        return create_token(url, merchant_id=merchant, operator=operator, created_by=_login())
    except TokenError as exc:
        raise UserError(str(exc)) from None


@token_app.command("create")
def token_create(
    merchant: str | None = typer.Option(None, "--merchant", help="A merchant's login."),
    operator: str | None = typer.Option(None, "--operator", help="An operator's login."),
) -> None:
    """Create a login token; the secret is printed once and only its hash is stored."""
    token_id, secret = new_token(database_url(), merchant, operator)
    who = f"merchant {merchant}" if merchant is not None else f"operator {operator}"
    console.print(f"token {token_id} for {who} (shown once, keep it safe):", highlight=False)
    print(secret)


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., metavar="ID")) -> None:
    """Revoke a token: it logs nobody in, its sessions end."""
    from dunning.web.tokens import revoke_token

    if not revoke_token(database_url(), token_id):
        raise UserError(f"no active token {token_id}")
    console.print(f"token {token_id} revoked", highlight=False)


@token_app.command("list")
def token_list() -> None:
    """The tokens (never their secrets): id, for whom, created, revoked."""
    from dunning.web.tokens import list_tokens

    for t in list_tokens(database_url()):
        who = f"merchant {t.merchant_id}" if t.merchant_id else f"operator {t.operator}"
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        console.print(
            f"{t.id}\t{who}\tcreated {t.created_at:%Y-%m-%d %H:%M} by {t.created_by}\t{state}",
            highlight=False,
        )
