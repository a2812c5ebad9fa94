"""Sending the e-mail steps (reminders, § 498 termination notices): one SMTP connection per
batch, a few batches at once; each message gated and marked sent the moment the server
accepted it (issue 9)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from dunning.config import Settings
from dunning.crashpoints import crashpoint
from dunning.db.case_locks import unflushed_commits
from dunning.models.schema import Action
from dunning.tasks.step_gate import Result, gate, left_state, mark_accepted

# Issue 9: a timeout while the SMTP server answers the end of DATA leaves it unknown whether
# the mail was accepted, and the next run sends it again; RFC 5321 gives that reply up to
# 10 minutes. Never wait less than this, however short the HTTP timeout is set.

SMTP_TIMEOUT = 60.0


def send_reminders(
    actions: Sequence[Action],
    settings: Settings,
    batch: int = 250,
    connections: int = 4,
    url: str | None = None,
) -> list[Result]:
    """Reminder e-mails: one SMTP connection per batch, a few batches at once. A batch
    whose connection fails is left pending (transient); a refused recipient is failed."""
    if not actions:
        return []
    chunks = [actions[i : i + batch] for i in range(0, len(actions), batch)]
    with ThreadPoolExecutor(max_workers=max(1, min(connections, len(chunks)))) as pool:
        parts = list(pool.map(lambda c: _send_batch(c, settings, url), chunks))
    return [r for part in parts for r in part]


def _send_batch(
    chunk: Sequence[Action], settings: Settings, url: str | None = None
) -> list[Result]:
    import smtplib

    from dunning.db import get_engine
    from dunning.tasks.mailer import MailBuildError, message_id, open_sink, render_reminder

    sent: list[Result] = []
    engine = get_engine(url or settings.database_url)
    try:
        # One commit per gated step and per mark: they need not wait for the WAL flush.
        with (
            unflushed_commits(engine) as conn,
            open_sink(
                settings.smtp_url, timeout=max(settings.http_timeout_seconds, SMTP_TIMEOUT)
            ) as sink,
        ):
            for a in chunk:
                p = a.payload or {}
                if a.sent_at is not None:
                    # Issue 9: the mail server accepted this one before a crash; the run
                    # died before recording it. Record it now, never send it again.
                    mid = message_id(a.idempotency_key, settings.mail_from)
                    sent.append(
                        Result(a.id, a.case_id, a.step, "done", {"message_id": mid}, None, p)
                    )
                    continue
                if not gate(conn, a):
                    conn.rollback()
                    sent.append(left_state(a))
                    continue
                try:  # a mail that cannot be built sets its case aside, not the batch
                    msg = render_reminder(p, settings.mail_from, a.idempotency_key)
                except MailBuildError as exc:
                    conn.rollback()
                    sent.append(Result(a.id, a.case_id, a.step, "failed", {}, f"mail: {exc}", p))
                    continue
                try:
                    sink.send(msg)  # the case row stays locked until sent_at is committed
                except smtplib.SMTPRecipientsRefused as exc:
                    conn.rollback()
                    sent.append(
                        Result(
                            a.id, a.case_id, a.step, "failed", {}, f"recipient refused: {exc}", p
                        )
                    )
                    continue
                crashpoint("mail.accepted")
                mark_accepted(conn, a.id, engine)
                crashpoint("mail.marked")
                sent.append(
                    Result(
                        a.id, a.case_id, a.step, "done", {"message_id": msg["Message-ID"]}, None, p
                    )
                )
    except (OSError, smtplib.SMTPException) as exc:
        done_ids = {r.action_id for r in sent}
        for a in chunk:
            if a.id not in done_ids:
                sent.append(
                    Result(
                        a.id, a.case_id, a.step, "transient", {}, f"mail: {exc}", a.payload or {}
                    )
                )
    return sent
