"""Logins of the web area: tokens an administrator creates for a merchant or an operator.

The secret is shown once; the database keeps its SHA-256 only. A revoked token logs nobody
in, and sessions made with it end at their next request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from dunning.db import ensure_schema, session_scope
from dunning.models.schema import WebToken

PREFIX = "dwt_"


@dataclass(frozen=True)
class Principal:
    """Who is logged in: a merchant (its own cases only) or an operator (all merchants)."""

    token_id: int
    merchant_id: str | None
    operator: str | None

    @property
    def is_operator(self) -> bool:
        return self.operator is not None

    @property
    def actor(self) -> str:
        """What the history records as who did it."""
        if self.operator is not None:
            return f"{self.operator} (web, token {self.token_id})"
        return f"merchant {self.merchant_id} (web, token {self.token_id})"

    @property
    def display(self) -> str:
        return self.operator if self.operator is not None else str(self.merchant_id)


class TokenError(ValueError):
    """A token request that cannot work; the message is one line."""


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    url: str, *, merchant_id: str | None, operator: str | None, created_by: str
) -> tuple[int, str]:
    """A new token for exactly one merchant or one operator: (id, secret shown once)."""
    if (merchant_id is None) == (operator is None):
        raise TokenError("give exactly one of --merchant ID or --operator NAME")
    who = (merchant_id or operator or "").strip()
    if not who or len(who) > 64:
        raise TokenError("the merchant id or operator name must be 1 to 64 characters")
    secret = PREFIX + secrets.token_urlsafe(32)
    ensure_schema(url)
    with session_scope(url) as session:
        row = WebToken(
            token_hash=token_hash(secret),
            merchant_id=who if merchant_id is not None else None,
            operator=who if operator is not None else None,
            created_at=datetime.now(UTC),
            created_by=created_by[:100],
        )
        session.add(row)
        session.flush()
        return int(row.id), secret


def revoke_token(url: str, token_id: int) -> bool:
    """Revoke a token; False when there is no such token (or it was revoked already)."""
    ensure_schema(url)
    with session_scope(url) as session:
        row = session.get(WebToken, token_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = datetime.now(UTC)
        return True


def list_tokens(url: str) -> list[WebToken]:
    ensure_schema(url)
    with session_scope(url) as session:
        rows = list(session.scalars(select(WebToken).order_by(WebToken.id)))
        session.expunge_all()
        return rows


def _principal(row: WebToken | None) -> Principal | None:
    if row is None or row.revoked_at is not None:
        return None
    return Principal(token_id=int(row.id), merchant_id=row.merchant_id, operator=row.operator)


def principal_for_secret(url: str, secret: str) -> Principal | None:
    """The login a token secret belongs to, or None (unknown or revoked)."""
    if not secret or len(secret) > 200:
        return None
    with session_scope(url) as session:
        row = session.scalars(
            select(WebToken).where(WebToken.token_hash == token_hash(secret.strip()))
        ).one_or_none()
        return _principal(row)


def principal_for_id(url: str, token_id: int) -> Principal | None:
    """The login of a session (made from token `token_id`), or None once it is revoked."""
    with session_scope(url) as session:
        return _principal(session.get(WebToken, token_id))
