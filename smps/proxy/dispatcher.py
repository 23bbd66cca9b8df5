"""The proxy core: every original from an SMSC is copied to the NE accounts its
routes select, their verdicts are combined, and the SMSC gets exactly one answer.

Path of one original (docs/architecture.md §3):

1. `on_message` (the SmscClient handler) reads the PDU through the native
   `decode_sm` view: addresses, esm_class, data_coding, UDH — nothing more.
2. Receipts pass as ALLOW unless `policy.inspect_receipts`; a segment of a
   concatenated message already blocked is blocked again (`sticky`), and so
   are its segments still in flight when one is blocked; a full table of
   originals in flight answers ESME_RTHROTTLED (`overload`).
   The screening engine (`smps.proxy.screening`) judges it then: a rule's
   block is the answer at once and no NE gets a copy (`rule`), so is an
   allow that skips the NEs; an allow or a monitor hit goes on to the NEs
   with the rule's id in its record.
3. The router picks the target accounts; each gets one copy on its bind with
   the most free window. A copy that cannot go now (window full, rate limit)
   waits in its account's bounded queue while its answer can still matter:
   it is withdrawn once the original is decided (a monitor account's copy
   waits on until the deadline: monitors see what they can) and at the
   deadline at the latest. A queued copy holds its original, never a bare
   handle, so nothing in a queue outlives the entry it belongs to.
4. Each NE answer goes into the native pending table, which applies the rule
   (first BLOCK from an enforcing account wins at once; all ALLOW → allow;
   NONE = no answer). The moment the verdict is known, the SMSC is answered.
5. One periodic tick (not a timer per message) expires deadlines: undecided
   originals are answered per `policy.on_timeout`. The tick cannot die: an
   exception is logged, counted (`smps_internal_errors_total`) and the tick
   goes on, since every deadline of the worker hangs on it.
6. When every target has answered or the deadline passed, the decision record
   goes to the sink and the slot is freed. Answers after the verdict are kept
   in the record as late; answers after that are only counted. A monitor account's
   answers are never late (it never decides): they count as monitor answers.

Steps 1 to 4 and 6, and the parts of whole messages, run in the native base class
(`smps._native.dispatch.DispatchCore`): every original and every copy passes there.
This class holds the configuration, the queues, the tick and what is rare.
"""

import asyncio
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from smps._native import pending as P
from smps._native import screen
from smps._native.assembly import Assembly
from smps._native.campaigns import CampaignTable
from smps._native.dispatch import (
    Copy,
    DispatchCore,
    DispatcherStats,
    Lane,
    Original,
    message_key,
    udh_concat,
)
from smps._native.histogram import Histogram
from smps._native.pdu import Status, decode_sm
from smps.config import Config
from smps.proxy.campaigns import NO_CAUSE
from smps.proxy.campaigns import cause_id as campaign_cause
from smps.proxy.flow import ReadPause
from smps.proxy.records import Decision, DecisionSink, MemorySink, NeResult, should_record
from smps.proxy.routing import Router
from smps.proxy.screening import ACTION_NAMES as SCREEN_ACTIONS
from smps.proxy.screening import Screening, VelocityTable
from smps.proxy.sticky import StickyBlocks
from smps.proxy.tracer import Tracer
from smps.proxy.verdicts import OUTCOME_NAMES, OUTCOMES, STATE_NAMES, VerdictPolicy
from smps.smpp.session import NO_RESPONSE, REFUSED, Session

log = logging.getLogger("smps.proxy")

TICK = 0.005  # seconds; keeps the 2 s deadline accurate to well within 20 ms
IDLE_TICK = 0.1  # nothing in flight: the next deadline is at least policy.timeout away
QUEUE_LIMIT = 10_000  # copies waiting per account, beyond which they count as NONE
REASON_RULE = "rule"
PART_AWAY_MARGIN = 1.0  # seconds past the deadline a part forwarded to its owner may wait
_SCREEN_BLOCK, _SCREEN_ALLOW = screen.ACTION_BLOCK, screen.ACTION_ALLOW
_NONE, _ANSWER_UNKNOWN, _ANSWER_LATE = P.NONE, P.ANSWER_UNKNOWN, P.ANSWER_LATE
_ANSWER_COMPLETE = P.ANSWER_COMPLETE


