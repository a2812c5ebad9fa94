"""Reminder e-mails: rendered from the action's payload, sent over SMTP or into a folder.

`smtp://host:port` sends over one SMTP connection per batch; `file:FOLDER` (the embedded
default) writes one `<idempotency key>.eml` per message, so a resend overwrites, never
doubles. Every message carries a Date (when it is built, i.e. sent) and a Message-ID derived
from the idempotency key: a resend after a crash carries the same id, so mail systems and
people can see it is the same notice.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import jinja2

from dunning.models.controls import strip_controls
from dunning.models.records import is_email

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

PHRASES: dict[str, dict[str, Any]] = {
    "de": {
        "subject": {
            1: "1. Mahnung – Bestellung {order_id}",
            2: "2. Mahnung – Bestellung {order_id}",
            3: "Kündigungsandrohung (§ 498 BGB) – Bestellung {order_id}",
        },
        "greeting": "Guten Tag",
        "intro": {
            1: "für Ihre Bestellung „{product}“ vom {order_date} haben wir bis heute keine "
            "vollständige Zahlung erhalten.",
            2: "trotz unserer ersten Mahnung ist die folgende Forderung aus Ihrer Bestellung "
            "„{product}“ vom {order_date} weiterhin offen.",
            3: "mit der Ratenzahlung für Ihre Bestellung „{product}“ vom {order_date} sind Sie "
            "mit mindestens zwei aufeinanderfolgenden Raten ganz oder teilweise in Verzug.",
        },
        "item": "Posten",
        "due": "fällig am",
        "amount": "Betrag",
        "paid": "bereits gezahlt",
        "total": "Gesamtbetrag",
        "arrears": "Rückständiger Betrag",
        "deadline": "Bitte zahlen Sie den Gesamtbetrag bis spätestens",
        "deadline_arrears": "Bitte zahlen Sie den rückständigen Betrag bis spätestens",
        "next": {
            1: "Geht bis dahin keine Zahlung ein, erhalten Sie eine zweite Mahnung.",
            "court": "Geht bis dahin keine Zahlung ein, übergeben wir die Forderung einem "
            "Inkassopartner; bleibt auch das ohne Erfolg, wird das gerichtliche "
            "Mahnverfahren beantragt. Dadurch entstehen Ihnen weitere Kosten.",
            "cancellation": "Geht bis dahin keine Zahlung ein, übergeben wir die Forderung "
            "einem Inkassopartner und kündigen Ihre Bestellung (der Zugang zum Produkt endet). "
            "Dadurch entstehen Ihnen weitere Kosten.",
            3: "Geht der rückständige Betrag nicht bis dahin vollständig ein, kündigen wir den "
            "Ratenzahlungsvertrag und verlangen die gesamte Restschuld (§ 498 Abs. 1 BGB); Ihre "
            "Bestellung wird storniert. Gern sprechen wir mit Ihnen über eine einvernehmliche "
            "Regelung.",
        },
        "disregard": "Haben Sie bereits gezahlt, betrachten Sie dieses Schreiben bitte als "
        "gegenstandslos.",
        "regards": "Mit freundlichen Grüßen",
    },
    "en": {
        "subject": {
            1: "First reminder – order {order_id}",
            2: "Second reminder – order {order_id}",
            3: "Notice of termination (§ 498 BGB) – order {order_id}",
        },
        "greeting": "Dear",
        "intro": {
            1: 'we have not yet received full payment for your order "{product}" of {order_date}.',
            2: 'despite our first reminder, the following claim from your order "{product}" '
            "of {order_date} is still open.",
            3: "you are in default, wholly or in part, with at least two consecutive "
            'installments of your order "{product}" of {order_date}.',
        },
        "item": "Item",
        "due": "due",
        "amount": "Amount",
        "paid": "already paid",
        "total": "Total",
        "arrears": "Amount in arrears",
        "deadline": "Please pay the total by",
        "deadline_arrears": "Please pay the amount in arrears by",
        "next": {
            1: "If we do not receive payment by then, you will receive a second reminder.",
            "court": "If we do not receive payment by then, we will hand the claim over to a "
            "collection partner; if that fails too, the court dunning procedure will be "
            "requested. This causes further costs for you.",
            "cancellation": "If we do not receive payment by then, we will hand the claim over "
            "to a collection partner and cancel your order (access to the product ends). "
            "This causes further costs for you.",
            3: "If the amount in arrears is not paid in full by then, we will terminate the "
            "installment agreement and demand the whole remaining debt (§ 498 (1) BGB); your "
            "order will be cancelled. We are happy to discuss an amicable arrangement.",
        },
        "disregard": "If you have already paid, please disregard this letter.",
        "regards": "Kind regards",
    },
}


def language(locale: str | None) -> str:
    """German for German-speaking (and unknown) locales, English for everyone else."""
    if not locale:
        return "de"
    return "de" if locale.lower().replace("_", "-").split("-")[0] == "de" else "en"


@lru_cache
def _env(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates ship with the package: no stat() per mail
    )


class MailBuildError(ValueError):
    """A reminder that cannot be built from the case's data. The message names the part,
    never the buyer's name or address (it goes to the case and to logs)."""


