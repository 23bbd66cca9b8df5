# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""Screening rules through /api/v1 on SQLite and MariaDB: CRUD in the engine's order,
audit, roles, the file's rules read-only, every refusal naming its field with the
file's own checks; POST /screening/test on the live rules; and on a running
single-process node, messages tried any number of times use up no sender's allowance."""

import asyncio

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from smps.config import Config
from smps.proxy.screening import private_velocity_table
from smps.proxy.screening_trial import ScreeningTrial
from smps.store import audit_log, file_sync, live_config, tokens
from smps.web.api import add_api_routes
from tests.helpers import until
from tests.store_db import database_url, store  # noqa: F401
from tests.test_proxy import proxy

FILE_RULES = [
    {"id": "deny-senders", "type": "list", "field": "source", "entries": ["FAKEBANK"]},
    {"id": "vip", "type": "list", "field": "destination", "entries": ["prefix:8613999"],
     "action": "allow"},
]  # fmt: skip
LOTTERY = {"id": "watch-lottery", "type": "keyword", "patterns": ["lottery"], "action": "monitor"}
LOAN = {"id": "loan-regex", "type": "regex", "patterns": [r"loan\s+at\s+\d+%"]}


class LiveRules:
    """What the node does on a change, in one process: load the live configuration
    again (the file's, plus the database's) for the trial to read."""

    def __init__(self, store, config: Config):
        self.store = store
        self.file = config
        self.config = config

    async def reload(self, _entity: str = "", _key: str = "") -> None:
        self.config, _accounts = await live_config.load(self.store, self.file)


@pytest.fixture
async def live(store, make_config):
    config = make_config(
        trace={"country_code": "86"}, screening={"enabled": True, "rules": FILE_RULES}
    )
    await file_sync.sync_file_config(store, config)
    rules = LiveRules(store, config)
    await rules.reload()
    store.listeners.append(rules.reload)
    return rules


@pytest.fixture
async def client(store, live):
    app = web.Application()
    trial = ScreeningTrial(lambda: live.config, private_velocity_table(4096))
    add_api_routes(app, store, screening_trial=trial)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


async def bearer(store, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await tokens.create_token(store, role, role)}"}


async def listed(client, headers) -> list[str]:
    response = await client.get("/api/v1/screening/rules", headers=headers)
    assert response.status == 200
    return [rule["id"] for rule in await response.json()]


async def test_crud_in_the_engines_order_audited_and_applied_live(client, store, live, make_config):
    admin, operator, viewer = [await bearer(store, r) for r in ("admin", "operator", "viewer")]
    for rule in (LOTTERY, LOAN):
        response = await client.post("/api/v1/screening/rules", json=rule, headers=admin)
        assert response.status == 201, await response.text()
    created = await response.json()
    assert created["id"] == "loan-regex" and created["action"] == "block"
    assert created["file_managed"] is False
    # The file's rules first, as in the file, then the API's as they were made.
    order = ["deny-senders", "vip", "watch-lottery", "loan-regex"]
    assert await listed(client, viewer) == order
    assert [rule.id for rule in live.config.screening.rules] == order

    # Operators switch a rule on and off, and nothing else; viewers do neither.
    off = {"enabled": False}
    assert (await client.patch("/api/v1/screening/rules/loan-regex", json=off,
                               headers=viewer)).status == 403  # fmt: skip
    response = await client.patch("/api/v1/screening/rules/loan-regex", json=off, headers=operator)
    assert response.status == 200 and (await response.json())["enabled"] is False
    response = await client.patch(
        "/api/v1/screening/rules/loan-regex", json={"action": "monitor"}, headers=operator
    )
    assert response.status == 403
    assert "screening.write" in (await response.json())["error"]
    assert live.config.screening.rules[3].enabled is False  # applied at once
    response = await client.put(
        "/api/v1/screening/rules/watch-lottery", json={**LOTTERY, "action": "block"}, headers=admin
    )
    assert response.status == 200 and (await response.json())["action"] == "block"
    response = await client.get("/api/v1/screening/rules/watch-lottery", headers=viewer)
    assert (await response.json())["patterns"] == ["lottery"]
    assert (await client.delete("/api/v1/screening/rules/loan-regex", headers=admin)).status == 204
    assert (await client.get("/api/v1/screening/rules/loan-regex", headers=admin)).status == 404
    assert (await client.post("/api/v1/screening/rules", json=LOTTERY,
                              headers=admin)).status == 409  # fmt: skip

    audit = [
        (e["actor"], e["action"], e["entity_key"], (e["after"] or {}).get("enabled"))
        for e in await audit_log.audit_entries(store, limit=100)
        if e["entity"] == "screening_rules"
    ]
    assert audit[:5] == [
        ("token:admin", "delete", "loan-regex", None),
        ("token:admin", "update", "watch-lottery", True),
        ("token:operator", "update", "loan-regex", False),
        ("token:admin", "create", "loan-regex", True),
        ("token:admin", "create", "watch-lottery", True),
    ]
    assert {(a, act) for a, act, _k, _e in audit[5:]} == {("config-file", "create")}

    # A new file order is the new order; a rule made here stays after the file's.
    reordered = make_config(screening={"enabled": True, "rules": FILE_RULES[::-1]})
    await file_sync.sync_file_config(store, reordered)
    assert await listed(client, viewer) == ["vip", "deny-senders", "watch-lottery"]


