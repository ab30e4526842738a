"""What the flow tests share: the environment Prefect runs in here and one Prefect test server
per module."""

from __future__ import annotations

import pytest

# No telemetry, a patient start for the temporary server on two busy cores, and no warning for
# logs written outside a flow.
ENV = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore"}


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """The module's Prefect test server (prefect_test_harness, PREFECT_HOME in a temp folder);
    yields its API URL, which subprocesses and Dask workers are pointed at."""
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**ENV, "PREFECT_HOME": str(home)}.items():
            mp.setenv(k, v)
        mp.delenv("PREFECT_API_URL", raising=False)
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        with temporary_settings(updates={PREFECT_HOME: str(home)}), prefect_test_harness(server_startup_timeout=60):
            yield PREFECT_API_URL.value()
