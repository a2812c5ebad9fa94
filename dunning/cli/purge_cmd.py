"""`dunning purge`: remove buyers' personal data after the retention period."""

from __future__ import annotations

import typer

from dunning.cli.common import AS_OF_HELP, UserError, as_of_option, console, database_url


def purge(
    closed_before: str = typer.Option(
        ...,
        "--closed-before",
        help="Anonymise buyers whose cases all closed before this date; quarantined records "
        "of no known order received before it lose their payload.",
    ),
    as_of: str | None = typer.Option(None, "--as-of", help=AS_OF_HELP),
) -> None:
    """Anonymise buyers of closed cases; amounts and states stay for reporting."""
    from dunning.db import session_scope
    from dunning.tasks.purge import purge_closed, purge_quarantine

    cutoff = as_of_option(closed_before, "--closed-before")
    moment = as_of_option(as_of)
    if cutoff > moment:
        raise UserError("--closed-before lies in the future; nothing can have closed then")
    with session_scope(database_url()) as session:
        count = purge_closed(session, cutoff, moment)
        quarantined = purge_quarantine(session, cutoff)
    console.print(
        f"anonymised the buyers of {count} orders whose cases closed before {cutoff:%Y-%m-%d}; "
        f"removed the payloads of {quarantined} quarantined records",
        soft_wrap=True,
    )
