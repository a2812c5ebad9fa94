"""Merchant settings in the database, and through the CLI as an operator uses it."""

from datetime import UTC, datetime, timedelta

import pytest

from dunning.config import Settings
from dunning.db import session_scope, upgrade
from dunning.models.merchant_settings import SettingsChangeRefused
from dunning.tasks import merchant_settings as store

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def test_changes_are_kept_as_history_not_overwritten(migrated_db):
    installation = Settings()
    with session_scope(migrated_db) as s:
        store.change(s, "m1", {"dunning_option": "cancellation"}, T0, "alice", installation)
    with session_scope(migrated_db) as s:
        store.change(s, "m1", {"auto_overdue": True}, T0 + timedelta(days=1), "bob", installation)
    with session_scope(migrated_db) as s, pytest.raises(SettingsChangeRefused, match="2026-12-01"):
        store.change(
            s, "m1", {"dunning_option": "court"}, T0 + timedelta(days=2), "eve", installation
        )
    with session_scope(migrated_db) as s:
        config, row = store.load(s, "m1", installation)
        entries = store.history(s, "m1")
    assert config.dunning_option == "cancellation" and config.auto_overdue is True
    assert row.option_changed_at == T0
    assert [(e.changed_by, e.changes) for e in entries] == [
        ("alice", {"dunning_option": ["court", "cancellation"]}),
        ("bob", {"auto_overdue": [False, True]}),
    ]
    assert entries[1].settings["dunning_option"] == "cancellation"


def test_unconfigured_merchant_has_the_defaults(migrated_db):
    with session_scope(migrated_db) as s:
        config, row = store.load(s, "never-seen", Settings())
    assert row is None
    assert config.dunning_option == "court"
    assert not config.auto_overdue and not config.auto_chargebacks


def test_cli_refuses_inside_30_days_and_names_the_date(db_url, cli):
    env = {"DUNNING_DATABASE_URL": db_url}
    ok = cli("settings", "set", "m1", "--option", "cancellation", "--as-of", "2026-11-01", env=env)
    assert ok.returncode == 0, ok.stderr
    refused = cli("settings", "set", "m1", "--option", "court", "--as-of", "2026-11-20", env=env)
    assert refused.returncode == 2
    assert "next on 2026-12-01" in refused.stderr
    assert "Traceback" not in refused.stderr
    allowed = cli("settings", "set", "m1", "--option", "court", "--as-of", "2026-12-01", env=env)
    assert allowed.returncode == 0, allowed.stderr
    shown = cli("settings", "show", "m1", env=env)
    assert shown.returncode == 0
    assert "cancellation → court" in shown.stdout


def test_cli_rejects_unknown_option_value(sqlite_url, cli):
    result = cli("settings", "set", "m1", "--option", "b", env={"DUNNING_DATABASE_URL": sqlite_url})
    assert result.returncode == 2
    assert "'--option'" in result.stderr
    assert "'b' is not one of 'court'" in result.stderr
    assert "'cancellation'" in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nonsense", "DUNNING_DATABASE_URL is not a database URL"),
        ("mysql://root@127.0.0.1/x", "supported are sqlite and postgresql"),
        ("postgresql://nobody@127.0.0.1:1/x", "database not reachable"),
    ],
)
def test_bad_database_url_is_one_clear_line(cli, url, expected):
    result = cli("settings", "show", "m1", env={"DUNNING_DATABASE_URL": url})
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_secrets_are_never_printed():
    settings = Settings(partner_token="s3cret-token", source_token="other-secret")
    assert "s3cret-token" not in repr(settings)
    assert "other-secret" not in str(settings.model_dump())


def test_upgrade_is_run_by_commands_that_need_the_schema(sqlite_url, cli):
    result = cli("merchants", env={"DUNNING_DATABASE_URL": sqlite_url})
    assert result.returncode == 0, result.stderr
    assert upgrade(sqlite_url)[0] is not None


def test_the_settings_form_flow_changes_and_refuses_like_the_cli(
    migrated_db, prefect_harness, monkeypatch
):
    from dunning.config import get_settings
    from dunning.flows.settings import change_merchant_settings

    monkeypatch.setenv("DUNNING_DATABASE_URL", migrated_db)  # configuration, not a parameter
    get_settings.cache_clear()
    diff = change_merchant_settings(
        "m1",
        dunning_option="cancellation",
        reminder_fee="1.50",
        auto_overdue="on",
        operator="alice",
        as_of=T0,
    )
    assert diff["dunning_option"] == ["court", "cancellation"]
    assert diff["auto_overdue"][1] is True and "auto_chargebacks" not in diff  # keep: unchanged
    refused = change_merchant_settings(
        "m1",
        dunning_option="court",
        operator="bob",
        as_of=T0 + timedelta(days=2),
        return_state=True,
    )
    assert refused.name == "Refused" and refused.type.value == "COMPLETED"
    assert "2026-12-01" in refused.message and refused.message.startswith("merchant m1: ")
    with session_scope(migrated_db) as s:
        config, _ = store.load(s, "m1", Settings())
    assert config.dunning_option == "cancellation" and str(config.reminder_fee) == "1.50"
