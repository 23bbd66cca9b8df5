# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""REST API /api/v1 on SQLite and MariaDB: auth, CRUD with audit, file-managed rows,
validation errors naming the field, decisions with keyset pagination, CSV, stats, OpenAPI."""

import csv
import io
import time
from datetime import datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from smps.runtime import control
from smps.store import bind_accounts, common, file_sync, schema, tokens
from smps.store.writer import DecisionWriter
from smps.web.api import add_api_routes
from smps.web.node import LiveStatus, SmscLive
from tests.store_db import database_url, make_decision, store  # noqa: F401


@pytest.fixture
async def client(store):
    app = web.Application()
    add_api_routes(app, store)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


@pytest.fixture
async def admin(store):
    return {"Authorization": f"Bearer {await tokens.create_token(store, 'ops', 'admin')}"}


ACCOUNT = {"system_id": "antispam", "password": "pw1", "allowed_ips": ["10.0.0.0/8"], "window": 32}


async def test_requests_without_a_valid_token_are_refused(client, store):
    response = await client.get("/api/v1/accounts")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in (await response.json())["error"]
    bad = {"Authorization": "Bearer smps_not-a-token"}
    assert (await client.get("/api/v1/accounts", headers=bad)).status == 401
    expired = await tokens.create_token(store, "old", "admin", expires_us=common.now_us() - 1)
    response = await client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {expired}"})
    assert response.status == 401


async def test_viewers_may_read_but_not_write(client, store):
    viewer = {"Authorization": f"Bearer {await tokens.create_token(store, 'noc', 'viewer')}"}
    assert (await client.get("/api/v1/accounts", headers=viewer)).status == 200
    response = await client.post("/api/v1/accounts", json=ACCOUNT, headers=viewer)
    assert response.status == 403
    assert "viewer" in (await response.json())["error"]


async def bearer(store, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await tokens.create_token(store, role, role)}"}


class KickNode:
    """The node's kick as the API reaches it; ``binds`` is what a kick unbinds."""

    def __init__(self):
        self.binds = {"antispam": 2}
        self.kicked: list[str] = []

    def live_status(self) -> LiveStatus:
        return LiveStatus(
            node="n",
            role="active",
            workers=1,
            uptime_s=1.0,
            smsc=[SmscLive("smsc1", 1, 2)],
            ne_binds=dict(self.binds),
            received=0,
            in_flight=0,
            verdicts={},
        )

    def kick(self, system_id: str) -> int:
        self.kicked.append(system_id)
        return self.binds.pop(system_id, 0)


@pytest.fixture
async def node_client(store):
    node = KickNode()
    app = web.Application()
    add_api_routes(app, store, node=node)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client, node


