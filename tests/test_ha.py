"""HA: keepalived notices, the role state machine, the notify FIFO, the control socket
hooks, and the database lease on real MariaDB (shared server and a private one killed)."""

import asyncio
import contextlib
import json
import os
import sys

import pytest

from smps.config import HaConfig, LeaseConfig
from smps.errors import ConfigError
from smps.ha.controller import HaController, Role
from smps.ha.keepalived import Notice, parse_notice, read_notify_fifo
from smps.ha.lease import DbLease, check_config, holder_id
from smps.store.db import Store
from tests import helpers, tracebacks
from tests.helpers import until
from tests.store_db import _create_database, drop_database, mariadb_connect

# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('INSTANCE "SMPS" MASTER 150', Notice("INSTANCE", "SMPS", "MASTER", 150)),
        ('INSTANCE "SMPS" BACKUP 100\n', Notice("INSTANCE", "SMPS", "BACKUP", 100)),
        ('GROUP "PAIR" FAULT 0', Notice("GROUP", "PAIR", "FAULT", 0)),
        ('INSTANCE "with space" STOP 90', Notice("INSTANCE", "with space", "STOP", 90)),
        ("INSTANCE SMPS MASTER 150", Notice("INSTANCE", "SMPS", "MASTER", 150)),
        ("instance SMPS master", Notice("INSTANCE", "SMPS", "MASTER", None)),
        ("MASTER", Notice("", "", "MASTER", None)),
        (" backup ", Notice("", "", "BACKUP", None)),
        ("FAULT", Notice("", "", "FAULT", None)),
        ("STOP", Notice("", "", "STOP", None)),
    ],
)
def test_parse_notice_accepts_fifo_script_and_bare_forms(line, expected):
    assert parse_notice(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "",
        "PRIMARY",
        'INSTANCE "SMPS" MASTER_RX_LOWER_PRI 150',  # an event, not a state change
        'INSTANCE "SMPS" MASTER_PRIORITY 140',
        'VS "10.0.0.1:80" UP',  # checker lines share the general notify FIFO
        'INSTANCE "SMPS MASTER 150',
        'INSTANCE "SMPS" MASTER high',
        "INSTANCE SMPS",
        "INSTANCE SMPS MASTER 150 extra",
    ],
)
def test_parse_notice_refuses_everything_else(line):
    with pytest.raises(ValueError):
        parse_notice(line)


def test_parse_notice_takes_notify_script_arguments():
    assert parse_notice(["INSTANCE", "two words", "BACKUP", "99"]) == Notice(
        "INSTANCE", "two words", "BACKUP", 99
    )


# ----------------------------------------------------------------------------- configuration


def test_lease_refused_on_sqlite_naming_the_key(make_config):
    cfg = make_config(
        database={"url": "sqlite:///./var/smps.db"},
        ha={"mode": "keepalived", "lease": {"enabled": True}},
    )
    with pytest.raises(ConfigError, match=r"^ha\.lease\.enabled: .*SQLite"):
        check_config(cfg)


def test_lease_needs_keepalived_mode(make_config):
    cfg = make_config(
        database={"url": "mysql+asyncmy://smps@db/smps"}, ha={"lease": {"enabled": True}}
    )
    with pytest.raises(ConfigError, match=r"^ha\.lease\.enabled: .*keepalived"):
        check_config(cfg)


def test_lease_accepted_on_mysql_with_keepalived(make_config):
    cfg = make_config(
        database={"url": "mysql+asyncmy://smps@db/smps"},
        ha={"mode": "keepalived", "lease": {"enabled": True, "ttl": "3s"}},
    )
    check_config(cfg)
    check_config(make_config())  # defaults: standalone, no lease


# ----------------------------------------------------------------------------- state machine


class Recorder:
    """A node's on_role: records calls; ``serving`` mimics the data plane (off at once on
    demotion, on only once a promotion finished)."""

    def __init__(self, name="node", shared=None):
        self.name = name
        self.calls: list[tuple[Role, str]] = []
        self.serving = False
        self.shared = shared if shared is not None else set()
        self.gate: asyncio.Event | None = None  # when set: promotions wait for it
        self.changed = asyncio.Event()
        self.violations: list[str] = []

    async def __call__(self, role: Role, reason: str) -> None:
        self.calls.append((role, reason))
        self.changed.set()
        if role == Role.ACTIVE:
            if self.gate is not None:
                await self.gate.wait()
            # Invariant 5: never two nodes serving at once (checked by the tests: an
            # exception here would only be logged by the controller).
            if self.shared:
                self.violations.append(f"{self.name} went active while {self.shared} served")
            self.serving = True
            self.shared.add(self.name)
        else:
            self.serving = False
            self.shared.discard(self.name)
            await asyncio.sleep(0.05)  # draining in-flight originals
        self.changed.set()

    @property
    def roles(self):
        return [role for role, _ in self.calls]


