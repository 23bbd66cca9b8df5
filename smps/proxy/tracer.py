"""Protocol tracing: chosen numbers, followed PDU by PDU through the proxy.

Call sequence (the dispatcher, for each original it reads)::

    trace = tracer.match(view, smsc)          # None for untraced: stop here
    if trace is not None:
        trace.received(pdu, view, smsc)       # the deliver_sm / data_sm from the SMSC
        trace.copy_sent(account, bind, worker, sequence, copy_pdu)   # per copy sent
        trace.dropped(reason, account=...)    # per copy that never went (queue full...)
        trace.answered(account, status, verdict, latency_ms, late, resp_pdu)  # per answer
        trace.answered(account, 0, "none", latency_ms, False, None, reason="timeout")
                                              # no answer: deadline, bind dropped
        trace.final(status, verdict, reason, resp_pdu)   # the resp sent to the SMSC
        trace.close()                         # decision complete: events go to the sink

A whole message (`smps.proxy.assembly`) has one trace: its first part's
`received`, each later part's `part_received`, then `held(present, total,
waited_ms)`, the copies and answers as above, `part_answered(part, status,
resp_pdu)` as each part is answered, and `final`.

`trace.dropped(reason)` without an account is the whole original refused
(throttled...), followed by `final` with the status sent. Keep the Trace on
the in-flight original; a call after `close()` goes to the sink directly.

Matching costs one call for an untraced message, whatever the rule count:
each address as sent is looked up in a set of every raw form that can
normalise (`smps.proxy.trace_match`) to a rule's number (``N``, ``+N``, ``00N``, ``0`` + national,
national) and its first octets in a set of the raw forms of every prefix cut
to the shortest; a number in neither cannot match and is neither normalised
nor decoded. One that passes is normalised and looked up in a dict of exact
numbers, then in a dict of prefixes per distinct prefix length.
Expiry is checked only for rules that matched; `prune_expired()` drops them.

The events (`smps.proxy.records`), the rule index and number normalisation
(`smps.proxy.trace_match`), concatenated parts (`smps.proxy.trace_concat`) and
how a PDU is shown (`smps.proxy.trace_render`) have modules of their own.
"""

import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

from smps._native import text
from smps._native.numbers import SENDER, AddressGate, normalise_address
from smps.config import Config, TraceRule
from smps.proxy.records import ConcatInfo, TraceEvent, TraceSink
from smps.proxy.trace_concat import CONCAT_LIMIT, CONCAT_TTL, ConcatTracker, concat_of
from smps.proxy.trace_match import RuleIndex, epoch_us
from smps.proxy.trace_render import render_pdu, udh_info


def _now_us() -> int:
    return time.time_ns() // 1000