async def test_roles_may_change_what_the_ui_lets_them(node_client, store):
    """The API and the admin UI share one table (auth.allowed): operators switch
    accounts on and off, write trace rules and kick binds, and nothing else."""
    client, node = node_client
    admin, operator, viewer = [
        await bearer(store, role) for role in ("admin", "operator", "viewer")
    ]
    assert (await client.post("/api/v1/accounts", json=ACCOUNT, headers=admin)).status == 201
    for headers, expected in ((operator, 403), (viewer, 403)):
        response = await client.post(
            "/api/v1/accounts", json={**ACCOUNT, "system_id": "other"}, headers=headers
        )
        assert response.status == expected
        assert "may not do accounts.write" in (await response.json())["error"]
        response = await client.patch(
            "/api/v1/accounts/antispam", json={"enabled": False, "tps": 5}, headers=headers
        )
        assert response.status == 403
        response = await client.put("/api/v1/policy", json={"timeout": "1s"}, headers=headers)
        assert response.status == 403
    response = await client.patch(
        "/api/v1/accounts/antispam", json={"enabled": False}, headers=operator
    )
    assert response.status == 200 and (await response.json())["enabled"] is False
    assert (await client.patch(
        "/api/v1/accounts/antispam", json={"enabled": True}, headers=viewer
    )).status == 403  # fmt: skip
    rule = {"number": "8613800138000"}
    assert (await client.post("/api/v1/trace_rules", json=rule, headers=viewer)).status == 403
    assert (await client.post("/api/v1/trace_rules", json=rule, headers=operator)).status == 201

    live = await (await client.get("/api/v1/sessions", headers=viewer)).json()
    assert live == {
        "ne": [{"system_id": "antispam", "binds": 2}],
        "smsc": [{"name": "smsc1", "binds_up": 1, "binds": 2}],
    }
    assert (await client.post("/api/v1/sessions/antispam/kick", headers=viewer)).status == 403
    assert node.kicked == []
    response = await client.post("/api/v1/sessions/antispam/kick", headers=operator)
    assert response.status == 200
    assert await response.json() == {"system_id": "antispam", "unbound": 2}
    assert node.kicked == ["antispam"]

    audit = (await (await client.get("/api/v1/audit", headers=viewer)).json())["items"]
    assert [(e["actor"], e["action"], e["entity"], e["entity_key"]) for e in audit] == [
        ("token:operator", "kick", "ne_binds", "antispam"),
        ("token:operator", "create", "trace_rules", "8613800138000"),
        ("token:operator", "update", "accounts", "antispam"),
        ("token:admin", "create", "accounts", "antispam"),
    ]
    assert audit[0]["after"] == {"unbound": 2}


async def test_sessions_need_a_node(client, admin):
    assert (await client.get("/api/v1/sessions", headers=admin)).status == 503
    assert (await client.post("/api/v1/sessions/x/kick", headers=admin)).status == 503


async def test_account_crud_never_returns_the_password(client, admin, store):
    response = await client.post("/api/v1/accounts", json=ACCOUNT, headers=admin)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["system_id"] == "antispam" and created["window"] == 32
    assert created["password_set"] is True and "password" not in created
    assert "pw1" not in await response.text()

    listed = await (await client.get("/api/v1/accounts", headers=admin)).json()
    assert [a["system_id"] for a in listed] == ["antispam"]
    assert "password_hash" not in str(listed)

    response = await client.patch("/api/v1/accounts/antispam", json={"tps": 50}, headers=admin)
    assert response.status == 200
    assert (await response.json())["tps"] == 50
    stored = (await bind_accounts.load_accounts(store))[0]
    assert bind_accounts.verify_ne_password(stored, "pw1")  # PATCH without password keeps it

    response = await client.put(
        "/api/v1/accounts/antispam",
        json={"system_id": "antispam", "password": "new-pw", "mode": "monitor"},
        headers=admin,
    )
    assert response.status == 200
    replaced = await response.json()
    assert replaced["mode"] == "monitor" and replaced["tps"] == 0  # PUT replaces
    stored = (await bind_accounts.load_accounts(store))[0]
    assert bind_accounts.verify_ne_password(stored, "new-pw")
    assert not bind_accounts.verify_ne_password(stored, "pw1")

    assert (await client.delete("/api/v1/accounts/antispam", headers=admin)).status == 204
    assert (await client.get("/api/v1/accounts/antispam", headers=admin)).status == 404

    audit = await (await client.get("/api/v1/audit", headers=admin)).json()
    actions = [(e["action"], e["entity_key"], e["actor"]) for e in audit["items"]]
    assert actions == [
        ("delete", "antispam", "token:ops"),
        ("update", "antispam", "token:ops"),
        ("update", "antispam", "token:ops"),
        ("create", "antispam", "token:ops"),
    ]
    text = str(audit)
    assert "pw1" not in text and "new-pw" not in text and "argon2" not in text
    assert audit["items"][3]["after"]["password"] == "***"


