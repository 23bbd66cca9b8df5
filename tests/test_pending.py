"""The table of originals in flight: rule, lifecycle, deadlines, handles, capacity."""

import random

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from smps._native import pending as P
from smps._native.pending import (
    ALLOW,
    ANSWER_COMPLETE,
    ANSWER_DECIDED,
    ANSWER_LATE,
    ANSWER_PENDING,
    ANSWER_UNKNOWN,
    BLOCK,
    NONE,
    OUTCOME_ALLOW,
    OUTCOME_BLOCK,
    OUTCOME_TEMPFAIL,
    WAITING,
    PendingTable,
)

T0 = 1000.0
TIMEOUT = 2.0
ALL = 0b111  # three decisive targets


@pytest.fixture
def table():
    return PendingTable(16, TIMEOUT)


def test_first_block_decides_at_once_while_others_wait(table):
    h = table.add(T0, "ctx", 3, ALL)
    assert table.answer(h, 0, ALLOW, 0, T0 + 0.01) == ANSWER_PENDING
    assert table.answer(h, 1, BLOCK, 0x66, T0 + 0.02) == ANSWER_DECIDED
    assert table.outcome(h) == OUTCOME_BLOCK
    assert P.reason_name(table.reason(h)) == "block"
    assert table.deciding_target(h) == 1
    assert table.decided_at(h) == T0 + 0.02
    assert table.pending_count == 0
    assert not table.is_complete(h)  # target 2 is still waiting
    assert table.targets(h) == [
        (ALLOW, 0, 10_000, False),
        (BLOCK, 0x66, 20_000, False),
        (WAITING, 0, 0, False),
    ]


def test_verdict_is_outcome_reason_and_decision_time_in_one(table):
    h = table.add(T0, None, 2, 0b11)
    with pytest.raises(ValueError):
        table.verdict(h)  # not decided yet
    table.answer(h, 1, BLOCK, 0x66, T0 + 0.25)
    assert table.verdict(h) == (OUTCOME_BLOCK, P.REASON_BLOCK, 0.25)
    assert table.verdict(h) == (table.outcome(h), table.reason(h),
                                table.decided_at(h) - table.arrived_at(h))  # fmt: skip


def test_all_allow_decides_at_the_last_allow(table):
    h = table.add(T0, None, 3, ALL)
    assert table.answer(h, 2, ALLOW, 0, T0 + 0.1) == ANSWER_PENDING
    assert table.answer(h, 0, ALLOW, 0, T0 + 0.2) == ANSWER_PENDING
    assert table.answer(h, 1, ALLOW, 0, T0 + 0.3) == ANSWER_DECIDED | ANSWER_COMPLETE
    assert table.outcome(h) == OUTCOME_ALLOW
    assert P.reason_name(table.reason(h)) == "all_allow"
    assert table.deciding_target(h) == 1
    table.release(h)
    assert len(table) == 0


def test_a_monitor_targets_block_never_decides(table):
    h = table.add(T0, None, 2, 0b01)  # target 1 is in monitor mode
    assert table.answer(h, 1, BLOCK, 0x66, T0 + 0.1) == ANSWER_PENDING
    assert not table.is_decided(h)
    assert table.answer(h, 0, ALLOW, 0, T0 + 0.2) == ANSWER_DECIDED | ANSWER_COMPLETE
    assert table.outcome(h) == OUTCOME_ALLOW
    assert table.targets(h)[1] == (BLOCK, 0x66, 100_000, False)  # recorded all the same


def test_monitor_answers_wait_for_the_decisive_ones(table):
    h = table.add(T0, None, 3, 0b100)
    assert table.answer(h, 0, ALLOW, 0, T0) == ANSWER_PENDING
    assert table.answer(h, 1, ALLOW, 0, T0) == ANSWER_PENDING
    assert table.answer(h, 2, BLOCK, 0x66, T0) == ANSWER_DECIDED | ANSWER_COMPLETE
    assert table.deciding_target(h) == 2


@pytest.mark.parametrize("on_no_answer", [OUTCOME_ALLOW, OUTCOME_BLOCK, OUTCOME_TEMPFAIL])
def test_none_counts_as_no_answer(on_no_answer):
    table = PendingTable(4, TIMEOUT, on_no_answer=on_no_answer)
    h = table.add(T0, None, 3, ALL)
    assert table.answer(h, 0, NONE, 0x08, T0 + 0.1) == ANSWER_PENDING
    assert table.answer(h, 1, ALLOW, 0, T0 + 0.2) == ANSWER_PENDING
    assert table.answer(h, 2, ALLOW, 0, T0 + 0.3) == ANSWER_DECIDED | ANSWER_COMPLETE
    assert table.outcome(h) == on_no_answer
    assert P.reason_name(table.reason(h)) == "timeout"
    assert table.deciding_target(h) == -1
    assert table.targets(h)[0] == (NONE, 0x08, 100_000, False)


