"""smps.config: defaults, value syntax, environment secrets, masking, and refused files."""

import os
import re
import socket
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import yaml

from smps import config
from smps.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "config" / "smps.yaml"

MINIMAL = """\
smsc:
  - {name: smsc1, host: 127.0.0.1, port: 2776, system_id: smps, password: smscpw}
ne_accounts:
  - {system_id: antispam, password: nepw1}
  - {system_id: anti-fraud, password: nepw2}
database: {url: "mysql+asyncmy://smps:dbsecret@127.0.0.1:3306/smps"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def refused(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    """The one-line error for a file with ``text``; fails the test if the file is accepted."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.load(path, env=env or {})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


# ---------------------------------------------------------------------------- defaults


def test_empty_file_is_all_defaults(tmp_path):
    cfg = config.load(write(tmp_path, "# nothing but a comment\n"), env={})
    assert cfg == config.default()
    assert cfg.node.name == socket.gethostname()
    assert cfg.node.workers == "auto"
    assert cfg.log.level == "INFO"
    assert cfg.log.max_bytes == 10 * 1024 * 1024
    assert cfg.log.color == "auto"
    assert cfg.database.url == "sqlite:///./var/smps.db"
    assert cfg.database.flush_interval == 0.2
    assert cfg.database.record == "non_allow"
    assert cfg.smsc == [] and cfg.ne_accounts == [] and cfg.routes == []
    assert cfg.server.listen == ("0.0.0.0", 2775)
    assert cfg.web.listen == ("0.0.0.0", 8080)
    assert cfg.policy.timeout == 2.0
    assert cfg.policy.block_status == 0x66
    assert cfg.policy.ne_block_codes == [0x66, 0x65]
    assert cfg.flow.on_overload == "throttle"
    assert cfg.ha.lease.ttl == 5.0


def test_entry_defaults():
    cfg = config.loads(MINIMAL, env={})
    smsc, account = cfg.smsc[0], cfg.ne_accounts[0]
    assert smsc.bind == "transceiver" and smsc.binds == 1
    assert (smsc.reconnect.initial, smsc.reconnect.max) == (1.0, 30.0)
    assert smsc.default_alphabet == "gsm7" and smsc.tls is None
    assert account.allowed_ips == ["127.0.0.1/32"]
    assert (account.max_binds, account.window, account.tps) == (4, 64, 0)
    assert account.mode == "enforce" and account.enabled


def test_config_is_frozen():
    cfg = config.default()
    with pytest.raises(AttributeError):
        cfg.policy.timeout = 5.0


def test_workers_resolve():
    assert config.loads("node: {workers: 3}").node.worker_count == 3
    auto = config.default().node.worker_count
    assert auto >= 1
    assert auto <= (os.cpu_count() or 1)


def test_shipped_config_loads_and_runs_on_a_laptop():
    cfg = config.load(SHIPPED, env={})
    assert [s.name for s in cfg.smsc] == ["smsc1"]
    assert (cfg.smsc[0].host, cfg.smsc[0].port) == ("127.0.0.1", 2776)
    assert 2 <= len(cfg.ne_accounts) <= 3
    assert cfg.routes == []
    assert cfg.server.listen[0] == "127.0.0.1" and cfg.web.listen[0] == "127.0.0.1"
    assert cfg.database.url.startswith("sqlite:///")


def test_shipped_config_has_every_section_and_key():
    """The example documents every key: each Struct field appears in the file."""
    raw = yaml.safe_load(SHIPPED.read_text())
    for section in config.Config.__struct_fields__:
        assert section in raw, section
    for name, struct in [("node", config.NodeConfig), ("log", config.LogConfig),
                         ("database", config.DatabaseConfig), ("server", config.ServerConfig),
                         ("policy", config.PolicyConfig), ("flow", config.FlowConfig),
                         ("trace", config.TraceConfig), ("web", config.WebConfig),
                         ("ha", config.HaConfig)]:  # fmt: skip
        assert set(raw[name]) == set(struct.__struct_fields__), name
    assert set(raw["smsc"][0]) == set(config.SmscConfig.__struct_fields__)
    assert set(raw["ne_accounts"][0]) == set(config.NeAccount.__struct_fields__)
    assert set(raw["screening"]) == set(config.ScreeningConfig.__struct_fields__)
    # Rule keys depend on the rule type: each appears in the section, live or in an example.
    section = SHIPPED.read_text().split("\nscreening:", 1)[1].split("\nweb:", 1)[0]
    for key in config.ScreeningRule.__struct_fields__:
        assert re.search(rf"[{{ ]{key}: ", section), key