def healthy():
    return True, {"status": "ok"}


async def settle(controller: HaController, until=lambda: True, timeout=10.0):
    await helpers.until(lambda: controller.settled and until(), timeout=timeout)


def keepalived_config(**overrides):
    return HaConfig(mode="keepalived", **overrides)


async def test_standalone_is_always_active_and_ignores_keepalived():
    node = Recorder()
    ha = HaController(HaConfig(), node, health=healthy)
    await ha.start()
    try:
        await settle(ha)
        ha.notify(parse_notice("BACKUP"))
        await settle(ha)
        assert node.roles == [Role.ACTIVE]
        assert ha.role == Role.ACTIVE and ha.last.reason == "standalone"
        assert ha.check() == (True, "ok")
    finally:
        await ha.stop()


async def test_keepalived_mode_starts_in_initial_role_and_follows_every_state():
    node = Recorder()
    ha = HaController(keepalived_config(), node, health=healthy)
    await ha.start()
    try:
        await settle(ha)
        assert node.roles == [Role.STANDBY]  # initial_role defaults to standby
        expected = [Role.STANDBY]
        for state, role in [
            ("MASTER", Role.ACTIVE),
            ("BACKUP", Role.STANDBY),
            ("MASTER", Role.ACTIVE),
            ("FAULT", Role.FAULT),
            ("BACKUP", Role.STANDBY),
            ("MASTER", Role.ACTIVE),
            ("STOP", Role.STANDBY),
        ]:
            ha.notify(parse_notice(f'INSTANCE "SMPS" {state} 150'))
            await settle(ha)
            expected.append(role)
            assert ha.role == role
            assert ha.last.reason == f"keepalived {state}"
        assert node.roles == expected
        assert ha.transitions == {Role.ACTIVE: 3, Role.STANDBY: 3, Role.FAULT: 1}
        report = ha.snapshot()
        assert report["role"] == "standby" and report["keepalived"]["state"] == "STOP"
        assert report["transitions"] == 7 and report["settled"]
    finally:
        await ha.stop()


async def test_initial_role_active():
    node = Recorder()
    ha = HaController(keepalived_config(initial_role="active"), node, health=healthy)
    await ha.start()
    try:
        await settle(ha)
        assert node.roles == [Role.ACTIVE]
        assert ha.last.reason == "initial role active"
    finally:
        await ha.stop()


async def test_repeated_state_applies_once():
    node = Recorder()
    ha = HaController(keepalived_config(), node, health=healthy)
    await ha.start()
    try:
        await settle(ha)
        for _ in range(3):
            ha.notify(parse_notice("MASTER"))
        await settle(ha)
        assert node.roles == [Role.STANDBY, Role.ACTIVE]
    finally:
        await ha.stop()


async def test_demotion_interrupts_a_promotion_in_progress():
    node = Recorder()
    node.gate = asyncio.Event()  # binding never finishes on its own
    ha = HaController(keepalived_config(), node, health=healthy)
    await ha.start()
    try:
        await settle(ha)
        ha.notify(parse_notice("MASTER"))
        await until(lambda: node.roles[-1] == Role.ACTIVE, timeout=5)
        ha.notify(parse_notice("BACKUP"))  # e.g. a healed split brain, at once
        await settle(ha)
        assert node.roles == [Role.STANDBY, Role.ACTIVE, Role.STANDBY]
        assert not node.serving and ha.role == Role.STANDBY
    finally:
        await ha.stop()


async def test_promotion_waits_for_a_demotion_to_finish():
    node = Recorder()
    ha = HaController(keepalived_config(initial_role="active"), node, health=healthy)
    await ha.start()
    try:
        await settle(ha)
        ha.notify(parse_notice("BACKUP"))
        await until(lambda: node.roles[-1] == Role.STANDBY, timeout=5)
        ha.notify(parse_notice("MASTER"))  # while the demotion still drains
        await settle(ha)
        # The demotion ran to its end (serving was off, then on again), never cancelled.
        assert node.roles == [Role.ACTIVE, Role.STANDBY, Role.ACTIVE]
        assert node.serving
    finally:
        await ha.stop()


