"""The screening engine's parts on their own: entries and their normalisation, content
in every encoding, URL domains, special SMS, rule order, and the velocity table
that the workers of a node share (real processes, real shared memory)."""

import mmap
import os
import struct

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from smps import config as config_module
from smps._native import screen, text
from smps._native.fingerprint import fingerprint
from smps._native.pdu import decode_sm as view_of
from smps._native.pdu import encode
from smps._native.velocity import VelocityTable, velocity_table_size
from smps.errors import ConfigError
from smps.proxy import screening

NOW = 1_000_000_000  # ms


def engine(rules, country_code="86", keys=4096):
    cfg = config_module.loads(
        yaml.safe_dump(
            {
                "trace": {"country_code": country_code},
                "screening": {"enabled": True, "rules": rules},
            }
        )
    )
    return screening.build_engine(cfg, screening.private_velocity_table(keys))


def sm(source=b"8613811112222", destination=b"8613911112222", ud=b"hello", **fields):
    base = {"source_addr_ton": 1, "source_addr_npi": 1, "dest_addr_ton": 1, "dest_addr_npi": 1}
    base.update(fields)
    return view_of(
        encode(
            0x05,
            1,
            {**base, "source_addr": source, "destination_addr": destination, "short_message": ud},
        )
    )


def fired(e, view, now=NOW, count=True):
    judged = e.judge(view, "smsc1", now, count)
    return None if judged is None else (judged.action, judged.rule)


# ---- lists ------------------------------------------------------------------------------


def test_list_entries_match_every_form_of_a_number_under_the_country_code():
    e = engine([{"id": "deny", "type": "list", "field": "source",
                 "entries": ["+8613800000666", "prefix:86170", "FakeBank"]}])  # fmt: skip
    block = (screen.ACTION_BLOCK, "deny")
    assert fired(e, sm(b"8613800000666")) == block
    assert fired(e, sm(b"013800000666", source_addr_ton=2)) == block  # national, trunk 0
    assert fired(e, sm(b"13800000666", source_addr_ton=0)) == block  # TON 0, national length
    assert fired(e, sm(b"8617099999999")) == block  # the prefix
    assert fired(e, sm(b"FAKEBANK", source_addr_ton=5, source_addr_npi=0)) == block
    assert fired(e, sm(b"fakebank", source_addr_ton=5, source_addr_npi=0)) == block
    assert fired(e, sm(b"8613800000667")) is None
    assert fired(e, sm(b"FakeBank2", source_addr_ton=5, source_addr_npi=0)) is None
    # The destination is not the field of this rule.
    assert fired(e, sm(destination=b"8613800000666")) is None


def test_a_list_file_of_a_hundred_thousand_entries(tmp_path):
    """Its load time is measured in bench/test_screening_bench.py."""
    path = tmp_path / "deny.txt"
    path.write_text("# senders\n" + "".join(f"86138{i:08d}\n" for i in range(100_000)))
    e = engine([{"id": "deny", "type": "list", "field": "source", "file": str(path)}])
    assert fired(e, sm(b"8613800099999")) == (screen.ACTION_BLOCK, "deny")
    assert fired(e, sm(b"8613900099999")) is None


def test_an_allow_list_entry_skips_the_rules_after_it():
    e = engine([
        {"id": "vip", "type": "list", "field": "destination", "entries": ["prefix:8613999"],
         "action": "allow", "skip_ne": True},
        {"id": "words", "type": "keyword", "patterns": ["free"]},
    ])  # fmt: skip
    judged = e.judge(sm(destination=b"8613999000000", ud=b"free"), "smsc1", NOW)
    assert (judged.action, judged.rule, judged.skip_ne) == (screen.ACTION_ALLOW, "vip", True)
    assert fired(e, sm(ud=b"free")) == (screen.ACTION_BLOCK, "words")