def test_block_still_wins_after_a_none(table):
    h = table.add(T0, None, 2, 0b11)
    assert table.answer(h, 0, NONE, 0, T0) == ANSWER_PENDING
    assert table.answer(h, 1, BLOCK, 0x66, T0) == ANSWER_DECIDED | ANSWER_COMPLETE
    assert table.outcome(h) == OUTCOME_BLOCK


def test_expiry_at_exactly_the_timeout_in_arrival_order():
    table = PendingTable(8, TIMEOUT, on_no_answer=OUTCOME_TEMPFAIL)
    first = table.add(T0, "a", 2, 0b11)
    second = table.add(T0 + 0.5, "b", 1, 0b1)
    third = table.add(T0 + 0.5, "c", 1, 0b1)
    table.answer(first, 0, ALLOW, 0, T0 + 0.1)
    assert table.expire(T0 + TIMEOUT - 1e-6) == []
    assert table.expire(T0 + TIMEOUT) == [(first, True)]
    assert table.outcome(first) == OUTCOME_TEMPFAIL
    assert P.reason_name(table.reason(first)) == "timeout"
    assert table.decided_at(first) == T0 + TIMEOUT
    assert table.targets(first) == [(ALLOW, 0, 100_000, False), (NONE, 0, 2_000_000, False)]
    assert table.is_complete(first)
    assert table.pending_count == 2
    assert table.expire(T0 + 0.5 + TIMEOUT) == [(second, True), (third, True)]
    assert table.expire(T0 + 100) == []
    assert table.pending_count == 0
    assert [table.context(h) for h in (first, second, third)] == ["a", "b", "c"]


def test_decided_entry_completes_at_the_deadline_with_late_answers():
    table = PendingTable(8, TIMEOUT)
    h = table.add(T0, None, 3, ALL)
    assert table.answer(h, 0, BLOCK, 0x66, T0 + 0.1) == ANSWER_DECIDED
    assert table.answer(h, 1, ALLOW, 0, T0 + 0.5) == ANSWER_LATE
    assert table.expire(T0 + TIMEOUT) == [(h, False)]  # answered already: only record it
    assert table.outcome(h) == OUTCOME_BLOCK
    assert table.decided_at(h) == T0 + 0.1
    assert table.targets(h) == [
        (BLOCK, 0x66, 100_000, False),
        (ALLOW, 0, 500_000, True),
        (NONE, 0, 2_000_000, False),
    ]
    # The deadline closed the entry: a straggler changes nothing.
    assert table.answer(h, 2, ALLOW, 0, T0 + 2.1) == ANSWER_UNKNOWN
    assert table.targets(h)[2] == (NONE, 0, 2_000_000, False)


def test_late_answers_complete_a_decided_entry():
    table = PendingTable(8, TIMEOUT)
    h = table.add(T0, None, 2, 0b11)
    assert table.answer(h, 1, BLOCK, 0x66, T0) == ANSWER_DECIDED
    assert table.answer(h, 0, ALLOW, 0, T0 + 1) == ANSWER_LATE | ANSWER_COMPLETE
    assert table.expire(T0 + TIMEOUT) == []  # completed early: not on the deadline list
    table.release(h)


def test_completed_entries_leave_the_deadline_list_out_of_order():
    table = PendingTable(8, TIMEOUT)
    handles = [table.add(T0 + i * 0.1, i, 1, 1) for i in range(5)]
    for i in (0, 2, 4):
        assert table.answer(handles[i], 0, ALLOW, 0, T0 + 1) & ANSWER_COMPLETE
        table.release(handles[i])
    assert table.expire(T0 + 10) == [(handles[1], True), (handles[3], True)]
    table.add(T0 + 10, "new", 1, 1)  # the list still links correctly
    assert len(table.expire(T0 + 20)) == 1


