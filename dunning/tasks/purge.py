"""Data protection: anonymise buyers of orders whose cases closed before a cutoff.

Amounts, states and history stay for reporting; names, e-mail, address and phone go, as do
the raw quarantine payloads, the outside-call payloads and errors that carried them, and
the reasons operators wrote (free text: "Frau M. called, pays Friday").

Quarantine rows go by order id where one was readable; rows without one (or of an order
that never had a valid snapshot) go by age: received before the cutoff. A purged buyer's
row stays as a tombstone (`anonymised_at`): the loader neither restores its data from a
newer snapshot nor keeps a later broken snapshot's payload (`redact_purged`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session

from dunning.models.enums import TERMINAL_STATES
from dunning.models.schema import (
    Action,
    Buyer,
    Case,
    CaseHistory,
    CaseReportRow,
    QuarantinedRecord,
)

ANONYMISED = "anonymisiert"
PURGED_TEXT = "(gelöscht)"  # an operator's reason, removed with the buyer's data
PURGED_RAW = "{}"
TERMINAL = [s.value for s in TERMINAL_STATES]
# Transitions the pipeline writes itself; any other actor is an operator with free text.
SYSTEM_ACTORS = ("detect", "handover", "escalation", "partner-sync")


def purge_closed(session: Session, closed_before: datetime, as_of: datetime) -> int:
    """Anonymise buyers whose every case is terminal and closed before the cutoff."""
    closed_case = (
        select(Case.order_id)
        .where(Case.state.in_(TERMINAL), Case.closed_at < closed_before)
        .scalar_subquery()
    )
    still_relevant = exists().where(
        and_(
            Case.order_id == Buyer.order_id,
            (Case.state.not_in(TERMINAL)) | (Case.closed_at >= closed_before),
        )
    )
    orders = select(Buyer.order_id).where(
        Buyer.anonymised_at.is_(None), Buyer.order_id.in_(closed_case), ~still_relevant
    )
    order_ids = list(session.scalars(orders))
    for start in range(0, len(order_ids), 5000):
        chunk = order_ids[start : start + 5000]
        session.execute(
            update(Buyer)
            .where(Buyer.order_id.in_(chunk))
            .values(
                first_name=ANONYMISED,
                last_name=ANONYMISED,
                email="",
                company_name=None,
                street=None,
                house_number=None,
                zip_code=None,
                city=None,
                phone=None,
                anonymised_at=as_of,
            )
        )
        session.execute(
            update(CaseReportRow)
            .where(CaseReportRow.order_id.in_(chunk))
            .values(first_name=ANONYMISED, last_name=ANONYMISED, search_text=None)
        )
        cases = select(Case.case_id).where(Case.order_id.in_(chunk))
        # payloads and errors of mails and partner calls quote names and addresses
        session.execute(
            update(Action).where(Action.case_id.in_(cases)).values(payload=None, last_error=None)
        )
        session.execute(
            update(Case)
            .where(Case.order_id.in_(chunk), Case.close_reason.like("cancelled by %"))
            .values(close_reason="cancelled by an operator " + PURGED_TEXT)
        )
        session.execute(update(Case).where(Case.order_id.in_(chunk)).values(partner_error=None))
        session.execute(
            update(CaseHistory)
            .where(
                CaseHistory.case_id.in_(cases),
                CaseHistory.actor.not_in(SYSTEM_ACTORS),
                CaseHistory.reason.is_not(None),
            )
            .values(reason=PURGED_TEXT)
        )
    return len(order_ids)


def purge_quarantine(session: Session, received_before: datetime) -> int:
    """Remove the raw payloads of quarantined records that belong to purged buyers, or that
    name no known order and arrived before the cutoff. The entry (field, reason, digest)
    stays: the digest keeps the same payload from being stored again."""
    purged_order = exists().where(
        Buyer.order_id == QuarantinedRecord.order_id, Buyer.anonymised_at.is_not(None)
    )
    known_order = exists().where(Buyer.order_id == QuarantinedRecord.order_id)
    result = session.execute(
        update(QuarantinedRecord)
        .where(
            QuarantinedRecord.raw != PURGED_RAW,
            purged_order
            | (
                (QuarantinedRecord.received_at < received_before)
                & (QuarantinedRecord.order_id.is_(None) | ~known_order)
            ),
        )
        .values(raw=PURGED_RAW)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
