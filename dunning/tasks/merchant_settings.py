"""Read and change merchant settings in the database (the only writer of those tables)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunning.config import Settings, get_settings
from dunning.db import ensure_schema, session_scope
from dunning.models.enums import DunningOption
from dunning.models.merchant_settings import (
    MONEY_FIELDS,
    MerchantConfig,
    apply_change,
    defaults_from,
)
from dunning.models.schema import Merchant, MerchantSettings, MerchantSettingsHistory

CONFIG_FIELDS = tuple(MerchantConfig.__dataclass_fields__)


def load(
    session: Session, merchant_id: str, installation: Settings, for_update: bool = False
) -> tuple[MerchantConfig, MerchantSettings | None]:
    """The merchant's settings (defaults if never configured) and the stored row, if any."""
    query = select(MerchantSettings).where(MerchantSettings.merchant_id == merchant_id)
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        return defaults_from(installation), None
    return _config(row), row


def _config(row: MerchantSettings) -> MerchantConfig:
    values: dict[str, Any] = {name: getattr(row, name) for name in CONFIG_FIELDS}
    values["dunning_option"] = DunningOption(values["dunning_option"])
    values["interest_enabled"] = bool(values["interest_enabled"])
    for money in MONEY_FIELDS:
        values[money] = Decimal(values[money]).quantize(Decimal("0.01"))
    return MerchantConfig(**values)


def change(
    session: Session,
    merchant_id: str,
    changes: dict[str, Any],
    as_of: datetime,
    actor: str,
    installation: Settings,
) -> tuple[MerchantConfig, dict[str, list[Any]]]:
    """Apply a change under the 30-day rule; write the current row and a history row."""
    current, row = load(session, merchant_id, installation, for_update=True)
    option_changed_at = row.option_changed_at if row else None
    new, diff, option_changed_at = apply_change(
        current,
        option_changed_at,
        changes,
        as_of,
        installation.zone,
        installation.max_reminder_fee,
    )
    if not diff:
        return new, diff
    if row is None:
        row = MerchantSettings(merchant_id=merchant_id)
        session.add(row)
    for name in CONFIG_FIELDS:
        value = getattr(new, name)
        setattr(row, name, value.value if isinstance(value, DunningOption) else value)
    row.option_changed_at = option_changed_at
    row.updated_at = as_of
    row.updated_by = actor
    session.add(
        MerchantSettingsHistory(
            merchant_id=merchant_id,
            changed_at=as_of,
            changed_by=actor,
            changes=diff,
            settings=new.as_json(),
        )
    )
    return new, diff


def change_in_database(
    merchant_id: str, changes: dict[str, Any], operator: str, as_of: datetime
) -> dict[str, list]:
    """`change` in a transaction of its own on the installation's database: what an operator's
    form does (raises SettingsChangeRefused with the date a change becomes possible)."""
    installation = get_settings()
    ensure_schema(installation.database_url)
    with session_scope(installation.database_url) as session:
        _, diff = change(session, merchant_id, changes, as_of, operator, installation)
    return diff


def history(session: Session, merchant_id: str) -> list[MerchantSettingsHistory]:
    return list(
        session.scalars(
            select(MerchantSettingsHistory)
            .where(MerchantSettingsHistory.merchant_id == merchant_id)
            .order_by(MerchantSettingsHistory.id)
        )
    )


def merchant_known(session: Session, merchant_id: str) -> bool:
    return session.get(Merchant, merchant_id) is not None


def configs_for(
    session: Session, merchant_ids: Iterable[str], installation: Settings
) -> dict[str, MerchantConfig]:
    """The settings of many merchants at once (defaults for those never configured)."""
    ids = sorted(set(merchant_ids))
    default = defaults_from(installation)
    out = dict.fromkeys(ids, default)
    for start in range(0, len(ids), 5000):
        query = select(MerchantSettings).where(
            MerchantSettings.merchant_id.in_(ids[start : start + 5000])
        )
        for row in session.scalars(query):
            out[row.merchant_id] = _config(row)
    return out