async def test_sync_group_state_wins_over_its_instances():
    node = Recorder()
    ha = HaController(keepalived_config(), node, health=healthy)
    await ha.start()
    try:
        ha.notify(parse_notice('GROUP "PAIR" MASTER 0'))
        ha.notify(parse_notice('INSTANCE "SMPS_NE" BACKUP 100'))  # member, mid-transition
        await settle(ha)
        assert ha.role == Role.ACTIVE
        ha.notify(parse_notice('GROUP "PAIR" BACKUP 0'))
        await settle(ha)
        assert ha.role == Role.STANDBY
    finally:
        await ha.stop()


# ----------------------------------------------------------------------------- the FIFO


class FifoWriter:
    """keepalived's end of the FIFO: opened without blocking once the reader is there."""

    def __init__(self, path):
        self.path = path
        self.fd: int | None = None

    async def open(self):
        while True:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                return self
            except (FileNotFoundError, OSError):  # ENXIO: no reader yet
                await asyncio.sleep(0.01)

    def write(self, line: str):
        os.write(self.fd, line.encode())

    def close(self):
        os.close(self.fd)


async def test_fifo_reader_follows_keepalived_through_restarts(tmp_path):
    path = str(tmp_path / "notify.fifo")
    seen: list[Notice] = []
    reader = asyncio.create_task(read_notify_fifo(path, seen.append))
    try:
        keepalived = await FifoWriter(path).open()  # the reader made the FIFO
        keepalived.write('INSTANCE "SMPS" BACKUP 100\n')
        keepalived.write("garbage that is skipped\n")
        keepalived.write('INSTANCE "SMPS" MASTER_RX_LOWER_PRI 100\nINSTANCE "SMPS" MA')
        keepalived.write("STER 150\n")  # a line split over two writes
        await until(lambda: len(seen) == 2, timeout=5)
        assert [n.state for n in seen] == ["BACKUP", "MASTER"]

        keepalived.close()  # keepalived restarts: end of file for the reader
        await asyncio.sleep(0.1)
        keepalived = await FifoWriter(path).open()
        keepalived.write('INSTANCE "SMPS" FAULT 150\n')
        await until(lambda: len(seen) == 3, timeout=5)
        keepalived.close()

        # A restarted keepalived that deleted the FIFO and made a new one.
        os.unlink(path)
        os.mkfifo(path)
        keepalived = await FifoWriter(path).open()
        keepalived.write('INSTANCE "SMPS" BACKUP 100\n')
        await until(lambda: len(seen) == 4, timeout=10)
        keepalived.close()
        assert [n.state for n in seen] == ["BACKUP", "MASTER", "FAULT", "BACKUP"]
        assert not reader.done()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_controller_follows_the_fifo(tmp_path):
    path = str(tmp_path / "notify.fifo")
    node = Recorder()
    ha = HaController(keepalived_config(notify_fifo=path), node, health=healthy)
    await ha.start()
    try:
        keepalived = await FifoWriter(path).open()
        keepalived.write('INSTANCE "SMPS" MASTER 150\n')
        await settle(ha, lambda: ha.role == Role.ACTIVE)
        keepalived.write('INSTANCE "SMPS" BACKUP 100\n')
        await settle(ha, lambda: ha.role == Role.STANDBY)
        keepalived.close()
        assert node.roles == [Role.STANDBY, Role.ACTIVE, Role.STANDBY]
    finally:
        await ha.stop()


# ----------------------------------------------------------------------------- control socket


async def test_control_lines():
    node = Recorder()
    ha = HaController(keepalived_config(), node, health=healthy)
    await ha.start()
    try:
        answer = json.loads(
            await ha.handle_control_line(
                '{"cmd": "ha.notify", "args": ["INSTANCE", "SMPS", "MASTER", "150"]}'
            )
        )
        assert answer["role"] == "active"
        assert json.loads(await ha.handle_control_line('{"cmd": "ha.check"}'))["healthy"]
        bad = json.loads(await ha.handle_control_line('{"cmd": "ha.notify", "args": ["UP"]}'))
        assert "error" in bad and ha.role == Role.ACTIVE
        assert "error" in json.loads(await ha.handle_control_line("not json"))
        assert "error" in json.loads(await ha.handle_control_line('{"cmd": "ha.nope"}'))
    finally:
        await ha.stop()