async def test_accounts_carry_how_a_long_message_reaches_the_ne(client, admin, store, make_config):
    """concat: "message" unless told; POST, PUT and PATCH set it, GET shows it, the
    node's accounts (as the workers get them) carry it; an account stored before the
    setting existed reads as the default, in the API and on the node."""

    async def node_concat() -> str:
        stored = await bind_accounts.load_accounts(store)
        _, accounts = control.read_config(control.config_message(make_config(), stored, "active"))
        return accounts[0].concat

    created = await client.post("/api/v1/accounts", json=ACCOUNT, headers=admin)
    assert (await created.json())["concat"] == "message"
    assert await node_concat() == "message"
    response = await client.patch(
        "/api/v1/accounts/antispam", json={"concat": "segments"}, headers=admin
    )
    assert response.status == 200 and (await response.json())["concat"] == "segments"
    got = await (await client.get("/api/v1/accounts/antispam", headers=admin)).json()
    assert got["concat"] == "segments" and await node_concat() == "segments"
    response = await client.put(
        "/api/v1/accounts/antispam", json={**ACCOUNT, "concat": "whole"}, headers=admin
    )
    assert response.status == 422 and (await response.json())["field"] == "concat"
    response = await client.put("/api/v1/accounts/antispam", json=ACCOUNT, headers=admin)
    assert (await response.json())["concat"] == "message"  # PUT replaces: the default
    await client.delete("/api/v1/accounts/antispam", headers=admin)
    body = {**ACCOUNT, "concat": "segments"}
    created = await client.post("/api/v1/accounts", json=body, headers=admin)
    assert created.status == 201 and (await created.json())["concat"] == "segments"

    table = schema.ne_accounts
    async with store.engine.begin() as conn:  # as an SMPS before concat stored it
        settings = (await conn.execute(select(table.c.settings))).scalar()
        del settings["concat"]
        await conn.execute(table.update().values(settings=settings))
    listed = await (await client.get("/api/v1/accounts", headers=admin)).json()
    assert listed[0]["concat"] == "message" and await node_concat() == "message"


async def test_duplicates_and_unknown_keys(client, admin):
    assert (await client.post("/api/v1/accounts", json=ACCOUNT, headers=admin)).status == 201
    response = await client.post("/api/v1/accounts", json=ACCOUNT, headers=admin)
    assert response.status == 409
    assert (await client.delete("/api/v1/smsc/nope", headers=admin)).status == 404
    assert (await client.get("/api/v1/nothing-here", headers=admin)).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**ACCOUNT, "system_id": "x" * 16}, "system_id"),
        ({**ACCOUNT, "allowed_ips": ["10.0.0.0/8", "10.0.0.1/8"]}, "allowed_ips[1]"),
        ({**ACCOUNT, "window": 0}, "window"),
        ({**ACCOUNT, "windw": 5}, "windw"),
        ({"system_id": "x"}, "password"),
        ({**ACCOUNT, "mode": "loud"}, "mode"),
    ],
)
async def test_bad_input_is_422_naming_the_field(client, admin, body, field):
    response = await client.post("/api/v1/accounts", json=body, headers=admin)
    assert response.status == 422
    error = await response.json()
    assert error["field"] == field, error
    assert error["error"]


async def test_malformed_json_is_422(client, admin):
    response = await client.post("/api/v1/accounts", data=b"{not json", headers=admin)
    assert response.status == 422
    assert "JSON" in (await response.json())["error"]


async def test_routes_must_name_existing_accounts(client, admin):
    await client.post("/api/v1/accounts", json=ACCOUNT, headers=admin)
    route = {"name": "all", "accounts": ["antispam", "ghost"]}
    response = await client.post("/api/v1/routes", json=route, headers=admin)
    assert response.status == 422
    assert (await response.json())["field"] == "accounts[1]"
    route["accounts"] = ["antispam"]
    assert (await client.post("/api/v1/routes", json=route, headers=admin)).status == 201
    response = await client.delete("/api/v1/accounts/antispam", headers=admin)
    assert response.status == 409
    assert "route 'all'" in (await response.json())["error"]