# ---- content ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ud", "data_coding", "esm_class"),
    [
        (text.gsm7_encode("FREE iPhone"), 0, 0),
        ("Free İphone? ﬁne".encode("utf-16-be"), 0x08, 0),
        ("😀 free iphone 😀".encode("utf-16-be"), 0x08, 0),  # surrogate pairs
        ("Ça, free iphone".encode("latin-1"), 0x03, 0),
        (bytes([5, 0, 3, 7, 2, 1]) + text.gsm7_encode("free iphone"), 0, 0x40),  # after a UDH
    ],
)
def test_keywords_match_case_folded_decoded_text(ud, data_coding, esm_class):
    e = engine([{"id": "words", "type": "keyword", "patterns": ["free iphone", "ﬁne"]}])
    assert fired(e, sm(ud=ud, data_coding=data_coding, esm_class=esm_class)) == (
        screen.ACTION_BLOCK,
        "words",
    )


def test_gsm7_extension_characters_are_text_not_escapes():
    e = engine([{"id": "euro", "type": "keyword", "patterns": ["100€ {now}"]}])
    assert fired(e, sm(ud=text.gsm7_encode("only 100€ {now}"))) == (screen.ACTION_BLOCK, "euro")


def test_regexes_and_a_rule_limited_to_a_sender_prefix():
    e = engine([{"id": "loan", "type": "regex", "patterns": [r"loan\s+at\s+\d+%"],
                 "scope": {"source": ["prefix:86138"]}}])  # fmt: skip
    assert fired(e, sm(ud=b"LOAN at 5%")) == (screen.ACTION_BLOCK, "loan")
    assert fired(e, sm(b"8613911112222", ud=b"LOAN at 5%")) is None  # outside the scope
    assert fired(e, sm(ud=b"loan soon")) is None


def test_binary_data_has_no_text_to_match():
    e = engine([{"id": "words", "type": "keyword", "patterns": ["free"]}])
    assert fired(e, sm(ud=b"free", data_coding=0x04)) is None


# ---- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "domains"),
    [
        ("go to http://x.bad.example/path?q=1 now", ["x.bad.example"]),
        ("hxxps://bad[.]example", ["bad.example"]),
        ("bad(.)example and bad{dot}example", ["bad.example", "bad.example"]),
        ("www.Example.com. Then 1.5 kg, v2.0 and a.b", ["www.example.com"]),
        ("mail me: me@host.example", ["host.example"]),
        ("no domain here", []),
    ],
)
def test_domains_in_text(message, domains):
    assert screen.find_domains(message.casefold()) == domains


def test_url_rules_match_a_domain_and_its_subdomains_only():
    e = engine([{"id": "urls", "type": "url", "entries": ["https://Bad.example/x"]}])
    assert fired(e, sm(ud=b"see x.y.bad.example/z")) == (screen.ACTION_BLOCK, "urls")
    assert fired(e, sm(ud=b"see notbad.example")) is None
    assert fired(e, sm(ud=b"see example")) is None


@given(st.text(max_size=300))
def test_domain_finding_and_fingerprints_take_any_text(message):
    for domain in screen.find_domains(message.casefold()):
        labels = domain.split(".")
        assert len(labels) >= 2 and all(labels), domain
    assert 0 <= fingerprint(message) < 1 << 64


# ---- special SMS ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "kinds"),
    [
        ({"protocol_id": 0x40}, screen.SPECIAL_SILENT),
        ({"data_coding": 0x10}, screen.SPECIAL_FLASH),
        ({"data_coding": 0xF0}, screen.SPECIAL_FLASH),
        ({"data_coding": 0x04}, screen.SPECIAL_BINARY),
        ({"data_coding": 0xF6}, screen.SPECIAL_BINARY),
        ({"protocol_id": 0x7F}, screen.SPECIAL_WAP_PUSH),
        (
            {"esm_class": 0x40, "short_message": bytes([6, 5, 4, 0x0B, 0x84, 0x23, 0xF0, 1])},
            screen.SPECIAL_WAP_PUSH,
        ),
        ({"esm_class": 0x40, "short_message": bytes([9, 9])}, 0),  # malformed UDH: nothing
        ({"data_coding": 0x08}, 0),
        ({}, 0),
    ],
)
def test_special_kinds(fields, kinds):
    ud = fields.pop("short_message", b"x")
    assert screen.special_kinds(sm(ud=ud, **fields)) == kinds