def recipient(buyer: dict[str, Any]) -> str:
    """The To: header from validated parts only: one bare address, a name without
    control characters (a line break would start a header of the sender's choosing)."""
    address = buyer.get("email")
    if type(address) is not str or not is_email(address):
        raise MailBuildError("the buyer's e-mail address is not exactly one valid address")
    name = strip_controls(f"{buyer.get('first_name') or ''} {buyer.get('last_name') or ''}")
    try:
        header = formataddr((name[:200], address), charset="utf-8")
    except (ValueError, UnicodeError):
        raise MailBuildError("the buyer's name cannot be written into a mail header") from None
    if "\r" in header or "\n" in header:  # never expected; the last line of defence
        raise MailBuildError("the buyer's name or address would break the mail header")
    return header


def render_reminder(
    payload: dict[str, Any], mail_from: str, key: str, when: datetime | None = None
) -> Message:
    """The reminder e-mail of one action (plain text + HTML alternative), dated `when`
    (default: now; RFC 5322 requires a Date), its Message-ID derived from the key.

    Raises MailBuildError when the buyer's data cannot make a safe header."""
    to = recipient(payload["buyer"])
    lang = language(payload["buyer"].get("locale"))
    level = int(payload["level"])
    words = PHRASES[lang]
    order = payload["order"]
    subject = words["subject"][level].format(order_id=strip_controls(str(order["order_id"])))
    context = dict(payload, lang=lang, subject=subject)
    context["deadline"] = format_date(payload["deadline"], lang)
    context["order"] = dict(order, order_date=format_date(order["order_date"], lang))
    context["items"] = [
        dict(i, due_date=format_date(i["due_date"], lang) if i.get("due_date") else None)
        for i in payload["items"]
    ]
    context["items"] = [dict(i, amount=format_amount(i["amount"], lang)) for i in context["items"]]
    context["paid_text"] = format_amount(payload["paid"], lang)
    context["total"] = format_amount(payload["total"], lang)
    order = context["order"]
    t = {k: v for k, v in words.items() if isinstance(v, str)}
    t["intro"] = words["intro"][level].format(
        product=order["product"], order_date=order["order_date"]
    )
    t["next"] = words["next"][payload["option"] if level == 2 else level]
    if level == 3:
        t["total"], t["deadline"] = words["arrears"], words["deadline_arrears"]
    text = _env(False).get_template(f"reminder_{lang}.txt.j2").render(**context, t=t)
    html = _env(True).get_template("reminder.html.j2").render(**context, t=t)

    # compat32 MIME classes: several times cheaper to build than EmailMessage, same bytes
    # on the wire for what we send.
    msg = MIMEMultipart("alternative")
    msg["From"] = mail_from
    msg["To"] = to
    msg["Subject"] = Header(subject, "utf-8").encode()
    msg["Date"] = format_datetime((when or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = message_id(key, mail_from)
    msg["X-Dunning-Key"] = key
    msg.attach(MIMEText(text, "plain", "utf-8"))
    msg.attach(MIMEText(html, "html", "utf-8"))
    return msg


def format_date(iso: str, lang: str) -> str:
    """31.01.2026 in German, 2026-01-31 (unambiguous) in English."""
    day = date.fromisoformat(iso)
    return day.strftime("%d.%m.%Y") if lang == "de" else day.isoformat()


def format_amount(amount: str, lang: str) -> str:
    """1.234,56 in German, 1,234.56 in English."""
    text = f"{Decimal(amount):,.2f}"
    return text.replace(",", "_").replace(".", ",").replace("_", ".") if lang == "de" else text


def message_id(key: str, mail_from: str) -> str:
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "dunning.invalid"
    return f"<{key}@{domain}>"


class MailSink(Protocol):
    def send(self, msg: Message) -> None: ...


class _FolderSink:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def send(self, msg: Message) -> None:
        key = msg["X-Dunning-Key"]
        tmp = self.folder / f".{key}.eml.tmp"
        tmp.write_bytes(bytes(msg))
        tmp.replace(self.folder / f"{key}.eml")


class _SmtpSink:
    def __init__(self, client: smtplib.SMTP):
        self.client = client

    def send(self, msg: Message) -> None:
        self.client.send_message(msg)


class MailConfigError(ValueError):
    """An SMTP URL that cannot work; the message says what to write instead."""


@contextmanager
def open_sink(smtp_url: str, timeout: float = 30.0) -> Iterator[MailSink]:
    """One connection (or folder) for a batch of messages."""
    if smtp_url.startswith("file:"):
        path = smtp_url[len("file:") :]
        if path.startswith("//"):
            path = urlsplit(smtp_url).path
        yield _FolderSink(Path(path))
        return
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailConfigError(
            f"DUNNING_SMTP_URL {smtp_url!r} is not smtp://host:port, smtps://host:port "
            "or file:FOLDER"
        )
    cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    client = cls(
        parts.hostname, parts.port or (465 if parts.scheme == "smtps" else 25), timeout=timeout
    )
    try:
        if parts.username:
            client.login(parts.username, parts.password or "")
        yield _SmtpSink(client)
    finally:
        try:
            client.quit()
        except smtplib.SMTPException:
            client.close()
