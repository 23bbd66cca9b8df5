# ruff: noqa: F811  (pytest fixtures imported from tests.store_db and tests.test_screening_api)
"""The admin UI's Campaigns page on SQLite and MariaDB, over a real campaign table: a
wave of one text from 10 senders ranks first with its counts, sparkline and link to
its decisions; Block, Monitor and Undo make and delete the campaign's rule, audited
under the user and applied live; clear errors (the rule exists, screening is off, no
rule to undo); who may press what; the live stream; a node that does not count."""

import re
import time

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from smps._native.fingerprint import fingerprint
from smps.proxy.campaigns import MASKED, CampaignReader, private_campaign_table
from smps.store import admin_users
from smps.web.ui import add_ui_routes
from tests.store_db import database_url, store  # noqa: F401
from tests.test_screening_api import FILE_RULES, live  # noqa: F401
from tests.test_ui import PASSWORD, ROLES, FakeNode, audit_actions, csrf_of, sign_in

WAVE, SENDERS = 200, 10
ALLOW = 0


def wave_text(n: int) -> str:
    return f"Your bank code {100000 + n * 7919 % 900000} expires today, see bad.example/a{n}"


def fp(text: str) -> str:
    return f"{fingerprint(text.casefold()):016x}"


WAVE_FP = fp(wave_text(0))


@pytest.fixture
def reader(live):
    """A campaign table with the wave and 20 texts of their own, as a node counts them."""
    table = private_campaign_table()
    now = int(time.time())
    for n in range(WAVE):
        text = wave_text(n)
        sender, recipient = b"86138%08d" % (n % SENDERS), b"86139%08d" % n
        table.observe(fingerprint(text.casefold()), sender, recipient, now, ALLOW, -1, text, True)
        if n % 10 == 0:
            word = "".join("abcdefghij"[int(d)] for d in str(n))  # digits would fold
            other = f"Dinner at the {word} place?"
            table.observe(fingerprint(other.casefold()), b"8613700000001", recipient, now,
                          ALLOW, -1, other, True)  # fmt: skip
    return CampaignReader([table.buffer], lambda: live.config)


@pytest.fixture
async def serve(store):
    servers, clients = [], []

    async def make(campaigns):
        app = web.Application()
        add_ui_routes(app, store, FakeNode(), campaigns=campaigns)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        if len(servers) == 1:
            for role in ROLES:
                await admin_users.add_user(store, role, PASSWORD, role, actor="test")

        async def as_role(role):
            clients.append(await sign_in(server, role))
            return clients[-1]

        return as_role

    yield make
    for client in clients:
        await client.close()
    for server in servers:
        await server.close()


@pytest.fixture
async def as_role(serve, reader):
    return await serve(reader)


async def post(client, path, form=None):
    csrf = await csrf_of(client, "/campaigns")
    return await client.post(path, data={"window": "5m", **(form or {}), "csrf": csrf})


def row_of(page: str, fingerprint: str) -> str:
    return re.search(rf'<tr data-fingerprint="{fingerprint}">.*?</tr>', page, re.S).group(0)


async def test_the_wave_ranks_first_with_its_counts_sparkline_and_decisions(as_role):
    viewer = await as_role("viewer")
    page = await (await viewer.get("/campaigns?window=5m")).text()
    assert 'href="/campaigns"' in page  # in the navigation
    assert re.search(r'<a href="/campaigns\?window=5m" aria-current="page">5 minutes</a>', page)
    fingerprints = re.findall(r'<tr data-fingerprint="([0-9a-f]{16})">', page)
    assert fingerprints[0] == WAVE_FP and len(fingerprints) == 21
    wave = row_of(page, WAVE_FP)
    cells = re.findall(r'<t[dh][^>]*data-sort="([^"]*)"', wave)
    assert cells[:3] == [WAVE_FP, str(WAVE), str(SENDERS)] and cells[4] == "0.0"
    assert abs(int(cells[3]) - WAVE) <= WAVE * 0.05  # recipients: an estimate past 16
    assert cells[5] == "allow" and cells[6] == MASKED  # trace.decode_content is off
    assert f'href="/decisions?fingerprint={WAVE_FP}"' in wave
    assert f">{WAVE_FP[:8]}</a>" in wave
    assert re.search(r'<svg class="spark" [^>]*aria-label="Messages per 10 s: now 200, peak 200"',
                     wave)  # fmt: skip
    points = re.search(r'<polyline class="spark-line" points="([^"]+)"', wave).group(1).split()
    assert len(points) == 30 and points[-1] == "96.0,2.0"  # the peak, at the top right
    assert ">Block<" not in page and "no rule" in wave  # a viewer presses nothing

    hour = await (await viewer.get("/campaigns")).text()  # the API's default window
    assert '<a href="/campaigns?window=1h" aria-current="page">' in hour
    assert "Messages per minute" in hour
    assert (await viewer.get("/campaigns?window=7d")).status == 200  # the default instead