# ---- velocity ---------------------------------------------------------------------------


def test_velocity_counts_what_passes_and_a_test_counts_nothing():
    e = engine([{"id": "flood", "type": "velocity", "key": "source", "limit": 3,
                 "window": "10s"}])  # fmt: skip
    view = sm()
    assert fired(e, view, count=False) is None
    assert [fired(e, view) for _ in range(4)][-2:] == [None, (screen.ACTION_BLOCK, "flood")]
    assert fired(e, view, count=False) == (screen.ACTION_BLOCK, "flood")
    assert fired(e, view, NOW + 10_001) is None  # the window passed
    assert fired(e, sm(b"8613811119999")) is None  # another sender


def test_a_message_another_rule_blocks_uses_up_no_allowance():
    e = engine([
        {"id": "words", "type": "keyword", "patterns": ["spam"]},
        {"id": "per-sender", "type": "velocity", "key": "source", "limit": 2, "window": "60s"},
        {"id": "per-pair", "type": "velocity", "key": "pair", "limit": 1, "window": "60s"},
    ])  # fmt: skip
    for _ in range(5):
        assert fired(e, sm(ud=b"spam")) == (screen.ACTION_BLOCK, "words")
    assert fired(e, sm()) is None
    # per-pair blocks the second: per-sender's count of it is given back.
    assert fired(e, sm()) == (screen.ACTION_BLOCK, "per-pair")
    assert fired(e, sm(destination=b"8613911110000")) is None  # per-sender: 2nd
    assert fired(e, sm(destination=b"8613911110001")) == (screen.ACTION_BLOCK, "per-sender")


def test_fingerprint_velocity_sees_one_campaign_in_many_codes():
    e = engine([{"id": "wave", "type": "velocity", "key": "fingerprint", "limit": 2,
                 "window": "60s"}])  # fmt: skip
    results = [fired(e, sm(ud=f"Your code {n} expires".encode())) for n in range(3)]
    assert results == [None, None, (screen.ACTION_BLOCK, "wave")]


def test_a_fingerprint_rule_blocks_a_campaign_in_any_code_and_nothing_else():
    campaign = fingerprint("your code 1234 expires, see bad.example/x7gh2")
    e = engine([{"id": "wave", "type": "fingerprint", "entries": [f"{campaign:016X}"]}])
    wave = [
        b"Your code 99 expires, see bad.example/Qq91",
        b"YOUR CODE 5 EXPIRES, SEE BAD.EXAMPLE/a",
    ]
    assert [fired(e, sm(ud=ud)) for ud in wave] == [(screen.ACTION_BLOCK, "wave")] * 2
    assert fired(e, sm(ud=b"Your parcel expires")) is None


def _hammer(memory: mmap.mmap, key: int, tries: int) -> int:
    table = VelocityTable(memory)
    return sum(table.take(key, NOW, 60_000, 1500) for _ in range(tries))


def test_the_shared_table_is_exact_across_processes():
    size = velocity_table_size(4096)
    memory = mmap.mmap(-1, size)  # MAP_SHARED: children of a fork share it
    VelocityTable(memory, True)
    readers = []
    for _ in range(4):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.write(write, struct.pack("I", _hammer(memory, 42, 1000)))
            os._exit(0)
        os.close(write)
        readers.append((pid, read))
    passed = 0
    for pid, read in readers:
        passed += struct.unpack("I", os.read(read, 4))[0]
        os.waitpid(pid, 0)
        os.close(read)
    assert passed == 1500
    assert VelocityTable(memory).count(42, NOW, 60_000) == 1500


def test_memory_stays_bounded_under_millions_of_senders():
    table = VelocityTable(mmap.mmap(-1, velocity_table_size(1024)), True)
    for key in range(1, 200_001):
        table.take(key * 0x9E3779B97F4A7C15 % (1 << 64) or 1, NOW, 60_000, 5)
    assert table.used(NOW) <= table.capacity == 1024
    assert table.evictions > 0