class Tracer:
    """Trace rules of one worker, and the factory of `Trace` objects."""

    def __init__(
        self,
        sink: TraceSink,
        rules: Iterable[TraceRule] = (),
        *,
        decode_content: bool = False,
        country_code: str = "",
        node: str = "smps",
        worker: int = 0,
        clock: Callable[[], int] = _now_us,
        concat_ttl: float = CONCAT_TTL,
        concat_limit: int = CONCAT_LIMIT,
    ):
        self.sink = sink
        self.clock = clock
        self._ids = itertools.count(1)
        self._id_prefix = f"{node}-{worker}-{clock():x}-"
        self._alphabets: dict[str, tuple[str, bool]] = {}
        self.concat = ConcatTracker(int(concat_ttl * 1e6), concat_limit)
        self._index: RuleIndex
        # Which originals may be traced, from their addresses as sent; the dispatcher
        # asks it before calling match (smps._native.dispatch).
        self.gate = AddressGate()
        self.set_rules(rules, decode_content, country_code)

    @classmethod
    def from_config(cls, config: Config, sink: TraceSink, *, worker: int = 0, **kwargs: Any):
        tracer = cls(sink, node=config.node.name, worker=worker, **kwargs)
        tracer.apply_config(config)
        return tracer

    def apply_config(self, config: Config) -> None:
        """Rules, content policy and each SMSC's default alphabet, live."""
        self._alphabets = {s.name: (s.default_alphabet, s.gsm7_packed) for s in config.smsc}
        trace = config.trace
        self.set_rules(trace.rules, trace.decode_content, trace.country_code)

    def set_rules(
        self, rules: Iterable[TraceRule], decode_content_default: bool, country_code: str
    ) -> None:
        """Replace every rule at once; a message in `match` sees old or new, never a mix."""
        self._index = index = RuleIndex(rules, decode_content_default, country_code)
        sender, receiver = index.sender, index.receiver
        self.gate.load(sender.raw, sender.raw_stems, sender.raw_stem,
                       receiver.raw, receiver.raw_stems, receiver.raw_stem)  # fmt: skip

    @property
    def rules(self) -> tuple[TraceRule, ...]:
        return self._index.rules

    def prune_expired(self) -> int:
        """Drop expired rules (they already stopped matching); returns how many."""
        index = self._index
        now = self.clock()
        live = [r for r in index.rules if r.expires is None or epoch_us(r.expires) > now]
        dropped = len(index.rules) - len(live)
        if dropped:
            self.set_rules(live, index.decode_default, index.country_code.decode())
        return dropped

    def match(self, view: Any, smsc: str) -> "Trace | None":
        """A Trace when a live rule selects this original, else None."""
        source, destination = view.source_addr, view.destination_addr
        sides = self.gate.sides(source, destination)
        if not sides:
            return None  # the 99 % case: neither address can normalise to a rule's number
        index = self._index
        sender, receiver = index.sender, index.receiver
        cc = index.country_code
        src = normalise_address(source, view.source_addr_ton, view.source_addr_npi, cc)
        dst = normalise_address(destination, view.dest_addr_ton, view.dest_addr_npi, cc)
        hits = (sender.find(src) or ()) if sides & SENDER else ()
        found = receiver.find(dst)
        if found:
            hits += found
        if not hits:
            return None
        now = self.clock()
        live = [rule for rule in hits if rule.expires_us is None or rule.expires_us > now]
        if not live:
            return None
        return Trace(
            self,
            f"{self._id_prefix}{next(self._ids)}",
            smsc,
            src.decode("latin-1"),
            dst.decode("latin-1"),
            source.decode("latin-1"),
            destination.decode("latin-1"),
            all(rule.decode_content for rule in live),
            sorted({rule.number for rule in live}),
        )

    def alphabet(self, smsc: str) -> tuple[str, bool]:
        """(default_alphabet, gsm7_packed) for data_coding 0 from this SMSC."""
        return self._alphabets.get(smsc, ("gsm7", False))


