"""Issue 16: the run summary reads top-down for a person: degraded first, then transitions,
then what needs a human, the step figures last with their units; English text, states as
the board names them; no internal keys (paths, watermarks, dates)."""

from __future__ import annotations

from dunning.flows.artifacts import run_summary_markdown, step_figures
from tests.report_fixtures import build_board

STEP_SUMMARY = {
    "as_of": "2026-02-01T06:00:00+00:00",
    "sync": {
        "source": "file:/srv/orders.jsonl",
        "read": 300,
        "inserted": 12,
        "seconds": 0.16,
        "watermark": "2026-01-31T17:43:03+00:00",
    },
    "detect": {"mode": "incremental", "new_cases": 4},
    "escalate": {"claimed": 3, "performed": {"handover:transient": 3, "reminder_1:done": 2}},
    "report": {"cases": 107, "snapshot_date": "2026-02-01"},
}


def test_summary_order_units_and_language(migrated_db):
    build_board(migrated_db)
    text = run_summary_markdown(
        migrated_db,
        0,
        title="Dunning run",
        step_summary=STEP_SUMMARY,
        degraded="partner unreachable since 2026-02-01T06:00+00:00 (3 steps wait)",
    )
    lines = text.splitlines()
    assert lines[0].startswith("**Run degraded**: partner unreachable")
    order = [
        next(i for i, line in enumerate(lines) if line.startswith(h))
        for h in ("## Transitions", "## Needs a human", "## Step figures")
    ]
    assert order == sorted(order)
    assert "| awaiting approval: start or cancel |" in text
    assert "| sync | records read | 300 records |" in text
    assert "| sync | sync time | 0.16 s |" in text
    assert "| escalate | handover: waiting (retried next run) | 3 steps |" in text
    for internal in ("/srv/orders.jsonl", "watermark", "snapshot_date", "incremental", "count |"):
        assert internal not in text, internal
    for german in ("Freigabe nötig", "(neu)", "starten oder abbrechen"):
        assert german not in text


def test_step_figures_skip_what_a_run_did_not_report():
    assert step_figures({}) == []
    assert step_figures({"sync": {"read": 0}}) == [("sync", "records read", "0 records")]