def test_a_lock_held_by_a_dead_process_is_taken_over():
    memory = mmap.mmap(-1, velocity_table_size(1024))
    table = VelocityTable(memory, True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    header = 64  # Header, then one Lock (64 octets) per stripe: key % stripes
    stripes = 1024 // 64
    memory[header + (7 % stripes) * 64 : header + (7 % stripes) * 64 + 4] = struct.pack("I", pid)
    assert table.take(7, NOW, 1000, 1)
    assert table.stolen_locks == 1


def test_a_table_of_another_size_is_refused():
    memory = mmap.mmap(-1, velocity_table_size(1024))
    with pytest.raises(ValueError, match="no table"):
        VelocityTable(memory)


# ---- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "regex", "patterns": ["a(b"]}, "rules[0].patterns[0]: 'a(b' is not a valid"),
        ({"type": "keyword", "patterns": ["x"], "limit": 3}, "rules[0].limit: does not apply"),
        ({"type": "velocity", "key": "source", "limit": 3}, "rules[0].window: a velocity rule"),
        ({"type": "list", "field": "source", "entries": ["prefix:ab"]}, "entries[0]: 'prefix:ab'"),
        ({"type": "list", "entries": ["1"]}, "rules[0].field: a list rule needs field"),
        ({"type": "url", "entries": ["not a domain"]}, "entries[0]: 'not a domain': not a"),
        ({"type": "special", "kinds": []}, "rules[0].kinds: a special rule needs"),
        ({"type": "keyword", "patterns": ["x"], "skip_ne": True}, "skip_ne: applies to allow"),
        ({"type": "fingerprint", "entries": []}, "rules[0].entries: a fingerprint rule needs"),
        ({"type": "fingerprint", "entries": ["abc"]}, "entries[0]: 'abc': not a fingerprint"),
        ({"type": "fingerprint", "entries": ["a" * 16], "patterns": ["x"]}, "patterns: does not"),
    ],
)
def test_bad_rules_are_refused_with_the_key(rule, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config_module.loads(yaml.safe_dump({"screening": {"rules": [{"id": "r", **rule}]}}))


def test_a_bad_line_in_a_list_file_is_refused_with_its_number(tmp_path):
    path = tmp_path / "deny.txt"
    path.write_text("8613800000001\nprefix:xx\n")
    rules = [{"id": "r", "type": "list", "field": "source", "file": str(path)}]
    with pytest.raises(ConfigError, match=r"rules\[0\]\.file: .*deny.txt line 2: 'prefix:xx'"):
        config_module.loads(yaml.safe_dump({"screening": {"rules": rules}}))


def test_duplicate_rule_ids_are_refused():
    rules = [{"id": "r", "type": "special", "kinds": ["silent"]}] * 2
    with pytest.raises(ConfigError, match=r"rules\[1\]\.id: duplicate rule id 'r'"):
        config_module.loads(yaml.safe_dump({"screening": {"rules": rules}}))


def test_screening_off_or_no_enabled_rule_builds_no_engine():
    assert engine([{"id": "r", "type": "special", "kinds": ["silent"], "enabled": False}]) is None
    cfg = config_module.loads(
        "screening: {enabled: false, rules: [{id: r, type: special, kinds: [silent]}]}"
    )
    assert screening.build_engine(cfg, screening.private_velocity_table(1024)) is None


def test_totals_survive_a_rebuild_of_the_engine():
    """A configuration change rebuilds the engine: hits, originals judged and the
    velocity counts carry over (Prometheus counters never go back)."""
    rules = [{"id": "flood", "type": "velocity", "key": "source", "limit": 1, "window": "60s"}]
    cfg = config_module.loads(yaml.safe_dump({"screening": {"enabled": True, "rules": rules}}))
    stage = screening.Screening(1024)
    stage.apply(cfg)
    engine = stage.engine
    for _ in range(3):
        engine.judge(sm(), "smsc1", NOW)
    rules[0]["description"] = "edited"  # a change of the rules: a new engine
    stage.apply(
        config_module.loads(yaml.safe_dump({"screening": {"enabled": True, "rules": rules}}))
    )
    assert stage.engine is not engine
    assert stage.hits() == {("flood", "block"): 2}
    assert stage.judged()[0] == 3
    assert fired(stage.engine, sm()) == (screen.ACTION_BLOCK, "flood")  # the count carried over
    assert stage.hits() == {("flood", "block"): 3}


class VelocityModel(RuleBasedStateMachine):
    """The shared table against a plain model: per key, the bucket of every message
    counted; a message counts while its bucket is one of the window's last ten."""

    WINDOW = 1_000  # ms: buckets of 100 ms
    LIMIT = 5

    def __init__(self):
        super().__init__()
        self.table = VelocityTable(mmap.mmap(-1, velocity_table_size(4096)), True)
        self.now = NOW
        self.counted: dict[int, list[int]] = {}

    def _bucket(self) -> int:
        return self.now // (self.WINDOW // 10)

    def _count(self, key: int) -> int:
        current = self._bucket()
        return sum(1 for b in self.counted.get(key, []) if current - b < 10)

    @rule(ms=st.integers(0, 1_500))
    def time_passes(self, ms):
        self.now += ms

    @rule(key=st.integers(1, 4))
    def take(self, key):
        expected = self._count(key) < self.LIMIT
        assert self.table.take(key, self.now, self.WINDOW, self.LIMIT) == expected
        if expected:
            self.counted.setdefault(key, []).append(self._bucket())

    @rule(key=st.integers(1, 4))
    def give_back(self, key):
        self.table.give_back(key, self.now, self.WINDOW)
        mine = self.counted.get(key, [])
        if self._bucket() in mine:
            mine.remove(self._bucket())

    @invariant()
    def counts_agree(self):
        for key in range(1, 5):
            assert self.table.count(key, self.now, self.WINDOW) == self._count(key)


TestVelocityModel = VelocityModel.TestCase


def test_a_short_window_key_never_takes_the_slot_of_a_live_long_window_key():
    """Each slot's age is read in its own rule's buckets (found by fuzz/screen.py: a
    10 s key took the slot of a 1 h key still counting, as if it were idle)."""
    table = VelocityTable(mmap.mmap(-1, velocity_table_size(64)), True)  # one stripe
    assert table.take(1, NOW, 3_600_000, 1)  # the 1 h key, first slot of its probe
    assert table.take(65, NOW + 20_000, 10_000, 5)  # a 10 s key that probes that slot first
    assert table.count(1, NOW + 20_000, 3_600_000) == 1
    assert not table.take(1, NOW + 20_000, 3_600_000, 1)
    assert table.evictions == 0


def test_the_engine_is_built_again_only_when_what_it_is_made_of_changed(tmp_path):
    """An NE account or a route changing keeps the engine (building one reads every
    list file); the rules, the country code or a list file on disk changing does not."""
    deny = tmp_path / "deny.txt"
    deny.write_text("8613800000001\n")
    screening_section = {"enabled": True, "rules": [
        {"id": "deny", "type": "list", "field": "source", "file": str(deny)}]}  # fmt: skip

    def config(**more):
        return config_module.loads(yaml.safe_dump({"screening": screening_section, **more}))

    stage = screening.Screening(1024)
    stage.apply(config())
    first = stage.engine
    stage.apply(config(ne_accounts=[{"system_id": "ne1", "password": "pw"}]))
    assert stage.engine is first
    deny.write_text("8613800000001\n8613800000002\n")
    stage.apply(config())
    assert stage.engine is not first
    assert fired(stage.engine, sm(b"8613800000002")) == (screen.ACTION_BLOCK, "deny")
    second = stage.engine
    stage.apply(config(trace={"country_code": "86"}))
    assert stage.engine is not second