async def test_smsc_and_trace_rules_read_file_syntax(client, admin):
    smsc = {
        "name": "smsc1",
        "host": "127.0.0.1",
        "port": 2776,
        "system_id": "smps",
        "password": "secret",
        "enquire_link": "15s",
    }
    response = await client.post("/api/v1/smsc", json=smsc, headers=admin)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["enquire_link"] == 15.0 and body["password_set"] is True
    assert "secret" not in await response.text()
    rule = {"number": "8613800138000", "side": "sender"}
    assert (await client.post("/api/v1/trace_rules", json=rule, headers=admin)).status == 201
    got = await (await client.get("/api/v1/trace_rules/8613800138000", headers=admin)).json()
    assert got["side"] == "sender"


async def test_policy_get_and_put(client, admin):
    policy = await (await client.get("/api/v1/policy", headers=admin)).json()
    assert policy["block_status"] == 0x66 and policy["file_managed"] is False
    response = await client.put(
        "/api/v1/policy", json={"timeout": "1500ms", "block_status": "0x65"}, headers=admin
    )
    assert response.status == 200, await response.text()
    policy = await (await client.get("/api/v1/policy", headers=admin)).json()
    assert policy["timeout"] == 1.5 and policy["block_status"] == 0x65
    response = await client.put("/api/v1/policy", json={"block_status": 0}, headers=admin)
    assert response.status == 422
    assert (await response.json())["field"] == "block_status"


async def test_file_managed_entities_are_read_only(client, admin, store, make_config):
    config = make_config(
        ne_accounts=[{"system_id": "fromfile", "password": "pw"}],
        policy={"timeout": "1s"},
    )
    await file_sync.sync_file_config(store, config)
    account = await (await client.get("/api/v1/accounts/fromfile", headers=admin)).json()
    assert account["file_managed"] is True
    for method in ("put", "patch", "delete"):
        response = await getattr(client, method)(
            "/api/v1/accounts/fromfile", json={"tps": 1}, headers=admin
        )
        assert response.status == 409
        assert "configuration file" in (await response.json())["error"]
    response = await client.put("/api/v1/policy", json={"timeout": 3}, headers=admin)
    assert response.status == 409


async def fill_decisions(store, tmp_path, count: int) -> None:
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01, batch_size=100)
    await writer.start()
    base = time.time() - 600
    totals = {("", "allow"): 0, ("", "block"): 0}
    for i in range(count):
        verdict = "allow" if i % 3 == 0 else "block"
        rule = "loan-spam" if i % 10 == 1 else None  # the screening rule that decided
        writer.put(make_decision(i, at=base + i, verdict=verdict, rule_id=rule))
        totals["", verdict] += 1
    writer.add_totals("plane", totals)  # the data plane's running totals
    await writer.close()
    assert writer.written == count


