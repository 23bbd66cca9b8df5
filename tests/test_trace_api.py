# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""Traces over the REST API on SQLite and MariaDB: traced messages and their events
written by the real tracer through the real writer, the live SSE stream, the hub's
bounded queues, trace rules reaching a running tracer, and `smps trace` against it."""

import argparse
import asyncio
import socket

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from smps import trace_cli
from smps._native import pdu as P
from smps.proxy.records import TraceEvent
from smps.proxy.trace_hub import TraceHub
from smps.proxy.trace_store import MemoryTraceSink
from smps.proxy.tracer import Tracer
from smps.runtime.plane import TraceTee
from smps.store import entities, file_sync, tokens, tracer_rules
from smps.store.writer import DecisionWriter
from smps.web.api import add_api_routes
from tests.helpers import until
from tests.store_db import database_url, store  # noqa: F401

ALICE = "8613800138000"  # traced subscriber, as normalised under country code 86
BOB = "8613900139000"
SECRET = "Secret code 4711"


class Clock:
    """The tracer's µs clock, moved by the test: event times are exact."""

    def __init__(self, now: int = 1_750_000_000_000_000):
        self.now = now

    def __call__(self) -> int:
        self.now += 1
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * 1000)


def deliver(source: bytes, destination: bytes, text: bytes = SECRET.encode(), sequence: int = 7):
    fields = {
        "source_addr": source,
        "source_addr_ton": 0,
        "source_addr_npi": 1,
        "destination_addr": destination,
        "dest_addr_ton": 0,
        "dest_addr_npi": 1,
        "esm_class": 0,
        "data_coding": 0,
        "short_message": text,
    }
    return P.encode(P.CommandId.DELIVER_SM, sequence, fields)


def run_message(tracer, clock, source: bytes, destination: bytes, *, late: bool = False):
    """One original the way the dispatcher traces it: two NE copies, block, final; an
    optional late allow after the trace closed. Returns the message id (None if untraced)."""
    original = deliver(source, destination)
    view = P.decode_sm(original)
    trace = tracer.match(view, "smsc1")
    if trace is None:
        return None
    trace.received(original, view, "smsc1")
    copies = {}
    for worker, (account, sequence) in enumerate((("antispam", 100), ("fraud", 200))):
        copies[account] = P.encode(P.CommandId.DELIVER_SM, sequence, P.decode(original).fields)
        trace.copy_sent(account, f"{account}#1", worker, sequence, copies[account])
    clock.advance_ms(12)
    trace.answered("antispam", 0x66, "block", 12.0, False, P.make_resp(copies["antispam"], 0x66))
    trace.final(0x66, "block", "block", P.make_resp(original, 0x66))
    if not late:
        trace.answered("fraud", 0, "none", 2000.0, False, None, reason="timeout")
    trace.close()
    if late:
        clock.advance_ms(30)
        trace.answered("fraud", 0, "allow", 42.0, True, P.make_resp(copies["fraud"]))
    clock.advance_ms(100)
    return trace.message_id


@pytest.fixture
def config(make_config):
    return make_config(trace={"country_code": "86", "decode_content": False})


@pytest.fixture
async def writer(store, tmp_path):
    started = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01, batch_size=50)
    await started.start()
    yield started
    await started.close()


@pytest.fixture
def hub():
    return TraceHub()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def tracer(config, writer, hub, clock):
    # As a data plane has it: day files (here in memory), the writer, live watchers.
    return Tracer.from_config(config, TraceTee(MemoryTraceSink(), writer, live=hub), clock=clock)


@pytest.fixture
async def client(store, hub):
    app = web.Application()
    add_api_routes(app, store, trace_hub=hub, country_code="86", heartbeat=0.05)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


@pytest.fixture
async def token(store):
    return await tokens.create_token(store, "ops", "operator")


@pytest.fixture
def auth(token):
    return {"Authorization": f"Bearer {token}"}


def set_rules(tracer, config, *numbers, decode_content=False):
    tracer.set_rules(
        [entities.validate(entities.KINDS["trace_rules"], {"number": n}) for n in numbers],
        decode_content,
        config.trace.country_code,
    )


