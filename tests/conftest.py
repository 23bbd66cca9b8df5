"""Shared test setup: hypothesis profiles and the check that we test compiled code."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=200_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_asyncio_loop_factories(config, item):
    """Async tests run on uvloop (production's loop); network tests marked
    `both_loops` also run on stdlib asyncio, so loop quirks cannot hide."""
    import asyncio

    import uvloop

    if item.get_closest_marker("both_loops"):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def make_config():
    """Build a validated Config from plain sections, as an operator's YAML would."""
    import yaml

    from smps import config

    def build(**sections):
        return config.loads(yaml.safe_dump(sections), file="<test>")

    return build


@pytest.fixture
def private_mariadb(tmp_path):
    """A mariadbd of the test's own (fresh datadir, own port, no grant tables), for outage
    and kill tests that must not touch the shared server on 3306."""
    import shutil

    from tests.store_db import INSTALL_DB, MARIADBD, PrivateMariaDB

    if not (os.path.exists(MARIADBD) and INSTALL_DB):
        pytest.skip("needs mariadbd and mariadb-install-db")
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.base, ignore_errors=True)
