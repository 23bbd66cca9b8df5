"""`smps run` (the master and 2 worker processes) with its database: decisions
and trace events made in the workers reach the master's one writer and the
REST API; NE accounts made and disabled through the API reach every worker live.

Real processes: `smps run` in a subprocess, a simulated SMSC and simulated
NEs in the test's loop, the test's own connection to the same SQLite file.
"""

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp

from smps._native.pdu import Status
from smps.proxy.trace_store import TraceFileSink, read_events
from smps.sim.ne import SimNe
from smps.sim.smsc import SimSmsc
from smps.store import admin_users, tokens
from smps.store.db import Store
from tests.helpers import until
from tests.nodes import RunNode, sections

TRACED = "8613900000001"
BLOCK = 0x66  # policy.block_status by default


class RunningNode(RunNode):
    """`smps run -c FILE` with 2 workers, recording everything (by default), started at once."""

    def __init__(self, tmp_path: Path, smsc_port: int, record: str = "all"):
        super().__init__(
            tmp_path,
            sections(
                tmp_path,
                smsc_port,
                database={"url": f"sqlite:///{tmp_path / 'var' / 'smps.db'}", "record": record},
                ne_accounts=[{"system_id": "antispam", "password": "pw1", "max_binds": 2}],
                trace={"rules": [{"number": TRACED}]},
            ),
        )
        self.database = tmp_path / "var" / "smps.db"
        self.launch()


@contextlib.asynccontextmanager
async def running(tmp_path, record: str = "all"):
    """(sim SMSC, node, API session with an admin token, antispam NE)."""
    sim = SimSmsc(window=5000, response_timeout=30)
    node = RunningNode(tmp_path, await sim.start(), record)
    nes: list[SimNe] = []
    try:
        await until(node.up)
        await sim.wait_bound(2)  # one bind per worker
        store = await Store.open(f"sqlite:///{node.database}", migrate=False)
        try:
            token = await tokens.create_token(store, "ops", "admin")
        finally:
            await store.close()
        ne = SimNe("127.0.0.1", node.report["smpp_port"], system_id="antispam", password="pw1")
        ne.start()
        nes.append(ne)
        await ne.wait_bound()
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{node.report['http_port']}/api/v1"
        async with aiohttp.ClientSession(base_url=base + "/", headers=headers) as api:
            yield sim, node, api, nes
    finally:
        for ne in nes:
            await ne.stop()
        assert await node.stop() == 0
        await sim.stop()


async def answered_all(sim, numbers):
    await until(lambda: all(n in sim.answers for n in numbers))


async def test_decisions_and_traces_from_workers_reach_the_database_and_the_api(tmp_path):
    async with running(tmp_path) as (sim, node, api, _nes):
        numbers = [sim.send_deliver(short_message=b"d%d" % i) for i in range(200)]
        numbers.append(sim.send_deliver(destination_addr=TRACED.encode()))
        await answered_all(sim, numbers)
        assert sim.duplicates == 0 and {sim.answers[n][0] for n in numbers} == {Status.ROK}

        items: list[dict] = []

        async def all_recorded() -> bool:
            items.clear()
            cursor = None
            while True:
                query = {"limit": 500, **({"cursor": cursor} if cursor else {})}
                async with api.get("decisions", params=query) as response:
                    assert response.status == 200, await response.text()
                    page = await response.json()
                items.extend(page["items"])
                cursor = page["next_cursor"]
                if cursor is None:
                    return len(items) >= len(numbers)

        await until(all_recorded)
        assert len(items) == len(numbers)  # none lost, none twice
        assert {item["verdict"] for item in items} == {"allow"}
        assert {r["account"] for item in items for r in item["results"]} == {"antispam"}

        async def traced() -> bool:
            async with api.get("traces", params={"number": TRACED}) as response:
                assert response.status == 200, await response.text()
                return len((await response.json())["items"]) == 1

        await until(traced)
        status = await asyncio.to_thread(node.smps, "status")
        assert status.returncode == 0, status.stderr
        assert "role active" in status.stdout and "#1 pid" in status.stdout
        assert "antispam:1" in status.stdout
    # The workers wrote the day files themselves, whole lines only.
    files = TraceFileSink(tmp_path / "var").files()
    events = list(read_events(files))
    assert events and {e.destination_addr for e in events} == {TRACED}
    assert {"received", "final"} <= {e.kind for e in events}


async def test_minute_counters_count_every_verdict_whatever_is_recorded(tmp_path):
    """With the default `record: non_allow`, allowed messages leave no decision row, yet
    the per-minute counters (the dashboard's chart, /stats/minutes) count them."""
    async with running(tmp_path, record="non_allow") as (sim, _node, api, _nes):
        numbers = [sim.send_deliver(short_message=b"c%d" % i) for i in range(150)]
        await answered_all(sim, numbers)

        async def counted(account: str) -> dict[str, int]:
            async with api.get("stats/minutes", params={"account": account}) as response:
                assert response.status == 200, await response.text()
                counts: dict[str, int] = {}
                for item in await response.json():
                    counts[item["verdict"]] = counts.get(item["verdict"], 0) + item["count"]
                return counts

        async def all_counted() -> bool:
            return (await counted("")).get("allow") == len(numbers)

        await until(all_counted)
        assert await counted("") == {"allow": 150}
        assert await counted("antispam") == {"allow": 150}
        async with api.get("decisions") as response:
            assert (await response.json())["items"] == []  # nothing but allows: none recorded