def test_shipped_config_documents_env_overrides():
    text = SHIPPED.read_text()
    for variable in (
        "SMPS_DATABASE_URL",
        "SMPS_SMSC_<NAME>_PASSWORD",
        "SMPS_NE_<SYSTEM_ID>_PASSWORD",
    ):
        assert variable in text


# ---------------------------------------------------------------------------- value syntax


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2.0), ("200ms", 0.2), ("1m", 60.0), ("1h", 3600.0), ("1m30s", 90.0),
     ("1.5s", 1.5), (" 3 ", 3.0), (5, 5.0), (0.25, 0.25), ("1d", 86400.0)],
)  # fmt: skip
def test_parse_duration(text, seconds):
    assert config.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2 parsecs", "", "s", "2x", "1s2", "-", True, None, "2s 3y"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="bad duration"):
        config.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("10MiB", 10 * 1024**2), ("512KiB", 512 * 1024), ("1MB", 1_000_000), ("1GB", 10**9),
     ("100B", 100), ("1gib", 1024**3), (4096, 4096), ("4096", 4096)],
)  # fmt: skip
def test_parse_size(text, size):
    assert config.parse_size(text) == size


@pytest.mark.parametrize("text", ["10 furlongs", "MiB", "10M", False, 1.5, "-1KiB"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="bad size"):
        config.parse_size(text)


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:2775", ("127.0.0.1", 2775)), ("[::1]:2775", ("::1", 2775)),
     ("localhost:0", ("localhost", 0)), ("smsc.example.net:65535", ("smsc.example.net", 65535))],
)  # fmt: skip
def test_parse_address(text, address):
    assert config.parse_address(text) == address


@pytest.mark.parametrize(
    "text", ["2775", ":2775", "::1:2775", "[nope]:1", "host:65536", "host:http", "a b:1", 2775]
)
def test_parse_address_refuses(text):
    with pytest.raises(ValueError, match="bad address"):
        config.parse_address(text)


def test_file_values_are_parsed():
    cfg = config.loads(
        """
        log: {level: debug, max_bytes: 1MiB, color: no, stats_interval: 1m}
        server: {listen: "[::1]:2775", max_pdu_size: 128KiB, write_buffer_max: 10MiB}
        smsc: [{name: s1, host: h, port: 1, system_id: x, write_stall_timeout: 2500ms}]
        web: {listen: "127.0.0.1:0"}
        policy: {timeout: 500ms, block_status: "0x45", ne_block_codes: ["0x66", 0x67, 8]}
        ne_accounts:
          - {system_id: a, password: p, allowed_ips: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]}
        trace:
          rules: [{number: "+8613*", expires: "2026-06-30T18:00:00+08:00"},
                  {number: "8613800138000", expires: 2026-06-30 10:00:00}]
        """,
        env={},
    )
    assert cfg.log.level == "DEBUG" and cfg.log.max_bytes == 1024**2
    assert cfg.log.color is False and cfg.log.stats_interval == 60.0
    assert cfg.server.listen == ("::1", 2775) and cfg.server.max_pdu_size == 128 * 1024
    assert cfg.server.write_buffer_max == 10 * 1024**2 and cfg.server.write_stall_timeout == 10.0
    assert cfg.smsc[0].write_stall_timeout == 2.5 and cfg.smsc[0].write_buffer_max == 4 * 1024**2
    assert cfg.web.listen == ("127.0.0.1", 0)
    assert cfg.policy.timeout == pytest.approx(0.5)
    assert cfg.policy.block_status == 0x45 and cfg.policy.ne_block_codes == [0x66, 0x67, 8]
    assert cfg.ne_accounts[0].allowed_ips == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
    first, second = cfg.trace.rules
    assert first.expires == datetime(2026, 6, 30, 10, 0, tzinfo=UTC)
    assert second.expires == datetime(2026, 6, 30, 10, 0, tzinfo=UTC)  # no offset = UTC