async def written(writer, count: int) -> None:
    await until(lambda: writer.written >= count and writer.pending == 0)


async def get_json(client, path, auth, **params):
    response = await client.get(path, params=params, headers=auth)
    assert response.status == 200, await response.text()
    return await response.json()


# --------------------------------------------------------------------- list and get


async def test_traced_messages_listed_newest_first_with_their_summary(
    client, auth, tracer, config, clock, writer
):
    set_rules(tracer, config, "+8613800138000", "8613900*")
    first = run_message(tracer, clock, b"13800138000", b"10086")  # national form of ALICE
    second = run_message(tracer, clock, b"8613900139000", b"10010", late=True)
    third = run_message(tracer, clock, b"10086", b"008613800138000")  # ALICE receives
    assert run_message(tracer, clock, b"8613700000000", b"10086") is None
    await written(writer, 18)

    page = await get_json(client, "/api/v1/traces", auth)
    assert [item["message_id"] for item in page["items"]] == [third, second, first]
    assert page["next_cursor"] is None
    newest, late, oldest = page["items"]
    assert (oldest["source_addr"], oldest["source_addr_raw"]) == (ALICE, "13800138000")
    assert (oldest["events"], oldest["verdict"], oldest["status"], oldest["reason"]) == (
        6, "block", 0x66, "block"
    )  # fmt: skip
    assert oldest["rules"] == ["+8613800138000"] and oldest["smsc"] == "smsc1"
    assert oldest["command"] == "deliver_sm" and oldest["content"] is False
    # The late answer came after the trace closed and still belongs to the message.
    assert late["events"] == 6 and late["last_us"] - late["first_us"] > 12_000 + 30_000
    assert newest["destination_addr"] == ALICE

    for written_as in ("13800138000", "+8613800138000", "008613800138000", "86138*"):
        found = await get_json(client, "/api/v1/traces", auth, number=written_as)
        assert [item["message_id"] for item in found["items"]] == [third, first], written_as
    found = await get_json(client, "/api/v1/traces", auth, number="8613900*")
    assert [item["message_id"] for item in found["items"]] == [second]
    window = {  # 0.5 ms before each arrival: clear of float rounding, messages are 100 ms apart
        "since": str((late["first_us"] - 500) / 1e6),
        "until": str((newest["first_us"] - 500) / 1e6),
    }
    found = await get_json(client, "/api/v1/traces", auth, **window)
    assert [item["message_id"] for item in found["items"]] == [second]

    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = await get_json(client, "/api/v1/traces", auth, **params)
        seen += [item["message_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [third, second, first]

    detail = await get_json(client, f"/api/v1/traces/{second}", auth)
    assert detail["message_id"] == second
    events = msgspec.convert(detail["events"], list[TraceEvent])
    assert [(e.kind, e.direction, e.account) for e in events] == [
        ("received", "smsc->smps", None),
        ("copy_sent", "smps->ne", "antispam"),
        ("copy_sent", "smps->ne", "fraud"),
        ("answered", "ne->smps", "antispam"),
        ("final", "smps->smsc", None),
        ("answered", "ne->smps", "fraud"),
    ]
    assert events[-1].late is True and events[-1].latency_ms == 42.0
    assert events[1].fields["source_addr"] == "8613900139000"

    response = await client.get("/api/v1/traces/no-such-message", headers=auth)
    assert response.status == 404
    assert "no-such-message" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": "0"}, "limit"), ({"since": "soon"}, "since"), ({"nmber": "1"}, "nmber")],
)
async def test_bad_trace_queries_are_422(client, auth, params, field):
    response = await client.get("/api/v1/traces", params=params, headers=auth)
    assert response.status == 422
    assert (await response.json())["field"] == field


async def test_traces_need_a_token_and_only_the_stream_takes_it_in_the_query(client, token):
    assert (await client.get("/api/v1/traces")).status == 401
    assert (await client.get("/api/v1/traces", params={"token": token})).status == 401
    assert (await client.get("/api/v1/traces/stream")).status == 401
    response = await client.get("/api/v1/traces/stream", params={"token": "smps_wrong"})
    assert response.status == 401
    response = await client.get("/api/v1/traces/stream", params={"token": token})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    response.close()


async def test_openapi_lists_the_trace_paths(client):
    document = await (await client.get("/api/v1/openapi.json")).json()
    for path in ("/api/v1/traces", "/api/v1/traces/stream", "/api/v1/traces/{message_id}"):
        assert path in document["paths"]
    assert "TraceSummaryOut" in document["components"]["schemas"]


# -------------------------------------------------------------------- content policy


@pytest.mark.parametrize("decode_content", [False, True])
async def test_content_never_returned_when_decoding_was_off(
    client, auth, token, tracer, config, clock, writer, decode_content
):
    set_rules(tracer, config, ALICE, decode_content=decode_content)
    response = await client.get("/api/v1/traces/stream", params={"token": token})
    stream = SseReader(response)
    assert await stream.comment() == "connected"
    message_id = run_message(tracer, clock, ALICE.encode(), b"10086")
    await written(writer, 6)
    streamed = [await stream.event() for _ in range(6)]
    response.close()
    outputs = [
        msgspec.json.encode(streamed).decode(),
        await (await client.get("/api/v1/traces", headers=auth)).text(),
        await (await client.get(f"/api/v1/traces/{message_id}", headers=auth)).text(),
    ]
    if decode_content:  # the control: where decoding is allowed, the text is there
        assert SECRET in outputs[0] and SECRET in outputs[2]
        return
    secrets = [SECRET, "Secret", "4711", SECRET.encode().hex(), SECRET.encode()[4:12].hex()]
    for output in outputs:
        assert message_id in output
        for secret in secrets:
            assert secret.lower() not in output.lower(), secret
    assert "octets hidden>" in outputs[2]


# ------------------------------------------------------------------------ live stream


class SseReader:
    """Reads a text/event-stream response one message (blank-line separated) at a time."""

    def __init__(self, response):
        self.response = response

    async def message(self) -> list[str]:
        lines = []
        async with asyncio.timeout(10):
            while True:
                line = (await self.response.content.readline()).decode()
                if not line:
                    raise EOFError("stream ended")
                if line == "\n":
                    if lines:
                        return lines
                    continue
                lines.append(line.rstrip("\n"))

    async def comment(self) -> str:
        lines = await self.message()
        comments = [line[2:] for line in lines if line.startswith(": ")]
        assert comments, lines
        return comments[-1]

    async def event(self, kind: str = "trace") -> dict:
        while True:
            lines = await self.message()
            if f"event: {kind}" in lines:
                data = [line[len("data: ") :] for line in lines if line.startswith("data: ")]
                return msgspec.json.decode("".join(data))
            assert all(line.startswith(":") for line in lines), lines  # only heartbeats between


async def test_stream_delivers_events_published_after_subscribing(
    client, auth, tracer, config, clock, hub
):
    set_rules(tracer, config, ALICE, BOB)
    before = run_message(tracer, clock, ALICE.encode(), b"10086")
    response = await client.get("/api/v1/traces/stream", params={"number": BOB}, headers=auth)
    assert response.status == 200
    stream = SseReader(response)
    assert await stream.comment() == "connected"
    assert hub.subscribers == 1
    run_message(tracer, clock, ALICE.encode(), b"10086")  # filtered out: not BOB
    after = run_message(tracer, clock, BOB.encode(), b"10086", late=True)
    kinds = []
    for _ in range(6):
        event = await stream.event()
        assert event["message_id"] == after != before
        kinds.append(event["kind"])
    assert kinds == ["received", "copy_sent", "copy_sent", "answered", "final", "answered"]
    assert await stream.comment() == "heartbeat"  # nothing more: the heartbeat comes
    response.close()


async def test_stream_without_a_hub_is_503(store, auth):
    app = web.Application()
    add_api_routes(app, store)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as plain:
        response = await plain.get("/api/v1/traces/stream", headers=auth)
        assert response.status == 503


async def test_slow_watcher_loses_events_and_is_told(store, auth, tracer, config, clock):
    hub = TraceHub(queue_limit=6)
    tracer.sink = hub
    set_rules(tracer, config, ALICE)
    app = web.Application()
    add_api_routes(app, store, trace_hub=hub, heartbeat=30.0)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as own:
        response = await own.get("/api/v1/traces/stream", headers=auth)
        stream = SseReader(response)
        assert await stream.comment() == "connected"
        await until(lambda: hub.subscribers == 1)
        ids = [run_message(tracer, clock, ALICE.encode(), b"10086") for _ in range(10)]
        # 60 events were put without the watcher getting a turn: 6 fit, 54 are lost.
        kept = [await stream.event() for _ in range(6)]
        assert [e["message_id"] for e in kept] == [ids[0]] * 6
        assert await stream.event("dropped") == {"dropped": 54}
        late = run_message(tracer, clock, ALICE.encode(), b"10086")
        again = [await stream.event() for _ in range(6)]
        assert [e["message_id"] for e in again] == [late] * 6  # in step again
        response.close()
    assert hub.dropped == 54


async def test_put_never_waits_for_a_slow_subscriber():
    hub = TraceHub(queue_limit=10)
    slow = hub.subscribe()
    fast = TraceHub(queue_limit=10_000)
    everyone = fast.subscribe()
    for n in range(5000):  # no await in between: nobody reads while this runs
        event = TraceEvent(f"m{n}", n, "received", "smsc->smps", "smsc1", "1", "2", "1", "2")
        hub.put(event)
        fast.put(event)

    events, dropped = await slow.receive(timeout=0)
    assert [e.message_id for e in events] == [f"m{n}" for n in range(10)] and dropped == 4990
    events, dropped = await everyone.receive(timeout=0)
    assert len(events) == 5000 and dropped == 0
    assert await slow.receive(timeout=0) == ([], 0)


async def test_closing_the_hub_ends_open_streams(client, auth, hub):
    response = await client.get("/api/v1/traces/stream", headers=auth)
    stream = SseReader(response)
    assert await stream.comment() == "connected"
    await until(lambda: hub.subscribers == 1)
    hub.close()  # what the server's shutdown does
    with pytest.raises(EOFError):
        while True:
            await stream.message()
    assert hub.subscribers == 0


# ------------------------------------------------------------------ rules, applied live


async def test_rules_added_through_the_api_reach_the_running_tracer(
    client, auth, store, tracer, config, clock, make_config
):
    file_config = make_config(
        trace={"country_code": "86", "rules": [{"number": BOB, "side": "sender"}]}
    )
    await file_sync.sync_file_config(store, file_config)
    store.listeners.append(tracer_rules.trace_rules_listener(store, tracer, config))
    await tracer_rules.reload_trace_rules(store, tracer, config)
    assert [rule.number for rule in tracer.rules] == [BOB]
    assert run_message(tracer, clock, b"13800138000", b"10086") is None

    rule = {"number": "+8613800138000", "side": "sender", "expires": "2099-01-01T00:00:00Z"}
    response = await client.post("/api/v1/trace_rules", json=rule, headers=auth)
    assert response.status == 201, await response.text()
    assert sorted(rule.number for rule in tracer.rules) == ["+8613800138000", BOB]
    assert run_message(tracer, clock, b"13800138000", b"10086") is not None

    assert (await client.delete("/api/v1/trace_rules/%2B8613800138000", headers=auth)).status == 204
    assert run_message(tracer, clock, b"13800138000", b"10086") is None
    assert run_message(tracer, clock, BOB.encode(), b"10086") is not None  # the file's rule


# --------------------------------------------------------------------------- the CLI


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="smps")
    trace_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(cli, *argv)