HA_CLI = (
    "import argparse, sys\n"
    "from smps.ha_cli import register\n"
    "parser = argparse.ArgumentParser(prog='smps')\n"
    "register(parser.add_subparsers(dest='command', required=True))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.handler(args))\n"
)


async def smps_ha(*argv):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HA_CLI,
        "ha",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    tracebacks.assert_none(err.decode(), f"smps ha {' '.join(argv)}")
    return process.returncode, out.decode() + err.decode()


@contextlib.asynccontextmanager
async def control_server(state_dir, handle_line):
    """The node's control socket, serving one JSON line per connection."""

    async def serve(reader, writer):
        line = await reader.readline()
        answer = await handle_line(line)
        if answer is not None:
            writer.write(answer.encode())
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(state_dir / "smps.sock"))
    try:
        yield
    finally:
        server.close()


@pytest.fixture
def node_config(tmp_path):
    state = tmp_path / "var"
    state.mkdir()
    path = tmp_path / "smps.yaml"
    path.write_text(f"node: {{name: smps-a, state_dir: {state}}}\nha: {{mode: keepalived}}\n")
    return str(path), state


async def test_ha_check_and_notify_over_the_control_socket(node_config):
    config_path, state = node_config
    node = Recorder()
    health = {"ok": True}

    def node_health():
        if health["ok"]:
            return True, {"status": "ok"}
        return False, {"status": "degraded", "reason": "1 of 2 workers not running"}

    ha = HaController(keepalived_config(), node, health=node_health)
    await ha.start()
    try:
        code, output = await smps_ha("check", "-c", config_path)
        assert code == 1 and "no running node" in output

        async with control_server(state, ha.handle_control_line):
            code, output = await smps_ha("check", "-c", config_path)
            assert code == 1 and "no state from keepalived" in output  # restarted under MASTER?
            assert (await smps_ha("notify", "-c", config_path, "FAULT"))[0] == 0
            assert (await smps_ha("check", "-c", config_path))[0] == 0
            health["ok"] = False
            code, output = await smps_ha("check", "-c", config_path)
            assert code == 1 and "1 of 2 workers not running" in output
            health["ok"] = True

            await settle(ha)
            calls = len(node.calls)
            code, output = await smps_ha("check", "-c", config_path)
            assert code == 0 and len(node.calls) == calls and ha.role == Role.FAULT

            code, output = await smps_ha(
                "notify", "-c", config_path, "INSTANCE", "SMPS", "MASTER", "150"
            )
            assert code == 0 and "role active" in output
            await settle(ha)
            assert node.roles[-1] == Role.ACTIVE
            assert (await smps_ha("check", "-c", config_path))[0] == 0  # healthy in any role

            assert (await smps_ha("notify", "-c", config_path, "BACKUP"))[0] == 0
            await settle(ha)
            assert node.roles[-1] == Role.STANDBY

            code, output = await smps_ha("notify", "-c", config_path, "PRIMARY")
            assert code == 2 and "expected one of" in output
    finally:
        await ha.stop()


async def test_ha_check_fails_when_the_node_does_not_answer(node_config):
    config_path, state = node_config
    hang = asyncio.Event()

    async def never_answers(line):
        await hang.wait()

    async with control_server(state, never_answers):
        code, output = await smps_ha("check", "-c", config_path)
    hang.set()
    assert code == 1 and "timed out" in output


# ----------------------------------------------------------------------------- the lease


@pytest.fixture
async def mysql_url():
    """A database of this test's own on the shared MariaDB (127.0.0.1:3306)."""
    name = await _create_database()
    try:
        yield f"mysql+asyncmy://root@127.0.0.1:3306/{name}"
    finally:
        await drop_database(name)


@pytest.fixture
async def mysql_store(mysql_url):
    store = await Store.open(mysql_url)
    try:
        yield store
    finally:
        await store.close()


def lease_config(ttl: float) -> HaConfig:
    return HaConfig(mode="keepalived", lease=LeaseConfig(enabled=True, ttl=ttl))


