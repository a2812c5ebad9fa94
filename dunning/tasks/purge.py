"""Data protection: anonymise buyers of orders whose cases closed before a cutoff.

Amounts, states and history stay for reporting; names, e-mail, address and phone go, as do
the raw quarantine payloads and the outside-call payloads that carried them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session

from dunning.models.enums import TERMINAL_STATES
from dunning.models.schema import Action, Buyer, Case, CaseReport, QuarantinedRecord

ANONYMISED = "anonymisiert"
TERMINAL = [s.value for s in TERMINAL_STATES]


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
                phone=None,
                anonymised_at=as_of,
            )
        )
        session.execute(
            update(CaseReport)
            .where(CaseReport.order_id.in_(chunk))
            .values(first_name=ANONYMISED, last_name=ANONYMISED)
        )
        session.execute(
            update(QuarantinedRecord).where(QuarantinedRecord.order_id.in_(chunk)).values(raw="{}")
        )
        session.execute(
            update(Action)
            .where(Action.case_id.in_(select(Case.case_id).where(Case.order_id.in_(chunk))))
            .values(payload=None)
        )
    return len(order_ids)