def test_stale_handles_are_unknown_after_release_and_reuse():
    table = PendingTable(1, TIMEOUT)
    old = table.add(T0, "old", 1, 1)
    table.answer(old, 0, ALLOW, 0, T0)
    table.release(old)
    assert table.answer(old, 0, ALLOW, 0, T0) == ANSWER_UNKNOWN
    assert table.context(old) is None
    new = table.add(T0 + 1, "new", 1, 1)
    assert new != old and new & 0xFFFFFFFF == old & 0xFFFFFFFF  # same slot, new generation
    assert table.answer(old, 0, BLOCK, 0x66, T0 + 1) == ANSWER_UNKNOWN
    assert not table.is_decided(new)
    assert table.context(new) == "new"
    for bogus in (-1, new + 1, new ^ (1 << 40)):
        assert table.answer(bogus, 0, ALLOW, 0, T0) == ANSWER_UNKNOWN
    with pytest.raises(KeyError):
        table.release(old)
    with pytest.raises(KeyError):
        table.outcome(old)


def test_a_repeated_answer_from_one_target_is_ignored(table):
    h = table.add(T0, None, 2, 0b11)
    assert table.answer(h, 0, ALLOW, 0, T0 + 0.1) == ANSWER_PENDING
    assert table.answer(h, 0, BLOCK, 0x66, T0 + 0.2) == ANSWER_UNKNOWN
    assert not table.is_decided(h)
    assert table.targets(h)[0] == (ALLOW, 0, 100_000, False)


def test_full_table_refuses_and_frees_on_release():
    table = PendingTable(2, TIMEOUT)
    a = table.add(T0, None, 1, 1)
    table.add(T0, None, 1, 1)
    assert table.add(T0, None, 1, 1) == -1
    assert len(table) == 2
    table.answer(a, 0, ALLOW, 0, T0)
    assert table.add(T0, None, 1, 1) == -1  # complete is not free: release frees
    table.release(a)
    assert table.add(T0, None, 1, 1) >= 0


def test_decide_imposes_a_verdict_once(table):
    h = table.add(T0, "only monitors", 2, 0)
    assert table.decide(h, OUTCOME_ALLOW, P.REASON_NO_NE, T0) is True
    assert table.decide(h, OUTCOME_BLOCK, P.REASON_OVERLOAD, T0) is False
    assert P.reason_name(table.reason(h)) == "no_ne"
    assert table.deciding_target(h) == -1
    # Monitor answers are recorded as late; the last one completes the entry.
    assert table.answer(h, 0, BLOCK, 0x66, T0 + 0.1) == ANSWER_LATE
    assert table.answer(h, 1, ALLOW, 0, T0 + 0.2) == ANSWER_LATE | ANSWER_COMPLETE
    assert table.outcome(h) == OUTCOME_ALLOW


def test_decide_before_any_answer_makes_later_answers_late(table):
    h = table.add(T0, None, 1, 1)
    assert table.decide(h, OUTCOME_TEMPFAIL, P.REASON_OVERLOAD, T0)
    assert table.answer(h, 0, BLOCK, 0x66, T0 + 0.1) == ANSWER_LATE | ANSWER_COMPLETE
    assert table.outcome(h) == OUTCOME_TEMPFAIL
    assert table.targets(h) == [(BLOCK, 0x66, 100_000, True)]


def test_an_original_without_targets_completes_at_its_deadline(table):
    h = table.add(T0, None, 0, 0)
    assert table.decide(h, OUTCOME_ALLOW, P.REASON_STICKY, T0)
    assert table.expire(T0 + TIMEOUT) == [(h, False)]
    assert table.targets(h) == []


def test_thirty_two_targets():
    table = PendingTable(1, TIMEOUT)
    h = table.add(T0, None, P.MAX_TARGETS, 0xFFFFFFFF)
    for target in range(P.MAX_TARGETS - 1):
        assert table.answer(h, target, ALLOW, 0, T0) == ANSWER_PENDING
    assert table.answer(h, 31, ALLOW, 0, T0) == ANSWER_DECIDED | ANSWER_COMPLETE


def test_a_new_timeout_applies_to_entries_in_flight():
    table = PendingTable(4, TIMEOUT)
    old = table.add(T0, None, 1, 1)
    table.set_timeout(0.5)
    new = table.add(T0 + 0.1, None, 1, 1)
    assert table.expire(T0 + 0.6) == [(old, True), (new, True)]


def test_on_no_answer_is_read_when_deciding():
    table = PendingTable(4, TIMEOUT)
    h = table.add(T0, None, 1, 1)
    table.on_no_answer = OUTCOME_BLOCK
    table.expire(T0 + TIMEOUT)
    assert table.outcome(h) == OUTCOME_BLOCK