# ---------------------------------------------------------------------------- environment


def test_env_overrides_secrets(tmp_path):
    env = {
        "SMPS_DATABASE_URL": "mysql+asyncmy://smps:fromenv@db:3306/smps",
        "SMPS_SMSC_SMSC1_PASSWORD": "envsmsc",
        "SMPS_NE_ANTI_FRAUD_PASSWORD": "envne",
        "SMPS_NE_NOBODY_PASSWORD": "ignored",
    }
    cfg = config.load(write(tmp_path, MINIMAL), env=env)
    assert cfg.database.url == env["SMPS_DATABASE_URL"]
    assert cfg.smsc[0].password == "envsmsc"
    assert cfg.ne_accounts[0].password == "nepw1"  # no variable for antispam
    assert cfg.ne_accounts[1].password == "envne"


def test_env_supplies_a_password_missing_from_the_file():
    cfg = config.loads("ne_accounts: [{system_id: audit}]", env={"SMPS_NE_AUDIT_PASSWORD": "x"})
    assert cfg.ne_accounts[0].password == "x"


def test_env_value_is_validated_and_named_in_the_error(tmp_path):
    reason = refused(tmp_path, MINIMAL, env={"SMPS_SMSC_SMSC1_PASSWORD": "far-too-long"})
    assert reason.startswith("smsc[0].password: expected at most 8")
    assert "SMPS_SMSC_SMSC1_PASSWORD" in reason
    assert "far-too-long" not in reason


def test_load_reads_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("SMPS_SMSC_SMSC1_PASSWORD", "procenv")
    assert config.load(write(tmp_path, MINIMAL)).smsc[0].password == "procenv"


def test_names_sharing_an_env_variable_are_refused(tmp_path):
    reason = refused(
        tmp_path,
        """
        ne_accounts:
          - {system_id: anti-spam, password: a}
          - {system_id: anti_spam, password: b}
        """,
    )
    assert reason.startswith("ne_accounts[1].system_id: ")
    assert "SMPS_NE_ANTI_SPAM_PASSWORD" in reason


# ---------------------------------------------------------------------------- masking


def test_masked_hides_every_secret():
    env = {"SMPS_NE_ANTISPAM_PASSWORD": "envpw9"}
    cfg = config.loads(MINIMAL, env=env)
    masked = cfg.masked()
    dumped = str(masked)
    for secret in ("smscpw", "envpw9", "nepw2", "dbsecret"):
        assert secret not in dumped
    assert masked["smsc"][0]["password"] == "***"
    assert masked["database"]["url"] == "mysql+asyncmy://smps:***@127.0.0.1:3306/smps"
    assert cfg.smsc[0].password == "smscpw"  # masking does not touch the config


def test_masked_is_plain_builtins_in_file_syntax():
    cfg = config.load(SHIPPED, env={})
    masked = cfg.masked()
    assert masked["server"]["listen"] == "127.0.0.1:2775"
    msgspec.json.encode(masked)  # what the CLI logs
    # Reading it back gives the same configuration, secrets aside.
    assert config.loads(yaml.safe_dump(masked), env={}).masked() == masked


def test_masked_ipv6_listen_reads_back():
    cfg = config.loads('server: {listen: "[::]:2775"}')
    assert cfg.masked()["server"]["listen"] == "[::]:2775"


# ---------------------------------------------------------------------------- refused files