async def test_block_monitor_and_undo_are_audited_and_live(as_role, store, live):
    admin = await as_role("admin")
    wave = row_of(await (await admin.get("/campaigns?window=5m")).text(), WAVE_FP)
    assert ">Block<" in wave and ">Monitor<" in wave and "Undo" not in wave

    response = await post(admin, f"/campaigns/{WAVE_FP}/block")
    assert str(response.url).endswith("/campaigns?window=5m")
    page = await response.text()
    assert f"Screening rule campaign-{WAVE_FP} made: every worker blocks the campaign" in page
    wave = row_of(page, WAVE_FP)
    assert '<span class="badge v-block">block</span>' in wave
    assert f'href="/screening/campaign-{WAVE_FP}"' in wave and ">Undo<" in wave
    assert ">Block<" not in wave
    rule = live.config.screening.rules[-1]  # live: the node's rules changed at once
    assert (rule.id, rule.type, rule.entries, rule.action) == (
        f"campaign-{WAVE_FP}", "fingerprint", [WAVE_FP], "block"
    )  # fmt: skip

    page = await (await post(admin, f"/campaigns/{WAVE_FP}/monitor")).text()
    assert f"No rule made: the campaign {WAVE_FP} has its rule already" in page
    assert 'class="flash flash-error" role="alert"' in page

    page = await (await post(admin, f"/campaigns/{WAVE_FP}/undo")).text()
    assert f"Screening rule campaign-{WAVE_FP} deleted" in page
    assert ">Block<" in row_of(page, WAVE_FP)
    assert [r.id for r in live.config.screening.rules] == [r["id"] for r in FILE_RULES]
    page = await (await post(admin, f"/campaigns/{WAVE_FP}/undo")).text()
    assert f"Nothing undone: the campaign {WAVE_FP} has no rule of its own" in page

    page = await (await post(admin, f"/campaigns/{WAVE_FP}/monitor")).text()
    assert "every worker counts (monitor) the campaign" in page
    assert '<span class="badge">monitor</span>' in row_of(page, WAVE_FP)
    assert live.config.screening.rules[-1].action == "monitor"
    page = await (await post(admin, "/campaigns/C0FFEE/block")).text()
    assert "No rule made: expected a fingerprint: 16 lowercase hex digits" in page

    rule = f"campaign-{WAVE_FP}"
    assert await audit_actions(store) == [
        ("user:admin", "create", rule),
        ("user:admin", "delete", rule),
        ("user:admin", "create", rule),
        *[("config-file", "create", r["id"]) for r in FILE_RULES[::-1]],
    ]


async def test_a_campaign_listed_by_another_rule_says_so(as_role, store):
    admin = await as_role("admin")
    others = {"id": "known-waves", "type": "fingerprint", "entries": WAVE_FP, "enabled": "on"}
    csrf = await csrf_of(admin, "/screening")  # made on the Screening page, by hand
    page = await (await admin.post("/screening", data={**others, "csrf": csrf})).text()
    assert "Screening rule known-waves created" in page
    wave = row_of(await (await admin.get("/campaigns")).text(), WAVE_FP)
    assert 'listed by</span> <a href="/screening/known-waves">known-waves</a>' in wave
    assert ">Block<" not in wave and ">Undo<" not in wave


async def test_with_screening_off_no_rule_is_made(as_role, reader, live, store):
    off = msgspec.structs.replace(live.config.screening, enabled=False)
    reader.config = lambda: msgspec.structs.replace(live.config, screening=off)
    admin = await as_role("admin")
    page = await (await admin.get("/campaigns")).text()
    assert "Screening is off on this node" in page
    page = await (await post(admin, f"/campaigns/{WAVE_FP}/block")).text()
    assert "No rule made: the screening engine is off" in page
    assert await audit_actions(store) == [
        ("config-file", "create", r["id"]) for r in FILE_RULES[::-1]
    ]


@pytest.mark.parametrize("role", ROLES)
async def test_only_who_may_write_screening_rules_blocks_monitors_and_undoes(as_role, store, role):
    client = await as_role(role)
    page = await (await client.get("/campaigns")).text()
    assert (">Block<" in page) == (role == "admin")
    before = await audit_actions(store)
    for change in ("block", "undo", "monitor"):
        response = await post(client, f"/campaigns/{WAVE_FP}/{change}")
        if role == "admin":
            assert response.status == 200 and "flash-ok" in await response.text()
        else:
            assert response.status == 403 and "may not do this" in await response.text()
    assert len(await audit_actions(store)) == len(before) + (3 if role == "admin" else 0)


async def test_a_change_without_the_sessions_csrf_token_is_refused(as_role, store):
    admin = await as_role("admin")
    other = await as_role("operator")
    for csrf in ("", "forged", await csrf_of(other, "/campaigns")):
        response = await admin.post(f"/campaigns/{WAVE_FP}/block", data={"csrf": csrf})
        assert response.status == 403
        assert "did not come from your current session" in await response.text()
    assert await audit_actions(store) == [
        ("config-file", "create", r["id"]) for r in FILE_RULES[::-1]
    ]


async def test_the_live_stream_sends_the_rows_when_they_change(as_role, live):
    admin = await as_role("admin")
    response = await admin.get("/campaigns/live?window=5m")
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await response.content.readuntil(b"\n\n") == b"retry: 5000\n: connected\n\n"

    async def next_rows() -> str:
        while not (line := await response.content.readline()).startswith(b"data: "):
            pass  # idle comments while nothing changed
        return msgspec.json.decode(line[6:])["html"]

    rows = await next_rows()
    assert rows.index(WAVE_FP) < rows.index("<tr", 10) and ">Block<" in rows
    assert re.search(r'name="csrf" value="[^"]+"', rows)  # the session's own
    await post(admin, f"/campaigns/{WAVE_FP}/block")
    assert ">Undo<" in row_of(await next_rows(), WAVE_FP)
    response.close()


async def test_a_node_that_does_not_count_says_so(serve, store):
    admin = await (await serve(None))("admin")
    for path in ("/campaigns", "/campaigns/live"):
        response = await admin.get(path)
        assert response.status == 503
        assert "Campaigns are not counted on this node" in await response.text()
    response = await admin.post(f"/campaigns/{WAVE_FP}/block",
                                data={"csrf": await csrf_of(admin, "/screening")})  # fmt: skip
    assert response.status == 503