def test_refuses_caller_mistakes(table):
    h = table.add(T0, None, 2, 0b11)
    with pytest.raises(IndexError):
        table.answer(h, 2, ALLOW, 0, T0)
    with pytest.raises(ValueError):
        table.answer(h, 0, WAITING, 0, T0)
    with pytest.raises(ValueError):
        table.release(h)  # not complete: the original still needs its answer
    with pytest.raises(ValueError):
        table.outcome(h)  # not decided yet
    with pytest.raises(ValueError):
        table.add(T0, None, 2, 0b100)  # mask names a third target
    with pytest.raises(ValueError):
        table.add(T0, None, 33, 0)
    with pytest.raises(ValueError):
        table.decide(h, 0, P.REASON_NO_NE, T0)
    with pytest.raises(ValueError):
        table.decide(h, OUTCOME_ALLOW, 99, T0)
    with pytest.raises(ValueError):
        table.on_no_answer = 7
    with pytest.raises(ValueError):
        table.set_timeout(0)
    with pytest.raises(ValueError):
        PendingTable(0, TIMEOUT)
    with pytest.raises(ValueError):
        PendingTable(1, float("nan"))


def test_rules_and_names():
    assert P.rule_by_name("block_first").name == "block_first"
    assert isinstance(PendingTable(1, TIMEOUT).rule, P.BlockFirst)
    with pytest.raises(ValueError, match="block_first"):
        P.rule_by_name("majority")
    with pytest.raises(TypeError):
        P.Rule()
    names = [P.reason_name(code) for code in range(P.REASON_BLOCK, P.REASON_STICKY + 1)]
    assert names == ["block", "all_allow", "timeout", "no_ne", "overload", "sticky"]
    with pytest.raises(ValueError):
        P.reason_name(0)


def test_hundred_thousand_in_flight_fit_and_release_cleanly():
    n = 100_000
    table = PendingTable(n, TIMEOUT)
    handles = [table.add(T0 + i * 1e-5, i, 3, 0b111) for i in range(n)]
    assert min(handles) >= 0 and len(set(handles)) == n
    assert table.add(T0 + 1, None, 1, 1) == -1
    assert len(table) == n == table.pending_count
    expired = table.expire(T0 + 10)
    assert [h for h, _ in expired] == handles
    assert all(needs_answer for _, needs_answer in expired)
    for h in handles:
        table.release(h)
    assert len(table) == 0 and table.pending_count == 0
    assert all(table.add(T0 + 11, None, 1, 1) >= 0 for _ in range(n))


# --------------------------------------------------------------------------
# Random interleavings: every original is decided exactly once and completed
# exactly once, whatever the order of answers, deadlines and releases.


def expected_verdict(states, decisive, on_no_answer):
    """The block_first rule, written plainly, over the answers so far."""
    decisive_states = [s for i, s in enumerate(states) if decisive >> i & 1]
    if BLOCK in decisive_states:
        return OUTCOME_BLOCK
    if WAITING in decisive_states:
        return None
    return on_no_answer if NONE in decisive_states else OUTCOME_ALLOW


