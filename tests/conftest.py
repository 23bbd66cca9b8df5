"""Shared test setup: hypothesis profiles, the event loops async tests run on, and the
checks that no loop callback and no subprocess failed unseen."""

import gc
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests import loop_errors, tracebacks

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
    if item.get_closest_marker("both_loops"):
        return {"asyncio": loop_errors.new_asyncio_loop, "uvloop": loop_errors.new_uvloop}
    return {"uvloop": loop_errors.new_uvloop}


@pytest.fixture(autouse=True)
def no_unhandled_loop_errors():
    """Fail the test if a loop callback raised and asyncio only logged it. Autouse, so it
    is set up before the test's loop and checks after the loop closed. A collection
    brings out the tasks dropped while pending or with an exception nobody retrieved,
    inside the test that dropped them (only after tests that ran a loop: it costs ~50 ms)."""
    report = loop_errors.report
    report.reset()
    yield
    if report.loops:
        gc.collect()
    if report.unhandled:
        failures = [loop_errors.describe(context) for context in report.unhandled]
        report.reset()
        pytest.fail(
            f"{len(failures)} unhandled exception(s) in event-loop callbacks:\n\n"
            + "\n\n".join(failures),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def no_traceback_in_process_output():
    """Fail the test if a subprocess it ran (`smps run`, a worker) wrote a Python traceback
    to a file registered in ``tracebacks.outputs``: a crash, or an exception the node
    survived only by logging it."""
    tracebacks.outputs.clear()
    yield
    found = [
        f"{path}:\n{traceback}"
        for path in dict.fromkeys(tracebacks.outputs)
        if path.exists()
        for traceback in tracebacks.found_in(path.read_text(errors="replace"))
    ]
    tracebacks.outputs.clear()
    if found:
        pytest.fail("tracebacks in subprocess output:\n\n" + "\n\n".join(found), pytrace=False)


@pytest.fixture
def make_config(tmp_path):
    """Build a validated Config from plain sections, as an operator's YAML would. A
    config that names no state directory or database gets the test's own (under
    tmp_path), never the defaults in the checkout's ./var."""
    import yaml

    from smps import config

    def build(**sections):
        state_dir = tmp_path / "var"
        sections["node"] = {"state_dir": str(state_dir), **sections.get("node", {})}
        sections["database"] = {
            "url": f"sqlite:///{state_dir / 'smps.db'}",
            **sections.get("database", {}),
        }
        return config.loads(yaml.safe_dump(sections), file="<test>")

    return build


CHECKOUT_VAR = Path(__file__).resolve().parent.parent / "var"


def _listing(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under `directory` with its size and modification time."""
    if not directory.exists():
        return {}
    return {
        str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(autouse=True, scope="session")
def checkout_var_untouched():
    """The suite (and the `smps demo` it runs) keep their state in their own directories:
    the checkout's ./var, the service's default state and database, must not change."""
    before = _listing(CHECKOUT_VAR)
    yield
    after = _listing(CHECKOUT_VAR)
    if after != before:
        changed = sorted(
            name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
        )
        pytest.fail(f"the tests changed the checkout's ./var: {', '.join(changed)}", pytrace=False)


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