SMSC = "{name: s1, host: 127.0.0.1, system_id: smps"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smpp: {}", "smpp: unknown key"),
        ("policy: {timout: 2s}", "policy.timout: unknown key (did you mean 'timeout'?)"),
        (f"smsc: [{SMSC}, port: 1, reconect: {{}}}}]", "smsc[0].reconect: unknown key"),
        (f"smsc: [{SMSC}, port: 1, reconnect: {{max: 1s, min: 1s}}}}]",
         "smsc[0].reconnect.min: unknown key"),
        ("flow: {max_inflight: lots}", "flow.max_inflight: expected an integer >= 1, got 'lots'"),
        ("policy: {inspect_receipts: maybe}",
         "policy.inspect_receipts: expected true or false, got 'maybe'"),
        ("smsc: {name: s1}", "smsc: expected a list, got a mapping"),
        ("policy: 5", "policy: expected a mapping, got 5"),
        ("policy: {timeout: 2 parsecs}", "policy.timeout: bad duration '2 parsecs'"),
        ("policy: {timeout: 0s}", "policy.timeout: expected a positive duration"),
        ("log: {max_bytes: 10 furlongs}", "log.max_bytes: bad size '10 furlongs'"),
        ("server: {write_buffer_max: 4KiB}",
         "server.write_buffer_max: expected 64KiB to 1GiB, got '4KiB'"),
        (f"smsc: [{SMSC}, port: 1, write_stall_timeout: 0s}}]",
         "smsc[0].write_stall_timeout: expected a positive duration"),
        (f"smsc: [{SMSC}, port: 70000}}]",
         "smsc[0].port: expected an integer from 1 to 65535, got 70000"),
        (f"smsc: [{SMSC}, port: '2776'}}]",
         "smsc[0].port: expected an integer from 1 to 65535, got '2776'"),
        (f"smsc: [{SMSC}}}]", "smsc[0].port: required key missing"),
        ("server: {listen: 2775}", "server.listen: bad address 2775"),
        ('web: {listen: "::1:8080"}', "web.listen: bad address '::1:8080': write IPv6"),
        ("ne_accounts: [{system_id: a, password: p, allowed_ips: [10.0.0.300/8]}]",
         "ne_accounts[0].allowed_ips[0]: bad IP network '10.0.0.300/8'"),
        ("ne_accounts: [{system_id: a, password: p, allowed_ips: [10.1.2.3/8]}]",
         "ne_accounts[0].allowed_ips[0]: bad IP network '10.1.2.3/8': host bits set"),
        ("ne_accounts: [{system_id: a, password: p, allowed_ips: []}]",
         "ne_accounts[0].allowed_ips: expected a list of at least one network"),
        ("ne_accounts: [{system_id: a, password: p, window: 0}]",
         "ne_accounts[0].window: expected an integer from 1 to 10000, got 0"),
        ("ne_accounts: [{system_id: a, password: p, mode: audit}]",
         "ne_accounts[0].mode: expected one of enforce, monitor, got 'audit'"),
        ("ne_accounts: [{system_id: antispam, password: a}, {system_id: antispam, password: b}]",
         "ne_accounts[1].system_id: duplicate account 'antispam'"),
        ("ne_accounts: [{system_id: a-system-id-too-long, password: p}]",
         "ne_accounts[0].system_id: expected 1 to 15 printable ASCII characters"),
        (f"smsc: [{SMSC}, port: 1}}, {SMSC}, port: 2}}]", "smsc[1].name: duplicate SMSC name 's1'"),
        ("routes: [{name: r1, accounts: [ghost]}]",
         "routes[0].accounts[0]: unknown NE account 'ghost'"),
        ("ne_accounts: [{system_id: a, password: p}]\n"
         "routes: [{name: r1, accounts: [a], smsc: [x]}]",
         "routes[0].smsc[0]: unknown SMSC 'x'"),
        ("ne_accounts: [{system_id: a, password: p}]\n"
         "routes: [{name: r1, accounts: [a]}, {name: r1, accounts: [a]}]",
         "routes[1].name: duplicate route name 'r1'"),
        (f"smsc: [{SMSC}, port: 1, reconnect: {{initial: 10s, max: 2s}}}}]",
         "smsc[0].reconnect.max: must be at least reconnect.initial (10s), got 2s"),
        ("database: {url: 'postgres://u@h/db'}",
         "database.url: expected a URL starting with sqlite:/// or mysql+asyncmy://"),
        ("log: {level: LOUD}", "log.level: expected one of"),
        ("node: {workers: 0}", "node.workers: expected auto or an integer from 1 to 1024, got 0"),
        ("policy: {block_status: 0}", "policy.block_status: must not be 0"),
        ("policy: {block_status: '0x1FFFFFFFF'}", "policy.block_status: expected a status code"),
        ("trace: {rules: [{number: 8613800138000}]}",
         "trace.rules[0].number: expected a quoted phone number"),
        ("trace: {rules: [{number: '86-138'}]}", "trace.rules[0].number: expected a quoted phone"),
        ("trace: {rules: [{number: '1', expires: 'next week'}]}",
         "trace.rules[0].expires: bad timestamp 'next week'"),
        ('web: {listen: "0.0.0.0:2775"}', "web.listen: 0.0.0.0:2775 clashes with server.listen"),
        ("web: {tls: {cert: a.pem}}", "web.tls.key: required key missing"),
    ],
)  # fmt: skip
def test_bad_file_names_key_path_and_reason(tmp_path, text, expected):
    assert refused(tmp_path, text).startswith(expected)