async def test_decisions_keyset_pages_newest_first(client, admin, store, tmp_path):
    await fill_decisions(store, tmp_path, 250)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/api/v1/decisions", params=params, headers=admin)).json()
        seen += [item["sequence"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(range(249, -1, -1))

    blocks = await (
        await client.get(
            "/api/v1/decisions", params={"verdict": "block", "limit": "1000"}, headers=admin
        )
    ).json()
    assert len(blocks["items"]) == sum(1 for i in range(250) if i % 3)
    assert blocks["items"][0]["results"][0]["account"] == "antispam"

    one = await (
        await client.get("/api/v1/decisions", params={"dst": "8613900000007"}, headers=admin)
    ).json()
    assert [item["sequence"] for item in one["items"]] == [7]

    decided = one["items"][0]["decided_us"]
    window = {"since": str(decided / 1e6), "until": str((decided + 10_000_000) / 1e6)}
    ranged = await (await client.get("/api/v1/decisions", params=window, headers=admin)).json()
    assert [item["sequence"] for item in ranged["items"]] == list(range(16, 6, -1))

    detail = await client.get(f"/api/v1/decisions/{one['items'][0]['id']}", headers=admin)
    document = await detail.json()
    assert document == one["items"][0] and document["destination_addr"] == "8613900000007"
    # What clients read: the decision record, its id and lease epoch, its times twice.
    assert set(document) == {
        "id", "arrived_at", "decided_at", "arrived_us", "decided_us", "smsc", "command",
        "sequence", "source_addr", "source_ton", "source_npi", "destination_addr", "dest_ton",
        "dest_npi", "esm_class", "data_coding", "concat_ref", "concat_part", "concat_total",
        "verdict", "reason", "status", "deciding_account", "results", "rule_id", "parts",
        "fingerprint", "epoch",
    }  # fmt: skip
    assert set(document["results"][0]) == {
        "account", "verdict", "status", "latency_ms", "late", "decisive"
    }  # fmt: skip
    decided = datetime.fromisoformat(document["decided_at"].replace("Z", "+00:00"))
    assert round(decided.timestamp() * 1e6) == document["decided_us"]
    assert (await client.get("/api/v1/decisions/999999999", headers=admin)).status == 404


async def test_decisions_filter_by_the_screening_rule(client, admin, store, tmp_path):
    await fill_decisions(store, tmp_path, 30)

    async def search(rule: str) -> list[dict]:
        params = {"rule": rule}
        response = await client.get("/api/v1/decisions", params=params, headers=admin)
        return (await response.json())["items"]

    found = await search("loan-spam")
    assert [(item["sequence"], item["rule_id"]) for item in found] == [
        (21, "loan-spam"), (11, "loan-spam"), (1, "loan-spam")
    ]  # fmt: skip
    assert await search("loan") == []  # the whole id, not a prefix
    others = await (await client.get("/api/v1/decisions", headers=admin)).json()
    assert others["items"][0]["rule_id"] is None  # 29: decided by no rule


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"verdict": "maybe"}, "verdict"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "!!"}, "cursor"),
        ({"srcc": "1"}, "srcc"),
        ({"fingerprint": "5eed"}, "fingerprint"),
        ({"fingerprint": "5EED000000C0FFEE"}, "fingerprint"),
        ({"fingerprint": "5eed000000c0ffeg"}, "fingerprint"),
        ({"fingerprint": "5eed000000c0ffee0"}, "fingerprint"),
    ],
)
async def test_bad_decision_queries_are_422(client, admin, params, field):
    response = await client.get("/api/v1/decisions", params=params, headers=admin)
    assert response.status == 422
    assert (await response.json())["field"] == field


async def test_decisions_csv_streams_every_match(client, admin, store, tmp_path):
    await fill_decisions(store, tmp_path, 2100)
    response = await client.get("/api/v1/decisions.csv", params={"verdict": "block"}, headers=admin)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(await response.text()))
    rows = list(reader)
    assert reader.fieldnames == [
        "id", "arrived_at", "decided_at", "smsc", "command", "sequence", "source_addr",
        "source_ton", "source_npi", "destination_addr", "dest_ton", "dest_npi", "esm_class",
        "data_coding", "concat_ref", "concat_part", "concat_total", "verdict", "reason",
        "status", "deciding_account", "results", "rule_id", "parts", "fingerprint", "epoch",
    ]  # fmt: skip
    assert len(rows) == sum(1 for i in range(2100) if i % 3)
    assert rows[0]["verdict"] == "block" and int(rows[0]["sequence"]) == 2099
    assert "antispam" in rows[0]["results"]