@pytest.mark.mariadb
async def test_lease_taken_renewed_and_taken_over_only_after_expiry(mysql_store):
    a = DbLease(mysql_store.engine, holder_id("a"), ttl=1.0)
    b = DbLease(mysql_store.engine, holder_id("b"), ttl=1.0)
    first = await a.acquire()
    assert (first.holder, first.epoch) == (a.holder, 1)
    denied = await b.acquire()
    assert denied.holder == a.holder and denied.valid  # B waits
    renewed = await a.acquire()
    assert (renewed.holder, renewed.epoch) == (a.holder, 1)
    assert renewed.expires_us > first.expires_us

    # A stops renewing; B keeps trying and gets it only once A's lease expired.
    while (taken := await b.acquire()).holder != b.holder:
        assert taken.holder == a.holder
        await asyncio.sleep(0.05)
    assert taken.epoch == 2
    assert taken.now_us >= renewed.expires_us  # by the database's own clock

    lost = await a.acquire()  # A comes back: it finds the lease lost
    assert (lost.holder, lost.epoch) == (b.holder, 2)
    await a.release()  # giving back what it does not hold changes nothing
    assert (await b.read()).holder == b.holder

    await b.release()
    assert not (await a.read()).valid  # released: free at once
    again = await a.acquire()
    assert (again.holder, again.epoch) == (a.holder, 3)


@pytest.mark.mariadb
async def test_lease_keeps_one_node_active_through_a_split_brain(mysql_url):
    stores = [await Store.open(mysql_url), await Store.open(mysql_url)]
    serving: set[str] = set()
    nodes = [Recorder("a", serving), Recorder("b", serving)]
    ttl = 1.5
    controllers = [
        HaController(
            lease_config(ttl),
            node,
            health=healthy,
            lease=DbLease(store.engine, holder_id(node.name), ttl),
        )
        for node, store in zip(nodes, stores, strict=True)
    ]
    a, b = controllers
    try:
        for controller in controllers:
            await controller.start()
        a.notify(parse_notice('INSTANCE "SMPS" MASTER 150'))
        await settle(a, lambda: a.role == Role.ACTIVE)
        assert a.epoch == 1

        b.notify(parse_notice('INSTANCE "SMPS" MASTER 100'))  # split brain: both MASTER
        await until(lambda: b.lease_state is not None, timeout=5)
        await asyncio.sleep(ttl)  # several renewals by A, several refusals for B
        assert b.role == Role.STANDBY and serving == {"a"}
        report = b.snapshot()["lease"]
        assert report["waiting"] and report["holder"] == a.lease.holder and report["epoch"] == 1
        assert "waiting for the lease" in b.reason

        # A's database link hangs: A must stop serving before B can take over.
        frozen = asyncio.Event()

        async def hang():
            await frozen.wait()
            raise TimeoutError("frozen")

        a.lease.acquire = hang
        await settle(b, lambda: b.role == Role.ACTIVE, timeout=4 * ttl)
        assert (
            a.role == Role.STANDBY
            and a.last.reason == "lease epoch 1 lost: lease not renewed in time"
        )
        assert b.epoch == 2 and serving == {"b"}
        assert nodes[0].roles == [Role.STANDBY, Role.ACTIVE, Role.STANDBY]

        # A's link is back and keepalived still says MASTER there: it stays standby.
        del a.lease.acquire
        frozen.set()
        await asyncio.sleep(ttl)
        assert a.role == Role.STANDBY and serving == {"b"}
        assert a.snapshot()["lease"]["holder"] == b.lease.holder

        # Healed: keepalived demotes B; B drains, gives the lease back, A takes it at once.
        b.notify(parse_notice('INSTANCE "SMPS" BACKUP 100'))
        await settle(a, lambda: a.role == Role.ACTIVE, timeout=4 * ttl)
        assert a.epoch == 3 and serving == {"a"}
        assert nodes[0].violations == nodes[1].violations == []
    finally:
        for controller in controllers:
            await controller.stop()
        for store in stores:
            await store.close()