def test_password_too_long_is_refused_without_echoing_it(tmp_path):
    reason = refused(tmp_path, "ne_accounts: [{system_id: a, password: hunter2hunter2}]")
    assert reason == (
        "ne_accounts[0].password: expected 1 to 8 printable ASCII characters (SMPP limit), "
        "got a string of 14 characters"
    )


def test_unquoted_numeric_password_gets_a_hint(tmp_path):
    reason = refused(tmp_path, "ne_accounts: [{system_id: a, password: 1234}]")
    assert reason.startswith("ne_accounts[0].password: expected")
    assert "1234" not in reason
    assert "quote it in YAML" in reason


def test_bad_database_url_does_not_echo_its_password(tmp_path):
    reason = refused(tmp_path, "database: {url: 'mysql://smps:topsecret@db/smps'}")
    assert "topsecret" not in reason
    assert "mysql://smps:***@db/smps" in reason


def test_missing_file():
    with pytest.raises(ConfigError) as caught:
        config.load("/nonexistent/smps.yaml")
    assert str(caught.value) == "/nonexistent/smps.yaml: file not found"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        config.load(tmp_path)


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    reason = refused(tmp_path, "node:\n  name: a\n  workers: [1, 2\nlog: {}\n")
    assert reason.startswith("line ")
    assert "YAML syntax error: " in reason


def test_yaml_syntax_error_position(tmp_path):
    reason = refused(tmp_path, "node: {name: a}\nlog:\n  level: INFO\n   file: x\n")
    assert reason.startswith("line 4, column 8: YAML syntax error: ")


def test_duplicate_yaml_key_is_refused(tmp_path):
    """PyYAML alone keeps the last of two equal keys; an operator would lose a section."""
    reason = refused(tmp_path, "policy: {timeout: 1s}\nflow: {}\npolicy: {timeout: 2s}\n")
    assert reason == "line 3, column 1: YAML syntax error: duplicate key 'policy'"


@pytest.mark.parametrize(
    ("text", "got"), [("- node\n- log\n", "a list"), ("just text\n", "'just text'")]
)
def test_top_level_must_be_a_mapping(tmp_path, text, got):
    assert refused(tmp_path, text) == f"the top level must be a mapping of sections, got {got}"


def test_not_utf8(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"node: {name: \xff}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(path, env={})


def test_loads_names_its_file_label():
    with pytest.raises(ConfigError) as caught:
        config.loads("smpp: 1", file="inline.yaml")
    assert str(caught.value) == "inline.yaml: smpp: unknown key"
    assert caught.value.file == "inline.yaml" and caught.value.path == "smpp"


def test_yaml_anchors_and_merge_keys_work():
    cfg = config.loads(
        """
        smsc:
          - &smsc {name: a, host: 127.0.0.1, port: 2776, system_id: smps, binds: 2}
          - {<<: *smsc, name: b, port: 2777}
        """,
        env={},
    )
    assert [(s.name, s.port, s.binds) for s in cfg.smsc] == [("a", 2776, 2), ("b", 2777, 2)]


def test_two_yaml_documents_are_refused(tmp_path):
    reason = refused(tmp_path, "node: {}\n---\nlog: {}\n")
    assert reason.startswith("line 2, column 1: YAML syntax error: expected a single document")


def test_names_sharing_one_password_variable_are_refused(tmp_path):
    message = refused(
        tmp_path,
        """
        smsc:
          - {name: smsc-1, host: 127.0.0.1, port: 2776, system_id: a, password: x}
          - {name: smsc_1, host: 127.0.0.1, port: 2777, system_id: b, password: y}
        """,
    )
    assert message == (
        "smsc[1].name: 'smsc_1' and 'smsc-1' share the environment variable "
        "SMPS_SMSC_SMSC_1_PASSWORD"
    )