class Trace:
    """The events of one traced original, kept until `close()`."""

    __slots__ = ("_events", "_last_pdu", "_last_rendered", "closed", "content", "destination",
                 "destination_raw", "message_id", "rules", "smsc", "source", "source_raw",
                 "tracer")  # fmt: skip

    def __init__(self, tracer, message_id, smsc, source, destination, source_raw,
                 destination_raw, content, rules):  # fmt: skip
        self.tracer = tracer
        self.message_id = message_id
        self.smsc = smsc
        self.source = source
        self.destination = destination
        self.source_raw = source_raw
        self.destination_raw = destination_raw
        self.content = content  # content decoding allowed for this message
        self.rules = rules
        self.closed = False
        self._events: list[TraceEvent] = []
        self._last_pdu: bytes | None = None
        self._last_rendered: dict[str, Any] = {}

    def received(self, pdu: bytes, view: Any, smsc: str, kind: str = "received") -> None:
        """The original as read from the SMSC; a whole message's later parts are
        ``part_received`` (a traced message has one ``received``, its first event)."""
        extra: dict[str, Any] = {"rules": self.rules}
        if self.content:
            alphabet, packed = self.tracer.alphabet(smsc)
            decoded = text.decode(view.user_data, view.data_coding, view.esm_class,
                                  default_alphabet=alphabet, gsm7_packed=packed)  # fmt: skip
            extra.update(text=decoded.text, encoding=decoded.encoding,
                         note=decoded.note or None, udh=udh_info(decoded.udh))  # fmt: skip
        concat = concat_of(view)
        if concat is not None:
            extra.update(self._link(concat, view, smsc))
        self._add(kind, "smsc->smps", pdu, **extra)

    def copy_sent(self, account: str, bind: str, worker: int, sequence: int, pdu: bytes) -> None:
        self._add("copy_sent", "smps->ne", pdu, account=account, bind=bind, worker=worker,
                  sequence=sequence)  # fmt: skip

    def answered(
        self,
        account: str,
        status: int,
        verdict: str,
        latency_ms: float,
        late: bool,
        pdu: bytes | None,
        reason: str = "",
    ) -> None:
        """An NE's answer; pdu None = no answer (deadline, bind dropped: say which in reason)."""
        kind = "answered" if pdu is not None else "timeout"
        self._add(kind, "ne->smps", pdu, account=account, status=status, verdict=verdict,
                  latency_ms=latency_ms, late=late, reason=reason or None)  # fmt: skip

    def final(self, status: int, verdict: str, reason: str, pdu: bytes) -> None:
        """The response sent to the SMSC."""
        self._add("final", "smps->smsc", pdu, status=status, verdict=verdict, reason=reason)

    def screened(self, action: str, rule: str, fired: list[str]) -> None:
        """The screening rules fired on it: ``rule`` decided (or, with ``action``
        monitor, was the first of the monitor rules that fired)."""
        others = [r for r in fired if r != rule]
        also = f" (also fired: {', '.join(others)})" if others else ""
        self._add("screened", "smps", None, verdict=action, reason=f"rule {rule}{also}")

    def held(self, present: int, total: int, waited_ms: float) -> None:
        """A whole message's parts waited for each other; judged now as one."""
        missing = "" if present == total else f", judged without the {total - present} missing"
        self._add("held", "smps", None, latency_ms=waited_ms,
                  reason=f"{present} of {total} parts held {waited_ms:g} ms{missing}")  # fmt: skip

    def part_answered(self, part: int, status: int, pdu: bytes | None) -> None:
        """One part's response to the SMSC, with its message's verdict (pdu None: the
        part came over another worker's bind, which answered it)."""
        self._add("part_answered", "smps->smsc", pdu, status=status, reason=f"part {part}")

    def dropped(self, reason: str, account: str | None = None) -> None:
        """A copy (with account) or the original itself was not handled: throttled, queue full."""
        self._add("dropped", "smps", None, account=account, reason=reason)

    def close(self) -> None:
        """The decision is complete: hand the events to the sink."""
        if self.closed:
            return
        self.closed = True
        put = self.tracer.sink.put
        for event in self._events:
            put(event)
        self._events.clear()

    def _add(self, kind: str, direction: str, pdu: bytes | None, **extra: Any) -> None:
        if pdu is not None:
            if pdu != self._last_pdu:  # copies are the original's bytes: rendered once
                self._last_pdu = pdu
                self._last_rendered = render_pdu(pdu, self.content)
            sequence, status = extra.get("sequence"), extra.get("status")
            extra.update(self._last_rendered)
            if sequence is not None:
                extra["sequence"] = sequence
            if status is not None:
                extra["status"] = status
        event = TraceEvent(
            message_id=self.message_id,
            ts_us=self.tracer.clock(),
            kind=kind,
            direction=direction,
            smsc=self.smsc,
            source_addr=self.source,
            destination_addr=self.destination,
            source_addr_raw=self.source_raw,
            destination_addr_raw=self.destination_raw,
            content=self.content,
            **extra,
        )
        if self.closed:
            self.tracer.sink.put(event)
        else:
            self._events.append(event)

    def _link(self, concat: tuple[str, int, int, int], view: Any, smsc: str) -> dict[str, Any]:
        mechanism, ref, total, part = concat
        key = (self.source, self.destination, ref, total, mechanism)
        data = view.user_data if self.content else None
        group, complete = self.tracer.concat.add(
            key, part, self.message_id, data, view.data_coding, self.tracer.clock()
        )
        out: dict[str, Any] = {"concat": ConcatInfo(group, mechanism, ref, total, part)}
        if complete is not None:
            out["reassembled"] = complete.reassemble(
                mechanism, view.esm_class, *self.tracer.alphabet(smsc)
            )
        return out
