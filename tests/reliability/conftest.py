"""Fixtures of the reliability tests: the Prefect API for `dunning` subprocesses (SMTP and
the partner come from tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_api_env(prefect_harness) -> dict[str, str]:
    """The environment that points a `dunning` subprocess at the session's Prefect server
    (no ephemeral server start per subprocess)."""
    from prefect.settings import get_current_settings

    return {
        "PREFECT_API_URL": str(get_current_settings().api.url),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
