"""The handover rules' words (SPEC §2): who routes a new case and why, for its first
history row. Pure; `dunning.tasks.handover` applies the rules, detection opens cases with
them on PostgreSQL."""

from __future__ import annotations

from dunning.models.enums import CaseKind

ROUTER = "handover"  # the actor of a case's first routing in its history

# The history reason of a routing, by (case kind, auto-handover switch of that kind).
ROUTE_REASONS = {
    (CaseKind.CHARGEBACK.value, True): "auto-handover of chargebacks is on",
    (CaseKind.CHARGEBACK.value, False): "auto-handover of chargebacks is off",
    (CaseKind.OVERDUE.value, True): "auto-handover of overdue claims is on",
    (CaseKind.OVERDUE.value, False): "auto-handover of overdue claims is off",
}