async def test_live_trace_stream_gets_events_from_the_workers(tmp_path):
    """Trace events reach the master as rows; a live watcher still gets whole events."""
    async with running(tmp_path) as (sim, _node, api, _nes), api.get("traces/stream") as stream:
        assert stream.status == 200
        await stream.content.readuntil(b": connected\n\n")
        number = sim.send_deliver(destination_addr=TRACED.encode())
        events = []
        async with asyncio.timeout(20):
            while not any(e["kind"] == "final" for e in events):
                line = await stream.content.readline()
                if line.startswith(b"data: "):
                    events.append(json.loads(line[6:]))
        await answered_all(sim, [number])
    assert {e["destination_addr"] for e in events} == {TRACED}
    assert events[0]["kind"] == "received"
    assert {e["account"] for e in events if e["kind"] == "answered"} == {"antispam"}


async def test_account_made_through_the_api_binds_and_is_disabled_live(tmp_path):
    async with running(tmp_path) as (sim, node, api, nes):
        account = {"system_id": "newne", "password": "pw9", "allowed_ips": ["127.0.0.1/32"]}
        async with api.post("accounts", json=account) as response:
            assert response.status == 201, await response.text()
        newne = SimNe(
            "127.0.0.1",
            node.report["smpp_port"],
            system_id="newne",
            password="pw9",
            block_ratio=1.0,
            reconnect_initial=0.05,
            reconnect_max=0.2,
        )
        newne.start()
        nes.append(newne)
        await newne.wait_bound()  # the stored hash is verified by the worker it landed on

        await until(lambda: node.ne_binds("newne") == 1)
        # Originals from both workers' SMSC binds reach the new account (locally
        # or through the mesh) and its block decides.
        numbers = [sim.send_deliver(short_message=b"n%d" % i) for i in range(20)]
        await answered_all(sim, numbers)
        assert {sim.answers[n][0] for n in numbers} == {BLOCK}
        assert newne.received == 20

        wrong = SimNe("127.0.0.1", node.report["smpp_port"], system_id="newne", password="nope")
        wrong.start()
        nes.append(wrong)
        await until(lambda: wrong.client.bind_failures >= 1)

        async with api.patch("accounts/newne", json={"enabled": False}) as response:
            assert response.status == 200, await response.text()

        await until(lambda: node.ne_binds("newne") == 0)
        numbers = [sim.send_deliver(short_message=b"x%d" % i) for i in range(5)]
        await answered_all(sim, numbers)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}  # antispam alone decides


async def test_admin_ui_on_the_runtime_shows_live_numbers(tmp_path):
    """The master serves the admin UI; its live stream sums the workers."""
    async with running(tmp_path) as (sim, node, _api, _nes):
        store = await Store.open(f"sqlite:///{node.database}", migrate=False)
        try:
            await admin_users.add_user(store, "alice", "correct horse", "viewer", actor="test")
        finally:
            await store.close()
        numbers = [sim.send_deliver() for _ in range(30)]
        await answered_all(sim, numbers)
        base = f"http://127.0.0.1:{node.report['http_port']}"
        jar = aiohttp.CookieJar(unsafe=True)  # keep cookies for an IP-address host
        async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as browser:
            async with browser.get("/", allow_redirects=False) as response:
                assert response.status in (302, 303)  # sign in first
            form = {"name": "alice", "password": "correct horse", "next": "/"}
            async with browser.post("/login", data=form) as response:
                assert response.status == 200
                page = await response.text()
            assert "Dashboard" in page and "antispam" in page

            async def live_numbers():
                async with browser.get("/live") as stream:
                    async for line in stream.content:
                        if line.startswith(b"data:"):
                            return json.loads(line[5:])
                return None

            async def all_counted():
                live = await live_numbers()
                received = int(live["received"].replace(",", "")) if live else 0
                return live if received >= 30 else None

            live = None
            async with asyncio.timeout(20):
                while live is None:
                    live = await all_counted()
            assert live["workers"] == 2 and live["role"] == "active"
            assert set(live["latency"]) == {"antispam"}  # from the decisions' rows


async def test_metrics_histograms_and_copies_by_account(tmp_path):
    async with running(tmp_path) as (sim, node, _api, _nes):
        numbers = [sim.send_deliver() for _ in range(50)]
        await answered_all(sim, numbers)
        url = f"http://127.0.0.1:{node.report['http_port']}/metrics"

        async def scraped() -> str | None:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                text = await response.text()
            done = "smps_decision_seconds_count 50.0" in text
            return text if done else None

        text = None
        async with asyncio.timeout(20):  # workers report about once a second
            while text is None:
                text = await scraped()
                await asyncio.sleep(0.2)
        assert 'smps_copies_sent_total{account="antispam"} 50.0' in text
        assert 'smps_ne_answer_seconds_bucket{account="antispam",le="+Inf"} 50.0' in text
        assert 'smps_ne_answer_seconds_count{account="antispam"} 50.0' in text
        assert 'smps_decision_seconds_bucket{le="+Inf"} 50.0' in text
        assert "# TYPE smps_decision_seconds histogram" in text
