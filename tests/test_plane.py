"""One data plane: the single-process node (`smps demo`, the in-process tests) runs
the same `DataPlane` as the workers of `smps run`, so both export the same
data-plane metrics. Real nodes: an in-process Node and `smps run` with 2 workers,
each with a simulated SMSC and an NE on loopback, scraped over HTTP."""

import asyncio
import re
import urllib.request

from smps._native.pdu import Status
from tests.helpers import until
from tests.peers import allow
from tests.test_proxy import proxy
from tests.test_run_store import answered_all, running

# What only `smps run` has: its processes and its HA controller. (The families of the
# mesh between its workers and of their records show in a single-process node too, at 0.)
RUN_ONLY = {
    "smps_worker_restarts",
    "smps_workers_up",
    "smps_ha_role",
    "smps_ha_transitions",
}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def smps_families(text: str) -> set[str]:
    return {
        name.removesuffix("_total")
        for name in re.findall(r"^# TYPE (smps_\w+) ", text, re.MULTILINE)
    }


def sample(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


async def test_single_process_node_exports_the_data_plane_metrics_of_smps_run(
    make_config, tmp_path
):
    async with proxy(make_config) as (sim, node, add_ne):
        await add_ne("antispam", "pw1", allow)
        numbers = [sim.send_deliver() for _ in range(3)]
        await answered_all(sim, numbers)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        single = await asyncio.to_thread(scrape, node.http_port)
    assert sample(single, "smps_originals_received_total") == 3
    assert sample(single, "smps_internal_errors_total") == 0
    assert 'smps_binds_up{account="antispam",side="ne"} 1.0' in single
    assert 'smps_binds_up{side="smsc",smsc="smsc1"} 1.0' in single
    assert 'smps_binds_up{account="fraud",side="ne"} 0.0' in single  # no NE bound: 0, shown
    assert "\nsmps_pdu_errors_total 0.0\n" in single  # every counter from the start

    async with running(tmp_path / "run") as (sim, run_node, _api, _nes):
        numbers = [sim.send_deliver() for _ in range(3)]
        await answered_all(sim, numbers)
        port = run_node.report["http_port"]

        async def reported() -> bool:  # the workers send their snapshots every second
            text = await asyncio.to_thread(scrape, port)
            return sample(text, "smps_originals_received_total") == 3

        await until(reported)
        run = await asyncio.to_thread(scrape, port)
    assert sample(run, "smps_internal_errors_total") == 0
    assert smps_families(run) - RUN_ONLY == smps_families(single)