async def test_the_files_rules_are_read_only(client, store):
    admin = await bearer(store, "admin")
    for method in ("put", "patch", "delete"):
        response = await getattr(client, method)(
            "/api/v1/screening/rules/vip", json={"enabled": False}, headers=admin
        )
        assert response.status == 409
        assert "configuration file" in (await response.json())["error"]
    rule = await (await client.get("/api/v1/screening/rules/vip", headers=admin)).json()
    assert rule["file_managed"] is True and rule["enabled"] is True


KEYWORD = {"id": "r", "type": "keyword", "patterns": ["x"]}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"id": "r", "type": "keyword"}, "patterns", "needs at least one pattern"),
        ({**KEYWORD, "limit": 5}, "limit", "does not apply to a keyword rule"),
        ({**KEYWORD, "type": "regex", "patterns": ["ok", "(open"]}, "patterns[1]", "'(open'"),
        ({"id": "r", "type": "list", "field": "source", "entries": ["1", "prefix:ab"]},
         "entries[1]", "a prefix is digits"),
        ({"id": "r", "type": "velocity", "key": "source", "limit": 5}, "window",
         "needs key, limit and window"),
        ({"id": "r", "type": "velocity", "key": "source", "limit": 5, "window": "soon"},
         "window", "duration"),
        ({**KEYWORD, "id": "bad id!"}, "id", ""),
        ({**KEYWORD, "skip_ne": True}, "skip_ne", "allow rules only"),
        ({**KEYWORD, "scope": {"source": ["prefix:x"]}}, "scope.source[0]", "prefix"),
        ({"id": "r", "type": "spam"}, "type", ""),
        ({**KEYWORD, "colour": "red"}, "colour", "unknown field"),
        ({"id": "r", "type": "list", "field": "source", "file": "config/smps.yaml"}, "file",
         "configuration file only"),
    ],
)  # fmt: skip
async def test_a_bad_rule_is_refused_naming_its_field(client, store, body, field, words):
    admin = await bearer(store, "admin")
    response = await client.post("/api/v1/screening/rules", json=body, headers=admin)
    assert response.status == 422, await response.text()
    error = await response.json()
    assert error["field"] == field, error
    assert words in error["error"], error


async def test_a_patch_is_checked_as_the_whole_rule(client, store):
    admin = await bearer(store, "admin")
    assert (await client.post("/api/v1/screening/rules", json=KEYWORD, headers=admin)).status == 201
    response = await client.patch(
        "/api/v1/screening/rules/r", json={"type": "velocity"}, headers=admin
    )
    assert response.status == 422
    assert (await response.json())["field"] == "patterns"  # not a velocity rule's key


async def tried(client, headers, **message) -> dict:
    response = await client.post("/api/v1/screening/test", json=message, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_trying_a_message_shows_every_rule_that_fires_and_the_verdict(client, store):
    admin, viewer = await bearer(store, "admin"), await bearer(store, "viewer")
    for rule in (LOTTERY, LOAN):
        response = await client.post("/api/v1/screening/rules", json=rule, headers=admin)
        assert response.status == 201

    result = await tried(client, viewer, source="FakeBank", destination="8613911112222", text="hi")
    assert result == {
        "verdict": "block",
        "rule": "deny-senders",
        "status": 0x66,
        "ne_copies": False,
        "fired": [{"id": "deny-senders", "type": "list", "action": "block"}],
        "enabled": True,
        "data_coding": 0,
    }
    # A monitor rule fires and the regex after it decides; UCS-2 for the emoji.
    result = await tried(client, viewer, source="+8613811112222", destination="013911112222",
                         text="lottery! loan at 5% 😀")  # fmt: skip
    assert [(r["id"], r["action"]) for r in result["fired"]] == [
        ("watch-lottery", "monitor"),
        ("loan-regex", "block"),
    ]
    assert result["verdict"] == "block" and result["data_coding"] == 8
    # An allow rule ends the walk: the NEs still judge.
    result = await tried(client, viewer, source="8613811112222", destination="8613999000001",
                         text="LOTTERY")  # fmt: skip
    assert (result["verdict"], result["rule"], result["status"]) == ("allow", "vip", None)
    assert result["ne_copies"] is True
    assert [r["id"] for r in result["fired"]] == ["vip"]
    result = await tried(client, viewer, source="8613811112222", destination="1", text="lottery")
    assert (result["verdict"], result["rule"], result["ne_copies"]) == ("none", None, True)
    assert [r["id"] for r in result["fired"]] == ["watch-lottery"]
    # A change applies to the next message tried.
    response = await client.patch(
        "/api/v1/screening/rules/watch-lottery", json={"enabled": False}, headers=admin
    )
    assert response.status == 200
    result = await tried(client, viewer, source="8613811112222", destination="1", text="lottery")
    assert result["fired"] == []


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"destination": "1", "text": "x"}, "source"),
        ({"source": "1", "destination": "1", "pid": 300}, "pid"),
        ({"source": "1", "destination": "1", "dcs": -1}, "dcs"),
        ({"source": "1", "destination": "1", "smsc": "nowhere"}, "smsc"),
        ({"source": "1", "destination": "1", "text": "€", "dcs": 3}, "text"),
        ({"source": "x" * 21, "destination": "1"}, "source"),
        ({"source": "1", "destination": "1", "udh": "0500"}, "udh"),
    ],
)
async def test_a_message_that_cannot_be_sent_is_refused_naming_its_field(
    client, store, message, field
):
    response = await client.post(
        "/api/v1/screening/test", json=message, headers=await bearer(store, "viewer")
    )
    assert response.status == 422, await response.text()
    assert (await response.json())["field"] == field