@pytest.mark.mariadb
async def test_holder_steps_down_within_ttl_when_its_database_dies(private_mariadb):
    conn = await mariadb_connect(port=private_mariadb.port)
    async with conn.cursor() as cursor:
        await cursor.execute("CREATE DATABASE smps CHARACTER SET utf8mb4")
    conn.close()
    store = await Store.open(private_mariadb.url("smps"))
    node = Recorder()
    ttl = 3.0
    ha = HaController(
        lease_config(ttl),
        node,
        health=healthy,
        lease=DbLease(store.engine, holder_id("a"), ttl),
    )
    loop = asyncio.get_running_loop()
    try:
        await ha.start()
        assert ha.check() == (False, "no state from keepalived since this node started")
        ha.notify(parse_notice("MASTER"))
        await settle(ha, lambda: ha.role == Role.ACTIVE)
        assert ha.check() == (True, "ok")

        private_mariadb.kill()
        killed_at = loop.time()
        await until(lambda: not node.serving, timeout=2 * ttl)
        stepped_down_after = loop.time() - killed_at
        assert stepped_down_after < ttl, stepped_down_after  # the lease cannot have expired yet
        assert ha.role == Role.STANDBY and ha.epoch is None
        assert ha.snapshot()["lease"]["error"]

        await until(lambda: not ha.check()[0], timeout=2 * ttl)
        assert "lease database" in ha.check()[1]
    finally:
        await ha.stop()
        await store.close()


# ----------------------------------------------------------------------------- real keepalived

KEEPALIVED = "/usr/sbin/keepalived"
VIP = "10.99.0.10"


def _run(*argv: str) -> str:
    import subprocess

    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