async def test_cli_against_a_running_api(
    client, token, store, tracer, config, clock, writer, capsys, monkeypatch
):
    store.listeners.append(tracer_rules.trace_rules_listener(store, tracer, config))
    url = str(client.make_url("")).rstrip("/")
    api = ("--url", url, "--token", token)

    assert await run_cli("trace", "add", "+8613800138000", "--side", "sender",
                         "--expires", "2h", "--decode-content", *api) == 0  # fmt: skip
    assert "tracing +8613800138000 (side sender, content decoded, until 20" in (
        capsys.readouterr().out
    )
    monkeypatch.setenv("SMPS_TOKEN", token)
    assert await run_cli("trace", "add", "8613900*", "--url", url) == 0  # token from env
    capsys.readouterr()
    assert await run_cli("trace", "list", "--url", url) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["NUMBER", "SIDE", "EXPIRES", "CONTENT", "FROM"]
    assert listed[1].split()[:2] == ["+8613800138000", "sender"]
    assert listed[2].split() == ["8613900*", "both", "never", "default", "api"]

    message_id = run_message(tracer, clock, b"13800138000", b"10086", late=True)
    assert message_id is not None
    await written(writer, 6)
    assert await run_cli("trace", "messages", "--number", "13800138000", *api) == 0
    assert message_id in capsys.readouterr().out
    assert await run_cli("trace", "show", message_id, *api) == 0
    ladder = capsys.readouterr().out.splitlines()
    assert ladder[0].startswith(f"message {message_id}: {ALICE} -> 10086 via smsc1")
    assert "content hidden" in ladder[0]  # trace.decode_content is off: the rule cannot allow it
    steps = ladder[1:7]
    assert "SMSC --> SMPS" in steps[0] and "deliver_sm " in steps[0] and "seq 7" in steps[0]
    assert "SMPS --> NE" in steps[1] and "antispam" in steps[1] and "seq 100" in steps[1]
    assert "SMPS <-- NE" in steps[3] and "0x00000066" in steps[3] and "block" in steps[3]
    assert "SMSC <-- SMPS" in steps[4] and "deliver_sm_resp" in steps[4]
    assert "fraud" in steps[5] and "LATE" in steps[5] and "42.0 ms" in steps[5]
    assert SECRET not in "\n".join(ladder)

    assert await run_cli("trace", "remove", "+8613800138000", *api) == 0
    assert run_message(tracer, clock, b"13800138000", b"10086") is None  # applied live
    capsys.readouterr()

    assert await run_cli("trace", "remove", "+8613800138000", *api) == 1
    assert "no trace_rules '+8613800138000' (404)" in capsys.readouterr().err
    assert await run_cli("trace", "show", "nothing", *api) == 1
    assert "no traced message 'nothing' (404)" in capsys.readouterr().err
    assert await run_cli("trace", "list", "--url", url, "--token", "smps_wrong") == 1
    assert "refused the token" in capsys.readouterr().err
    viewer = await tokens.create_token(store, "noc", "viewer")
    assert await run_cli("trace", "add", "123", "--url", url, "--token", viewer) == 1
    assert "operator or admin" in capsys.readouterr().err