async def test_trying_needs_a_node_that_screens(store):
    app = web.Application()
    add_api_routes(app, store)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        message = {"source": "1", "destination": "2"}
        response = await client.post(
            "/api/v1/screening/test", json=message, headers=await bearer(store, "viewer")
        )
        assert response.status == 503


# ------------------------------------------------------------- a running node


FLOOD_LIMIT = 3
FLOOD = {"id": "flood-sender", "type": "velocity", "key": "source", "limit": FLOOD_LIMIT,
         "window": "60s"}  # fmt: skip


async def test_tried_messages_use_up_no_allowance_and_see_the_real_counts(make_config):
    screening = {"enabled": True, "rules": [FLOOD]}
    async with proxy(make_config, accounts=[], screening=screening) as (sim, node, _add_ne):
        token = await tokens.create_token(node.store, "noc", "viewer")
        url = f"http://127.0.0.1:{node.http_port}/api/v1/screening/test"
        message = {"source": "8613800138000", "destination": "10086", "text": "hello"}
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

            async def try_it() -> dict:
                async with session.post(url, json=message) as response:
                    assert response.status == 200, await response.text()
                    return msgspec.json.decode(await response.read())

            for _ in range(FLOOD_LIMIT + 5):
                assert (await try_it())["fired"] == []
            numbers = [sim.send_deliver() for _ in range(FLOOD_LIMIT + 1)]  # the same sender
            await until(lambda: all(n in sim.answers for n in numbers))
            statuses = [sim.answers[n][0] for n in numbers]
            assert statuses == [0] * FLOOD_LIMIT + [0x66]  # tried ones took no allowance
            result = await try_it()  # the sender's allowance is now used up
            assert (result["verdict"], result["rule"]) == ("block", "flood-sender")


# ------------------------------------------------------------------------ the CLI


def smps(*argv: str) -> int:
    from smps.cli import main

    return main(list(argv))


async def test_smps_screen_test_prints_the_rules_that_fire_and_the_verdict(
    client, store, capsys, monkeypatch, make_config, tmp_path
):
    token = await tokens.create_token(store, "noc", "viewer")
    url = str(client.make_url("")).rstrip("/")
    api = ("--url", url, "--token", token)
    assert await asyncio.to_thread(smps, "screen", "test", "--from", "8613811112222",
                                   "--to", "8613999000001", "--text", "hi", *api) == 0  # fmt: skip
    assert capsys.readouterr().out.splitlines() == [
        "fired   vip (list, allow)",
        "verdict allow by vip: the rules after it are skipped, the NEs' verdict decides",
    ]
    monkeypatch.setenv("SMPS_TOKEN", token)
    monkeypatch.setenv("SMPS_URL", url)
    with pytest.raises(SystemExit):  # argparse's own refusal: exit status 2
        smps("screen", "test", "--from", "1", "--to", "2", "--pid", "0x40", "--dcs", "300")
    assert "argument --dcs: expected 0 to 255, got 300" in capsys.readouterr().err
    assert await asyncio.to_thread(smps, "screen", "test", "--from", "1", "--to", "2",
                                   "--smsc", "nowhere") == 1  # fmt: skip
    assert "no SMSC 'nowhere' on this node (field smsc) (422)" in capsys.readouterr().err

    # Without --url, the node that -c FILE configures: none runs there.
    monkeypatch.delenv("SMPS_URL")
    path = tmp_path / "smps.yaml"
    path.write_text(f"node: {{state_dir: {tmp_path / 'var'}}}\n")
    assert await asyncio.to_thread(smps, "screen", "test", "--from", "1", "--to", "2",
                                   "-c", str(path)) == 1  # fmt: skip
    assert "no running node" in capsys.readouterr().err
    monkeypatch.delenv("SMPS_TOKEN")
    assert await asyncio.to_thread(smps, "screen", "test", "--from", "1", "--to", "2",
                                   "-c", str(path)) == 2  # fmt: skip
    assert "SMPS_TOKEN" in capsys.readouterr().err
