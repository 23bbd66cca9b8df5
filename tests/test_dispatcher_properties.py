"""The real Dispatcher under random interleavings (hypothesis, stateful).

Sessions are in memory: NE binds with windows that fill, a session queue that
refuses when full, binds that drop (failing what they had outstanding, as a
closed connection does) and join; the clock is manual and the deadline tick is
called directly. Whatever happens, each original gets exactly one answer, none
later than its deadline, and once every deadline has passed nothing is left in
flight or queued. The originals include the parts of long messages, in any
order, repeated or missing, judged as whole messages (NE accounts taking them
as one copy or as parts) or alone when the held messages are at their limit:
the parts of one message all get the same answer unless some were judged alone.
"""

from collections import deque

import yaml
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from smps import config as config_module
from smps._native import text
from smps._native.pdu import CommandId, Status, encode, header, make_resp
from smps.proxy.dispatcher import TICK, Dispatcher
from smps.smpp.session import NO_RESPONSE, QUEUED, REFUSED

BLOCK = 0x66
ACCOUNTS = ("antispam", "fraud", "audit")
SESSION_QUEUE_LIMIT = 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SmscSession:
    """What the dispatcher uses of an SMSC bind: it answers originals on it."""

    smsc = "smsc1"
    name = "smsc1"
    is_open = True

    def __init__(self) -> None:
        self.answers: dict[int, list[int]] = {}
        self.paused = False

    def respond(self, request: bytes, status: int = 0, message_id: bytes = b"") -> bytes:
        self.answers.setdefault(header(request)[3], []).append(status)
        return make_resp(request, status, message_id)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class NeBind:
    """What the dispatcher uses of an NE bind: window, queue, send, and the
    callbacks a real session makes (exactly once per request sent or queued)."""

    def __init__(self, system_id: str, window: int):
        self.system_id = system_id
        self.name = f"ne:{system_id}"
        self.window = window
        self.is_open = True
        self.refusing = False  # send() refuses as a session closing under us does
        self.outstanding: dict[int, tuple] = {}
        self.queue: deque[tuple] = deque()
        self._next_seq = 1

    @property
    def free_window(self) -> int:
        return self.window - len(self.outstanding) - len(self.queue)

    def send(self, pdu: bytes, callback, context=None) -> int:
        if not self.is_open or self.refusing:
            return REFUSED
        if len(self.outstanding) < self.window and not self.queue:
            return self._transmit(pdu, callback, context)
        if len(self.queue) >= SESSION_QUEUE_LIMIT:
            return REFUSED
        self.queue.append((pdu, callback, context))
        return QUEUED

    def _transmit(self, pdu, callback, context) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self.outstanding[seq] = (pdu, callback, context)
        return seq

    def answer(self, seq: int, status: int) -> None:
        pdu, callback, context = self.outstanding.pop(seq)
        callback(context, status, make_resp(pdu, status))
        while self.queue and len(self.outstanding) < self.window:
            self._transmit(*self.queue.popleft())

    def time_out(self) -> None:
        """The session's response timer: every outstanding copy gets NO_RESPONSE."""
        for seq in list(self.outstanding):
            _pdu, callback, context = self.outstanding.pop(seq)
            callback(context, NO_RESPONSE, None)

    def drop(self, dispatcher: Dispatcher) -> None:
        """The connection closes: it leaves the lane first, then fails what it had."""
        self.is_open = False
        dispatcher.on_bind_change(self.system_id, self, False)
        outstanding, self.outstanding = self.outstanding, {}
        queued, self.queue = self.queue, deque()
        for _pdu, callback, context in outstanding.values():
            callback(context, NO_RESPONSE, None)
        for _pdu, callback, context in queued:
            callback(context, NO_RESPONSE, None)


def make_config(timeout: str, modes: dict[str, str], max_inflight: int, on_overload: str,
                concat: dict[str, str], policy: dict):  # fmt: skip
    sections = {
        "ne_accounts": [
            {
                "system_id": name,
                "password": "pw",
                "window": 2,
                "mode": modes[name],
                "concat": concat[name],
            }
            for name in ACCOUNTS
        ],
        "policy": {"timeout": timeout, **policy},
        "flow": {"max_inflight": max_inflight, "on_overload": on_overload},
        "database": {"record": "all"},
    }
    return config_module.loads(yaml.safe_dump(sections), file="<property test>")