class VrrpLab:
    """Two node namespaces joined by veth pairs to a bridge namespace, keepalived in each,
    unicast VRRP (no vrrp_strict); the notify FIFOs and control sockets are plain files,
    shared with the test across namespaces."""

    def __init__(self, base, check_cli):
        import secrets

        tag = secrets.token_hex(2)
        self.base = base
        self.check_cli = check_cli
        self.bridge = f"smps-br-{tag}"
        self.ns = {"a": f"smps-a-{tag}", "b": f"smps-b-{tag}"}
        self.port = {"a": f"pa{tag}", "b": f"pb{tag}"}
        self.address = {"a": "10.99.0.11", "b": "10.99.0.12"}
        self.processes: dict = {}

    def build(self) -> None:
        _run("ip", "netns", "add", self.bridge)
        _run("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.bridge, "link", "set", "br0", "up")
        for node, ns in self.ns.items():
            _run("ip", "netns", "add", ns)
            inner = f"v{node}{self.port[node][2:]}"
            _run("ip", "link", "add", inner, "type", "veth", "peer", "name", self.port[node])
            _run("ip", "link", "set", inner, "netns", ns)
            _run("ip", "link", "set", self.port[node], "netns", self.bridge)
            _run("ip", "-n", ns, "link", "set", inner, "name", "eth0")
            _run("ip", "-n", ns, "addr", "add", f"{self.address[node]}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", self.bridge, "link", "set", self.port[node], "master", "br0")
            _run("ip", "-n", self.bridge, "link", "set", self.port[node], "up")

    def start_keepalived(self, node: str, priority: int, config_path: str, fifo: str) -> None:
        import subprocess

        peer = self.address["b" if node == "a" else "a"]
        check = self.base / f"check-{node}.sh"
        check.write_text(
            f"#!/bin/sh\nexec {sys.executable} {self.check_cli} ha check -c {config_path}\n"
        )
        check.chmod(0o755)
        conf = self.base / f"keepalived-{node}.conf"
        conf.write_text(
            f"""
global_defs {{
    router_id smps-{node}
    vrrp_notify_fifo {fifo}
}}
vrrp_script smps_check {{
    script "{check}"
    interval 1
    timeout 2
    fall 2
    rise 1
}}
vrrp_instance SMPS {{
    state BACKUP
    nopreempt
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    unicast_src_ip {self.address[node]}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {VIP}/24 dev eth0
    }}
    track_script {{
        smps_check
    }}
}}
"""
        )
        log_file = open(self.base / f"keepalived-{node}.log", "w")  # noqa: SIM115
        self.processes[node] = subprocess.Popen(
            [
                "ip", "netns", "exec", self.ns[node], KEEPALIVED,
                "--dont-fork", "--log-console", "--no-syslog", "--vrrp",
                f"--use-file={conf}",
                f"--pid={self.base / f'ka-{node}.pid'}",
                f"--vrrp_pid={self.base / f'ka-{node}-vrrp.pid'}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def has_vip(self, node: str) -> bool:
        return f"{VIP}/" in _run("ip", "-n", self.ns[node], "-4", "addr", "show", "dev", "eth0")

    def isolate(self, node: str, isolated: bool) -> None:
        """Take the node's port out of the bridge (or back): its link stays up, so
        keepalived sees silence, not an interface fault."""
        where = ["nomaster"] if isolated else ["master", "br0"]
        _run("ip", "-n", self.bridge, "link", "set", self.port[node], *where)

    def destroy(self) -> None:
        import subprocess

        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for ns in [*self.ns.values(), self.bridge]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.mariadb
async def test_real_keepalived_moves_vip_and_role_and_the_lease_survives_split_brain(
    tmp_path, mysql_url
):
    if not os.path.exists(KEEPALIVED):
        pytest.skip("keepalived not installed (apt-get install keepalived)")
    check_cli = tmp_path / "hacli.py"
    check_cli.write_text(HA_CLI)
    lab = VrrpLab(tmp_path, check_cli)
    try:
        lab.build()
    except Exception as exc:
        lab.destroy()
        pytest.skip(f"network namespaces refused: {getattr(exc, 'stderr', exc)}")

    ttl = 2.0
    serving: set[str] = set()
    health = {"a": True, "b": True}
    stores, nodes, controllers, servers = [], {}, {}, []
    try:
        for name, priority in (("a", 150), ("b", 100)):
            state = tmp_path / f"var-{name}"
            state.mkdir()
            config_path = tmp_path / f"smps-{name}.yaml"
            config_path.write_text(f"node: {{name: smps-{name}, state_dir: {state}}}\n")
            fifo = str(tmp_path / f"notify-{name}.fifo")
            store = await Store.open(mysql_url)
            stores.append(store)
            nodes[name] = Recorder(name, serving)
            controllers[name] = HaController(
                HaConfig(
                    mode="keepalived",
                    notify_fifo=fifo,
                    lease=LeaseConfig(enabled=True, ttl=ttl),
                ),
                nodes[name],
                health=lambda name=name: (health[name], {"reason": "SMPS down"}),
                lease=DbLease(store.engine, holder_id(name), ttl),
            )
            await controllers[name].start()
            server = await asyncio.start_unix_server(
                _line_server(controllers[name].handle_control_line), str(state / "smps.sock")
            )
            servers.append(server)
            lab.start_keepalived(name, priority, str(config_path), fifo)
        a, b = controllers["a"], controllers["b"]

        def active():
            return sorted(n for n, c in controllers.items() if c.role == Role.ACTIVE)

        await until(lambda: len(active()) == 1, timeout=60, interval=0.1)
        first = active()[0]
        other = "b" if first == "a" else "a"
        await until(lambda: lab.has_vip(first), timeout=10, interval=0.1)
        assert not lab.has_vip(other)

        # SMPS on the active node dies (its check fails): VIP and role move.
        health[first] = False
        await until(lambda: active() == [other] and lab.has_vip(other), timeout=60, interval=0.1)
        assert controllers[first].role in (Role.FAULT, Role.STANDBY)
        health[first] = True
        await until(
            lambda: controllers[first].keepalived.state == "BACKUP", timeout=30, interval=0.1
        )
        assert active() == [other]  # nopreempt: it stays where it is

        # Split brain: both keepalived MASTER, the lease keeps one SMPS active.
        lab.isolate(first, True)
        await until(
            lambda: a.keepalived.state == b.keepalived.state == "MASTER", timeout=30, interval=0.1
        )
        await asyncio.sleep(3 * ttl)
        assert active() == [other] and lab.has_vip(first) and lab.has_vip(other)
        assert controllers[first].snapshot()["lease"]["waiting"]

        # Healed: keepalived demotes one at once; still exactly one active.
        lab.isolate(first, False)
        await until(
            lambda: {a.keepalived.state, b.keepalived.state} == {"MASTER", "BACKUP"},
            timeout=30,
            interval=0.1,
        )
        master = "a" if a.keepalived.state == "MASTER" else "b"
        await until(lambda: active() == [master], timeout=6 * ttl, interval=0.1)
        assert nodes["a"].violations == nodes["b"].violations == []
    finally:
        lab.destroy()
        for server in servers:
            server.close()
        for controller in controllers.values():
            await controller.stop()
        for store in stores:
            await store.close()


def _line_server(handle_line):
    async def serve(reader, writer):
        writer.write((await handle_line(await reader.readline())).encode())
        await writer.drain()
        writer.close()

    return serve