async def test_a_whole_message_shows_its_parts_in_the_api_and_the_csv(
    client, admin, store, tmp_path
):
    """One decision for a long message judged whole: the parts' SMSC sequence numbers
    in part order (0: never came) as a JSON array in the API and in the CSV; null and
    empty for the rest."""
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    writer.put(make_decision(1, concat_ref=300, concat_total=3, parts=[41, 0, 43]))
    writer.put(make_decision(2, concat_ref=9, concat_part=1, concat_total=2))
    await writer.close()
    page = await (await client.get("/api/v1/decisions", headers=admin)).json()
    alone, whole = page["items"]
    assert (whole["concat_ref"], whole["concat_part"], whole["concat_total"]) == (300, None, 3)
    assert whole["parts"] == [41, 0, 43] and alone["parts"] is None
    detail = await client.get(f"/api/v1/decisions/{whole['id']}", headers=admin)
    assert (await detail.json())["parts"] == [41, 0, 43]
    response = await client.get("/api/v1/decisions.csv", headers=admin)
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(row["sequence"], row["parts"]) for row in rows] == [("2", ""), ("1", "[41,0,43]")]


async def test_decisions_filter_by_the_text_fingerprint(client, admin, store, tmp_path):
    """Each message's content fingerprint is stored with its decision (null for one
    without text) and found again by it: that whole value, in the API and the CSV;
    anything but 16 lowercase hex digits is refused, naming the filter."""
    wave, other = "5eed000000c0ffee", "00000000deadbeef"
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    for i, fingerprint in enumerate([wave, other, wave, None, wave, None]):
        writer.put(make_decision(i, fingerprint=fingerprint))
    await writer.close()

    async def search(**params: str) -> list[dict]:
        response = await client.get("/api/v1/decisions", params=params, headers=admin)
        assert response.status == 200, await response.text()
        return (await response.json())["items"]

    def seen(items: list[dict]) -> list[tuple[int, str | None]]:
        return [(item["sequence"], item["fingerprint"]) for item in items]

    every = await search()
    assert seen(every) == [(5, None), (4, wave), (3, None), (2, wave), (1, other), (0, wave)]
    assert seen(await search(fingerprint=wave)) == [(4, wave), (2, wave), (0, wave)]
    assert seen(await search(fingerprint=other, verdict="block")) == [(1, other)]
    assert await search(fingerprint="5eed000000c0ffef") == []  # exactly, not alike
    detail = await client.get(f"/api/v1/decisions/{every[4]['id']}", headers=admin)
    assert (await detail.json())["fingerprint"] == other

    response = await client.get(
        "/api/v1/decisions.csv", params={"fingerprint": wave}, headers=admin
    )
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(row["sequence"], row["fingerprint"]) for row in rows] == [
        ("4", wave), ("2", wave), ("0", wave)
    ]  # fmt: skip
    every = await client.get("/api/v1/decisions.csv", headers=admin)
    rows = list(csv.DictReader(io.StringIO(await every.text())))
    assert [row["fingerprint"] for row in rows] == ["", wave, "", wave, other, wave]

    for path in ("/api/v1/decisions", "/api/v1/decisions.csv"):
        response = await client.get(path, params={"fingerprint": wave.upper()}, headers=admin)
        assert response.status == 422
        assert await response.json() == {
            "error": "expected a fingerprint: 16 lowercase hex digits (0-9, a-f)",
            "field": "fingerprint",
        }


async def test_minute_stats(client, admin, store, tmp_path):
    await fill_decisions(store, tmp_path, 120)
    stats = await (
        await client.get("/api/v1/stats/minutes", params={"account": ""}, headers=admin)
    ).json()
    assert sum(s["count"] for s in stats) == 120
    assert {s["verdict"] for s in stats} == {"allow", "block"}


async def test_openapi_document_is_public_and_lists_the_paths(client):
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"].startswith("3.")
    for path in (
        "/api/v1/accounts/{key}",
        "/api/v1/decisions",
        "/api/v1/decisions.csv",
        "/api/v1/policy",
        "/api/v1/stats/minutes",
    ):
        assert path in document["paths"]
    assert "NeAccount" in document["components"]["schemas"]