def test_cli_errors_without_a_server_or_a_token(capsys, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert cli("trace", "list", "--url", f"http://127.0.0.1:{port}", "--token", "t") == 1
    assert "connection refused" in capsys.readouterr().err
    monkeypatch.delenv("SMPS_TOKEN", raising=False)
    assert cli("trace", "list", "--url", f"http://127.0.0.1:{port}") == 2
    assert "SMPS_TOKEN" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli("trace", "add", "123", "--expires", "someday", "--token", "t")


def test_ladder_shows_decoded_text_when_allowed():
    events = [
        {"message_id": "m1", "ts_us": 1_000_000, "kind": "received", "direction": "smsc->smps",
         "smsc": "smsc1", "source_addr": ALICE, "destination_addr": "10086", "content": True,
         "command": "deliver_sm", "status": 0, "sequence": 3, "text": "hi {ok}",
         "encoding": "gsm7"},
        {"message_id": "m1", "ts_us": 1_002_500, "kind": "dropped", "direction": "smps",
         "smsc": "smsc1", "source_addr": ALICE, "destination_addr": "10086", "content": True,
         "reason": "throttled"},
    ]  # fmt: skip
    lines = trace_cli.render_ladder(events).splitlines()
    assert "content hidden" not in lines[0]
    assert "+2.500 ms" in lines[2] and "SMPS  x" in lines[2] and "(throttled)" in lines[2]
    assert lines[3] == "text (gsm7): hi {ok}"