def originals():
    """PDUs an SMSC may send: plain messages, and the segments of two long ones."""
    plain = [{"short_message": b"hello"}, {"short_message": b"WIN A PRIZE"}]
    segments = []
    for ref in (7, 8):
        _coding, parts = text.split("spam " * 70, ref=ref)
        segments += [{"short_message": part, "esm_class": 0x40} for part in parts]
    return plain + segments


ORIGINALS = originals()
PARTS_OF_FIRST = 2 + len(text.split("spam " * 70, ref=7)[1])  # ORIGINALS past it: ref 8


class DispatcherMachine(RuleBasedStateMachine):
    @initialize(
        max_inflight=st.integers(2, 12),
        on_overload=st.sampled_from(["throttle", "pause"]),
        monitor=st.sampled_from([None, *ACCOUNTS]),
        segments=st.sampled_from([None, *ACCOUNTS]),
        on_incomplete=st.sampled_from(["judge_parts", "allow", "tempfail"]),
        max_held=st.sampled_from([100_000, 1, 0]),
    )
    def start(self, max_inflight, on_overload, monitor, segments, on_incomplete, max_held):
        self.modes = {name: "monitor" if name == monitor else "enforce" for name in ACCOUNTS}
        self.concat = {name: "segments" if name == segments else "message" for name in ACCOUNTS}
        self.policy = {"on_incomplete": on_incomplete, "concat_max_held": max_held}
        self.timeout = 2.0
        self.max_inflight = max_inflight
        self.on_overload = on_overload
        self.clock = Clock()
        self.started = self.clock.now
        self.config = make_config("2s", self.modes, max_inflight, on_overload, self.concat,
                                  self.policy)  # fmt: skip
        self.dispatcher = Dispatcher(self.config, clock=self.clock, wall_clock=self.clock)
        self.smsc = SmscSession()
        self.binds: list[NeBind] = []
        self.arrived: dict[int, float] = {}  # sequence -> arrival
        self.message_of: dict[int, tuple] = {}  # sequence -> (source, ref) of a part
        self.next_seq = 1

    # ---- the SMSC ------------------------------------------------------------

    @rule(
        which=st.lists(st.integers(0, len(ORIGINALS) - 1), min_size=1, max_size=6),
        source=st.sampled_from([b"111", b"222"]),
    )
    def originals(self, which, source):
        """A burst: enough to fill windows, so copies wait in the lanes' queues."""
        for index in which:
            seq = self.next_seq
            self.next_seq += 1
            fields = {"source_addr": source, "destination_addr": b"999", **ORIGINALS[index]}
            self.arrived[seq] = self.clock.now
            if "esm_class" in ORIGINALS[index]:
                self.message_of[seq] = (source, index >= PARTS_OF_FIRST)
            self.dispatcher.on_message(self.smsc, encode(CommandId.DELIVER_SM, seq, fields))
        if any(lane.waiting for lane in self.dispatcher.lanes.values()):
            event("copies waiting in a lane queue")

    # ---- NE binds --------------------------------------------------------------

    @rule(account=st.sampled_from(ACCOUNTS), window=st.integers(1, 3))
    def bind_joins(self, account, window):
        bind = NeBind(account, window)
        self.binds.append(bind)
        self.dispatcher.on_bind_change(account, bind, True)
        if bind.outstanding:
            event("a joining bind took queued copies")

    @precondition(lambda self: any(b.is_open for b in self.binds))
    @rule(data=st.data())
    def bind_drops(self, data):
        bind = data.draw(st.sampled_from([b for b in self.binds if b.is_open]))
        bind.drop(self.dispatcher)

    @precondition(lambda self: any(b.is_open for b in self.binds))
    @rule(data=st.data(), refusing=st.booleans())
    def bind_refuses(self, data, refusing):
        bind = data.draw(st.sampled_from([b for b in self.binds if b.is_open]))
        bind.refusing = refusing

    @precondition(lambda self: any(b.outstanding for b in self.binds))
    @rule(data=st.data(), status=st.sampled_from([Status.ROK, BLOCK, Status.RSYSERR]))
    def ne_answers(self, data, status):
        bind = data.draw(st.sampled_from([b for b in self.binds if b.outstanding]))
        seq = data.draw(st.sampled_from(sorted(bind.outstanding)))
        withdrawn = self.dispatcher.stats.withdrawn
        bind.answer(seq, status)
        if self.dispatcher.stats.withdrawn > withdrawn:
            event("queued copies withdrawn by a verdict")

    @precondition(lambda self: any(b.outstanding for b in self.binds))
    @rule(data=st.data())
    def ne_times_out(self, data):
        data.draw(st.sampled_from([b for b in self.binds if b.outstanding])).time_out()

    # ---- time and configuration ------------------------------------------------

    @rule(seconds=st.sampled_from([TICK, 0.1, 0.5, 1.0, 2.5]))
    def time_passes(self, seconds):
        self.clock.now += seconds
        waiting = sum(lane.waiting for lane in self.dispatcher.lanes.values())
        self.dispatcher.tick()
        if waiting and not sum(lane.waiting for lane in self.dispatcher.lanes.values()):
            event("queued copies gone at a deadline")
        for seq, arrived in self.arrived.items():
            if arrived + self.timeout <= self.clock.now:
                assert seq in self.smsc.answers, f"original {seq} unanswered past its deadline"

    @rule(
        timeout=st.sampled_from(["1s", "2s"]),
        monitor=st.sampled_from([None, *ACCOUNTS]),
        drop_account=st.sampled_from([None, *ACCOUNTS]),
    )
    def reconfigure(self, timeout, monitor, drop_account):
        modes = {name: "monitor" if name == monitor else "enforce" for name in ACCOUNTS}
        self.config = make_config(timeout, modes, self.max_inflight, self.on_overload,
                                  self.concat, self.policy)  # fmt: skip
        accounts = [a for a in self.config.ne_accounts if a.system_id != drop_account]
        self.dispatcher.apply_config(self.config, accounts)
        self.timeout = self.config.policy.timeout

    # ---- what must always hold ---------------------------------------------------

    @invariant()
    def answered_at_most_once(self):
        twice = {seq: s for seq, s in self.smsc.answers.items() if len(s) > 1}
        assert not twice, f"originals answered more than once: {twice}"

    @invariant()
    def parts_of_a_message_get_one_answer(self):
        """Unless parts were judged alone (held messages at their limit) or the run
        outlived the window in which a decided message's verdict is remembered."""
        stats = self.dispatcher.stats
        if stats.concat_overflow or not self.policy["concat_max_held"]:
            return
        if self.clock.now - self.started >= self.config.policy.concat_window:
            return
        by_message: dict[tuple, set[int]] = {}
        for seq, message in self.message_of.items():
            statuses = self.smsc.answers.get(seq)
            if statuses and statuses[0] not in (Status.RTHROTTLED, 0x64):
                by_message.setdefault(message, set()).add(statuses[0])
        split = {m: s for m, s in by_message.items() if len(s) > 1}
        assert not split, f"parts of one message answered differently: {split}"

    @invariant()
    def no_internal_error(self):
        assert self.dispatcher.stats.internal_errors == 0

    @invariant()
    def queues_count_what_waits(self):
        for lane in self.dispatcher.lanes.values():
            live = sum(1 for copy in lane.queue if copy.original is not None)
            assert lane.waiting == live

    def teardown(self):
        if not hasattr(self, "dispatcher"):
            return
        self.clock.now += self.timeout + TICK
        self.dispatcher.tick()
        assert set(self.smsc.answers) == set(self.arrived)
        assert all(len(s) == 1 for s in self.smsc.answers.values())
        assert self.dispatcher.in_flight == 0
        assert all(lane.waiting == 0 for lane in self.dispatcher.lanes.values())
        # Answers arriving now, for entries long gone, change nothing.
        for bind in self.binds:
            for seq in list(bind.outstanding):
                bind.answer(seq, BLOCK)
        assert all(len(s) == 1 for s in self.smsc.answers.values())
        assert self.dispatcher.stats.internal_errors == 0


DispatcherMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_dispatcher_properties = DispatcherMachine.TestCase