class Caller:
    """Plays the proxy: counts every decision and completion the table reports."""

    def __init__(self, capacity, on_no_answer=OUTCOME_ALLOW):
        self.table = PendingTable(capacity, TIMEOUT, on_no_answer=on_no_answer)
        self.on_no_answer = on_no_answer
        self.now = T0
        self.live = {}  # handle -> model: n_targets, decisive, states
        self.completed = []  # complete, not yet released
        self.released = []
        self.decisions = {}
        self.completions = {}

    def add(self, n_targets, decisive):
        h = self.table.add(self.now, ("ctx", n_targets), n_targets, decisive)
        if h < 0:
            assert len(self.table) == self.table.capacity
            return None
        assert h not in self.decisions
        self.live[h] = [n_targets, decisive, [WAITING] * n_targets]
        self.decisions[h] = 0
        self.completions[h] = 0
        if not decisive:
            assert self.table.decide(h, OUTCOME_ALLOW, P.REASON_NO_NE, self.now)
            self.decisions[h] += 1
        return h

    def answer(self, h, target, state, status=0):
        before = self.table.is_decided(h) if h in self.live else None
        result = self.table.answer(h, target, state, status, self.now)
        model = self.live.get(h)
        if model is None:
            assert result == ANSWER_UNKNOWN
            return
        states = model[2]
        if states[target] != WAITING:
            assert result == ANSWER_UNKNOWN
            return
        states[target] = state
        kind = result & ~ANSWER_COMPLETE
        if before:
            assert kind == ANSWER_LATE
        else:
            verdict = expected_verdict(states, model[1], self.on_no_answer)
            if verdict is None:
                assert kind == ANSWER_PENDING
            else:
                assert kind == ANSWER_DECIDED
                assert self.table.outcome(h) == verdict
                self.decisions[h] += 1
        assert bool(result & ANSWER_COMPLETE) == (WAITING not in states)
        if result & ANSWER_COMPLETE:
            self.complete(h)

    def complete(self, h):
        self.completions[h] += 1
        assert self.table.is_complete(h) and self.table.is_decided(h)
        self.completed.append(h)

    def advance(self, seconds):
        self.now += seconds
        expired = self.table.expire(self.now)
        for h, needs_answer in expired:
            assert self.table.arrived_at(h) + TIMEOUT <= self.now
            if needs_answer:
                assert P.reason_name(self.table.reason(h)) == "timeout"
                self.decisions[h] += 1
            self.live[h][2] = [s if s != WAITING else NONE for s in self.live[h][2]]
            self.complete(h)
        arrivals = [self.table.arrived_at(h) for h, _ in expired]
        assert arrivals == sorted(arrivals)

    def release(self, index):
        h = self.completed.pop(index % len(self.completed))
        assert [s for s, *_ in self.table.targets(h)] == self.live[h][2]
        self.table.release(h)
        del self.live[h]
        self.released.append(h)
        assert self.table.answer(h, 0, ALLOW, 0, self.now) == ANSWER_UNKNOWN

    def check_counts(self):
        assert len(self.table) == len(self.live)
        undecided = [h for h in self.live if not self.table.is_decided(h)]
        assert self.table.pending_count == len(undecided)

    def finish(self):
        self.advance(TIMEOUT)
        while self.completed:
            self.release(0)
        assert len(self.table) == 0 and self.table.pending_count == 0
        assert set(self.decisions.values()) <= {1}
        assert set(self.completions.values()) <= {1}
        assert len(self.released) == len(self.decisions)


@pytest.mark.parametrize("seed", range(5))
def test_random_interleavings_over_thousands_of_entries(seed):
    rnd = random.Random(seed)
    caller = Caller(capacity=64, on_no_answer=rnd.choice([OUTCOME_ALLOW, OUTCOME_TEMPFAIL]))
    for _ in range(20_000):
        roll = rnd.random()
        if roll < 0.25:
            n = rnd.randint(0, 5)
            caller.add(n, rnd.getrandbits(n) if n else 0)
        elif roll < 0.75 and caller.live:
            h = rnd.choice(list(caller.live))
            n = caller.live[h][0]
            if n:
                state = rnd.choices([ALLOW, BLOCK, NONE], [6, 1, 1])[0]
                caller.answer(h, rnd.randrange(n), state)
        elif roll < 0.85:
            caller.advance(rnd.choice([0.0, 0.005, 0.01, 0.3]))
        elif caller.completed:
            caller.release(rnd.randrange(len(caller.completed)))
        caller.check_counts()
    caller.finish()
    assert len(caller.released) > 2_000


class PendingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.caller = Caller(capacity=8)

    @rule(n=st.integers(0, 4), data=st.data())
    def add(self, n, data):
        self.caller.add(n, data.draw(st.integers(0, (1 << n) - 1)))

    @precondition(lambda self: self.caller.live)
    @rule(data=st.data(), state=st.sampled_from([ALLOW, BLOCK, NONE]))
    def answer(self, data, state):
        h = data.draw(st.sampled_from(sorted(self.caller.live)))
        n = self.caller.live[h][0]
        if n:
            self.caller.answer(h, data.draw(st.integers(0, n - 1)), state)

    @precondition(lambda self: self.caller.released)
    @rule(data=st.data())
    def answer_stale(self, data):
        h = data.draw(st.sampled_from(self.caller.released))
        assert self.caller.table.answer(h, 0, BLOCK, 0, self.caller.now) == ANSWER_UNKNOWN

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    def advance(self, seconds):
        self.caller.advance(seconds)

    @precondition(lambda self: self.caller.completed)
    @rule(index=st.integers(0, 100))
    def release(self, index):
        self.caller.release(index)

    @invariant()
    def counts(self):
        self.caller.check_counts()

    def teardown(self):
        self.caller.finish()


TestPendingMachine = PendingMachine.TestCase