class HeldCopy(msgspec.Struct):
    """A copy waiting in its account's queue for a free window or a token.

    `original` is None once the copy was sent or withdrawn: the entry then only
    waits to reach the head of the queue, where it is dropped unseen."""

    original: Original | None
    handle: int
    index: int
    lane: Lane


class SegmentVotes:
    """The answers of a `segments` account to the parts of one whole message."""

    __slots__ = ("context", "remaining", "response", "status")

    def __init__(self, parts: int, context: Copy):
        self.remaining = parts
        self.context = context  # what the account's one verdict settles, as for a copy
        self.status = 0  # the last answer that was not an allow, else an allow
        self.response: bytes | None = None


class Dispatcher(DispatchCore):
    """Fan-out, verdicts and flow control for the originals of one data plane."""

    def __init__(
        self,
        config: Config,
        accounts: Iterable[Any] | None = None,
        *,
        sink: DecisionSink | None = None,
        tracer: Tracer | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        velocity: VelocityTable | None = None,
    ):
        self.clock = clock
        self.wall_clock = wall_clock
        self.sink = sink if sink is not None else MemorySink()
        self.tracer = tracer
        self._set_record_types(Decision, NeResult, STATE_NAMES)
        self.trace_gate = None if tracer is None else tracer.gate
        self.stats = DispatcherStats()
        self.decision_latency = Histogram()  # original received → verdict sent
        self.lanes: dict[str, Lane] = {}
        self._tick_handle: asyncio.TimerHandle | None = None
        self._idle = False  # the tick runs at IDLE_TICK because nothing is in flight
        self.read_pause = ReadPause()
        # Concatenated originals in flight, by message, for sticky blocking.
        self._concat_in_flight: dict[tuple[bytes, bytes, int], set[int]] = {}
        self._ne_verdict_callback = self._take_ne_verdict  # bound once, not per copy
        self._segment_verdict_callback = self._take_segment_verdict
        self._errors_logged: set[str] = set()  # where an internal error was logged in full
        self.pending = P.PendingTable(config.flow.max_inflight, config.policy.timeout)
        self.screening = Screening(config.screening.velocity_keys, velocity)
        self.assembly = Assembly()
        self.part_router = None  # the worker's mesh, when other workers may own parts
        self._parts_away = {}  # parts sent to their owner worker (DispatchCore)
        self._message_deadlines = []  # heap of (deadline, handle) of whole messages
        # Every whole message by its fingerprint (smps.proxy.campaigns); None: not counted.
        self.campaigns: CampaignTable | None = None
        self.apply_config(config, accounts)

    # ---- configuration -------------------------------------------------------

    def apply_config(self, config: Config, accounts: Iterable[Any] | None = None) -> None:
        """Apply accounts (default: the file's), routes, policy and flow settings
        live; binds stay up."""
        self.config = config
        self.policy = VerdictPolicy(config.policy)
        self.pending.set_timeout(config.policy.timeout)
        self.pending.on_no_answer = self.policy.on_timeout
        self.record_mode = config.database.record
        self._record_all = self.record_mode == "all"
        self._record_non_allow = self.record_mode == "non_allow"
        self._block_codes = self.policy.block_codes
        self._set_outcome_status(self.policy.outcome_status)
        self.sticky = StickyBlocks(config.policy.concat_window)
        self.sticky_enabled = config.policy.concat_sticky_block
        policy = config.policy
        self.assembly.configure(policy.hold, policy.concat_max_held, policy.concat_window)
        self._assembling = policy.concat_max_held > 0
        self._on_incomplete = OUTCOMES.get(policy.on_incomplete)  # None: judge the parts
        self._alphabets = {c.name: (c.default_alphabet, c.gsm7_packed) for c in config.smsc}
        self._show_content = config.trace.decode_content  # a campaign's example text
        self._campaign_rules = {r.id for r in config.screening.rules if r.type == "fingerprint"}
        self.inspect_receipts = config.policy.inspect_receipts
        self.read_pause.configure(config.flow.on_overload == "pause", self.pending.capacity)
        accounts = {a.system_id: a for a in (config.ne_accounts if accounts is None else accounts)}
        for name in list(self.lanes):
            if name not in accounts:
                del self.lanes[name]
        for name, account in accounts.items():
            lane = self.lanes.get(name)
            if lane is None:
                self.lanes[name] = lane = Lane(account)
                lane.cause = campaign_cause(name)
            else:
                lane.configure(account)
        self.router = router = Router(config.routes, self.lanes)
        self._routed = bool(router.routes)
        self._everyone, self._everyone_mask = router.everyone, router.everyone_mask
        self._pause_reads = self.read_pause.enabled
        self.screening.apply(config)
        self._screen = self.screening.engine  # one attribute per original, not two

    def on_bind_change(self, system_id: str, session: Session, up: bool) -> None:
        """BindRegistry listener: NE binds come and go."""
        lane = self.lanes.get(system_id)
        if lane is None:
            return
        if up:
            lane.binds.append(session)
            if lane.waiting:
                self._drain(lane, self.clock())
        elif session in lane.binds:
            lane.binds.remove(session)

    # ---- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._schedule_tick(TICK)

    def _schedule_tick(self, interval: float) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._idle = interval != TICK
        self._tick_handle = asyncio.get_running_loop().call_later(interval, self._on_tick)

    def stop(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    async def drain(self, timeout: float) -> bool:
        """Wait until every original in flight has been answered (graceful stop):
        those awaiting verdicts, the parts held for their message (judged at
        concat_hold at the latest) and those sent to their owner worker."""
        deadline = self.clock() + timeout
        while self._unanswered() and self.clock() < deadline:
            await asyncio.sleep(TICK)
        return not self._unanswered()

    def _unanswered(self) -> int:
        return self.pending.pending_count + len(self.assembly.held) + len(self._parts_away)

    @property
    def in_flight(self) -> int:
        return len(self.pending) + len(self.assembly.held) + len(self._parts_away)

    # ---- originals -------------------------------------------------------------

    def _take_screening(self, original: Original, judged: Any, now: float) -> bool:
        """A screening rule fired (DispatchCore judged it): True when its verdict
        answered the original (a block, or an allow that skips the NEs)."""
        original.rule = judged.rule
        if original.trace is not None:
            original.trace.screened(SCREEN_ACTIONS[judged.action], judged.rule, judged.fired)
        if judged.action == _SCREEN_BLOCK:
            if judged.rule in self._campaign_rules:
                self.stats.campaign_blocks += 1
            self._reply_smsc_now(original, P.OUTCOME_BLOCK, REASON_RULE, now)
            return True
        if judged.action == _SCREEN_ALLOW and judged.skip_ne:
            self._reply_smsc_now(original, P.OUTCOME_ALLOW, REASON_RULE, now)
            return True
        return False

    def _throttled(self, original: Original, now: float) -> None:
        """The table of originals in flight is full: ESME_RTHROTTLED, sent again later."""
        self.stats.throttled += 1
        if original.trace is not None:
            original.trace.dropped("throttled")
        self._reply_smsc_now(original, P.OUTCOME_TEMPFAIL, "overload", now, Status.RTHROTTLED)

    def turn_away(self, session: Session, pdu: bytes) -> None:
        """Answer an original from an SMSC that is being left (stop, standby, an
        SMSC removed) with ESME_RTHROTTLED at once: the SMSC sends it again,
        on another bind or later, and it is never left unanswered in a socket."""
        self.stats.received += 1
        original = Original(session, pdu, decode_sm(pdu), None, None, (), self.wall_clock(),
                            None, None)  # fmt: skip
        self._reply_smsc_now(original, P.OUTCOME_TEMPFAIL, "stopping", self.clock(),
                             Status.RTHROTTLED)  # fmt: skip

    # ---- whole messages (smps.proxy.assembly) ------------------------------------

    def take_remote_part(self, session: Any, pdu: bytes) -> None:
        """A part another worker read, sent here because this worker owns its
        message; ``session`` answers it back there (a mesh RemotePart)."""
        view = decode_sm(pdu)
        concat = udh_concat(view)
        trace = self.tracer.match(view, session.smsc) if self.tracer is not None else None
        if trace is not None:
            trace.received(pdu, view, session.smsc)
        original = Original(session, pdu, view, concat, None, (), self.wall_clock(), trace,
                            None if trace is None else set())  # fmt: skip
        self._hold_part(message_key(original), original, self.clock())

    def part_answered(self, ident: int, status: int) -> None:
        """The owner worker's answer for a part sent to it: answer the SMSC."""
        entry = self._parts_away.pop(ident, None)
        if entry is not None:
            original = entry[0]
            original.session.respond(original.pdu, status)

    def owner_lost(self, link: Any) -> None:
        """The owner worker of some parts went away before answering them: judge
        each alone here (the owner's other parts are gone with it)."""
        now = self.clock()
        for ident, (original, _sent, owner) in list(self._parts_away.items()):
            if owner is link:
                del self._parts_away[ident]
                self._judge_alone(original, now)

    def _judge_alone(self, original: Original, now: float) -> None:
        """A part that cannot meet its message is judged as itself (sticky blocks on)."""
        view = original.view
        if self.sticky_enabled:
            original.concat_key = (view.source_addr, view.destination_addr, original.concat[0])
        self._judge(original, now, now)

    def _send_segments(self, lane: Lane, handle: int, index: int, now: float,
                       original: Original) -> None:  # fmt: skip
        """Each part to a `segments` account, its answers one verdict of the account:
        a block at once, else allow when every part was allowed. A part that finds
        no free window or token now counts as no answer (these copies never queue)."""
        segments = original.session.segments
        votes = SegmentVotes(len(segments), Copy(handle, index, lane, None, True, now, original))
        for pdu in segments:
            bind = lane.pick_bind()
            if bind is None or (lane.tps and not lane.take_token(now)):
                self.stats.queue_dropped += 1
                self._take_segment_verdict(votes, NO_RESPONSE, None)
                continue
            sequence = bind.send(pdu, self._segment_verdict_callback, votes)
            if sequence == REFUSED:
                self._take_segment_verdict(votes, NO_RESPONSE, None)
                continue
            self.stats.copies_sent += 1
            lane.copies_sent += 1
            if original.trace is not None:
                original.trace.copy_sent(lane.system_id, bind.name, 0, sequence, pdu)

    def _take_segment_verdict(self, votes: "SegmentVotes", status: int,
                              response: bytes | None) -> None:  # fmt: skip
        if votes.remaining <= 0:
            return  # the account's verdict is given already
        if status in self._block_codes:
            votes.remaining = 0
        else:
            votes.remaining -= 1
            if status != 0 or votes.status == 0:  # an allow only while all were allows
                votes.status, votes.response = status, response
            if votes.remaining:
                return
            status, response = votes.status, votes.response
        self._take_ne_verdict(votes.context, status, response)

    def _fine_tick(self) -> None:
        if self._idle:
            self._schedule_tick(TICK)  # something waits: back to the fine tick

    def _expire_messages(self, now: float) -> None:
        """Held messages whose concat_hold ran out are judged on their parts; whole
        messages whose deadline (from their first part) passed are answered
        per policy.on_timeout, and parts their owner worker never answered too."""
        assembly = self.assembly
        for key in assembly.due(now):
            self._judge_held(key, assembly.messages[key], now)
        deadlines = self._message_deadlines
        pending = self.pending
        while deadlines and deadlines[0][0] <= now:
            handle = heapq.heappop(deadlines)[1]
            original = pending.context(handle)
            if (
                original is not None
                and original.parts is not None
                and pending.decide(handle, self.policy.on_timeout, P.REASON_TIMEOUT, now)
            ):
                self._reply_smsc(handle, original)
        away = self._parts_away
        limit = now - pending.timeout - PART_AWAY_MARGIN
        while away:
            ident, (original, sent, _owner) = next(iter(away.items()))
            if sent > limit:
                break
            del away[ident]
            self.internal_error("a part's owner worker never answered it")
            self._reply_smsc_now(original, self.policy.on_timeout, "timeout", now)

    def _hold_copy(self, lane: Lane, handle: int, index: int, now: float,
                   original: Original) -> None:  # fmt: skip
        """A copy that cannot go now waits in its account's queue, or counts as NONE
        when the account has no bind or its queue is full."""
        if not lane.binds or lane.waiting >= QUEUE_LIMIT:
            self.stats.queue_dropped += 1
            if original.trace is not None:
                original.trace.dropped("no bind" if not lane.binds else "queue full",
                                       lane.system_id)  # fmt: skip
            self._settle_target(lane, handle, index, P.NONE, 0, now, original)
            return
        copy = HeldCopy(original, handle, index, lane)
        if original.held is None:
            original.held = [copy]
        else:
            original.held.append(copy)
        queue = lane.queue
        if len(queue) >= 2 * QUEUE_LIMIT:  # mostly copies already gone: compact it
            lane.queue = queue = deque(c for c in queue if c.original is not None)
        queue.append(copy)
        lane.waiting += 1

    def _drain(self, lane: Lane, now: float) -> None:
        """Send queued copies while the account has window and tokens. A copy's
        original is still undecided here (or has only monitor targets): decided
        and expired originals took their copies out of the count already."""
        queue = lane.queue
        while queue:
            copy = queue[0]
            original = copy.original
            if original is None:  # sent or withdrawn already
                queue.popleft()
                continue
            session = lane.pick_bind()
            if session is None or not lane.take_token(now):
                return
            queue.popleft()
            copy.original = None
            lane.waiting -= 1
            self._transmit(session, lane, copy.handle, copy.index, original.pdu, now, original,
                           False)  # fmt: skip

    def _withdraw_held(self, original: Original, now: float, decided: bool) -> None:
        """Take the original's copies still waiting out of their queues.

        `decided`: the verdict is known, so the copies of enforcing accounts
        would change nothing; each counts as that account's NONE, which may
        complete the entry. Monitor accounts' copies wait on. Otherwise the
        entry is complete (its deadline passed) and every copy goes.
        """
        still_held = []
        gone = []
        for copy in original.held:
            if copy.original is None:
                continue  # sent already
            if decided and not copy.lane.decisive:
                still_held.append(copy)
            else:
                copy.original = None
                copy.lane.waiting -= 1
                gone.append(copy)
        original.held = still_held or None
        trace = original.trace
        if not decided:
            self.stats.queue_dropped += len(gone)
            if trace is not None:
                for copy in gone:
                    trace.dropped("waited past the deadline", copy.lane.system_id)
            return
        self.stats.withdrawn += len(gone)
        for copy in gone:
            if trace is not None:
                trace.dropped("not sent: the verdict was known", copy.lane.system_id)
            # NONE for the account that was never asked: the entry completes now,
            # not at its deadline (an answer to a complete entry changes nothing).
            result = self.pending.answer(copy.handle, copy.index, _NONE, 0, now)
            if result == _ANSWER_UNKNOWN:
                continue
            if trace is not None:
                original.answered.add(copy.lane.system_id)
            if result & _ANSWER_COMPLETE:
                self._complete(copy.handle, original)

    def _retry(self, lane: Lane, handle: int, index: int, now: float) -> bool:
        """The bind dropped with this copy outstanding: send it once more on
        another bind of the account, if one is free and time remains."""
        original = self.pending.context(handle)
        other = lane.pick_bind()
        if original is None or other is None:
            return False
        if now >= self.pending.arrived_at(handle) + self.pending.timeout:
            return False
        self.stats.retried += 1
        self._transmit(other, lane, handle, index, original.pdu, now, original, True)
        return True

    def _trace_ne_verdict(self, original, lane, state, status, response, latency, result) -> None:
        late = bool(result & _ANSWER_LATE)
        latency_ms = round(latency * 1000, 3) if latency is not None else 0.0
        reason = "" if response is not None else "bind dropped, or no bind or window in time"
        original.trace.answered(lane.system_id, status, STATE_NAMES[state], latency_ms, late,
                                response, reason=reason)  # fmt: skip
        original.answered.add(lane.system_id)

    # ---- verdicts --------------------------------------------------------------

    def _reply_smsc_now(self, original: Original, outcome: int, reason: str, now: float,
                        status: int | None = None) -> None:  # fmt: skip
        """Answer without involving the NEs (receipt, sticky, a screening rule, no NE,
        overload, stopping): no pending entry, the record made here."""
        if status is None:
            status = self.policy.status_for(outcome)
        response = original.session.respond(original.pdu, status)
        self.decision_latency.observe(self.clock() - now)
        verdict = OUTCOME_NAMES[outcome]
        trace = original.trace
        if trace is not None:
            trace.final(status, verdict, reason, response)
            trace.close()
        self.stats.decided(verdict, reason)
        if original.fingerprint and self.campaigns is not None:
            self._count_campaign(original, outcome, original.rule)
        if original.parts is not None:
            self.assembly.decided(original.session.key, outcome, status, now)
        if outcome == P.OUTCOME_BLOCK:
            self._block_message(original.concat_key, now)
        rule = original.rule
        if should_record(self.record_mode, verdict, reason, trace is not None, rule is not None):
            self.sink.put(
                self._decision(original, self.wall_clock(), verdict, reason, status, None, [])
            )

    def _block_message(self, key: tuple | None, now: float, handle: int = -1) -> None:
        """A segment of a concatenated message was blocked: remember the message
        for policy.concat_window, and block its other segments still in flight."""
        if key is None:  # not a segment, or concat_sticky_block is off
            return
        self.sticky.add(key, now)
        for other in list(self._concat_in_flight.get(key, ())):
            if other != handle and self.pending.decide(
                other, P.OUTCOME_BLOCK, P.REASON_STICKY, now
            ):
                self._reply_smsc(other, self.pending.context(other))

    def _count_campaign(self, original: Original, outcome: int, cause: str | None) -> None:
        """One whole message in the campaign table, with what decided it (a rule id
        or an NE account's name; None: nothing in particular)."""
        self._count_campaign_as(
            original, outcome, NO_CAUSE if cause is None else campaign_cause(cause)
        )

    def _close_trace(self, handle: int, original: Original) -> None:
        """Targets that never answered get their timeout event, then the trace is flushed."""
        for target, (_state, _status, latency_us, _late) in zip(
            original.targets, self.pending.targets(handle), strict=True
        ):
            if target.system_id not in original.answered:
                original.trace.answered(target.system_id, 0, "none", latency_us / 1000, False,
                                        None, reason="timeout")  # fmt: skip
        original.trace.close()

    # ---- periodic work -----------------------------------------------------------

    def _on_tick(self) -> None:
        self.tick()
        self._schedule_tick(TICK if self.in_flight else IDLE_TICK)

    def tick(self) -> None:
        """Answer the originals whose deadline passed, then send what the lanes
        can take; never raises, since every deadline of the data plane hangs on
        it. Each original is guarded on its own: one that raises is counted and
        freed, and the others are still answered. (Tests call it directly.)"""
        try:
            now = self.clock()
            if self.assembly.messages or self._parts_away:
                self._expire_messages(now)
            for handle, needs_answer in self.pending.expire(now):
                original = self.pending.context(handle)
                try:
                    if original.held is not None:  # before the answer: past the deadline
                        self._withdraw_held(original, now, False)
                    if needs_answer:
                        self._reply_smsc(handle, original)
                    self._complete(handle, original)
                except Exception:
                    self.internal_error("answering an original at its deadline")
                    if self.pending.context(handle) is not None:
                        self.pending.release(handle)
            for lane in self.lanes.values():
                if lane.queue:  # also clears copies gone already off the head
                    self._drain(lane, now)
        except Exception:
            self.internal_error("the deadline tick")

    def internal_error(self, where: str) -> None:
        """A bug caught where it would have stopped the data plane: counted
        (smps_internal_errors_total), logged in full the first time for each
        place, then only counted; the caller carries on."""
        self.stats.internal_errors += 1
        if where in self._errors_logged:
            log.debug("internal error in %s", where, exc_info=True)
            return
        self._errors_logged.add(where)
        log.exception("internal error in %s (counted in smps_internal_errors_total; "
                      "later ones at this place are only counted)", where)  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.stats.received,
            "in_flight": len(self.pending),
            "copies_sent": self.stats.copies_sent,
            "late_answers": self.stats.late_answers,
            "throttled": self.stats.throttled,
            "queue_dropped": self.stats.queue_dropped,
            "withdrawn": self.stats.withdrawn,
            "internal_errors": self.stats.internal_errors,
            "decisions": {f"{v}/{r}": n for (v, r), n in sorted(self.stats.decisions.items())},
        }
