"""One traced message's events as a ladder diagram: lanes, one step per PDU, NE answers.

The page (``trace_view.html``) is semantic HTML, an ordered list of steps that
``trace.css`` lays out as columns SMSC | SMPS | each NE; on a narrow screen,
or with more lanes than :data:`MAX_LANES`, the same list reads as text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from smps._native.pdu import Status
from smps.proxy.records import TraceEvent

MAX_LANES = 12  # SMSC, SMPS and 10 NEs drawn as columns; more read as a list


def status_text(value: int | None) -> str:
    """0x66 RX_R_APPN: hex as the policy page writes codes, with the SMPP name."""
    if value is None:
        return ""
    try:
        return f"0x{value:02X} {Status(value).name}"
    except ValueError:
        return f"0x{value:02X}"


def clock(us: int) -> str:
    """An event's time to the millisecond (UTC)."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def after(us: int) -> str:
    """Time since the message arrived: ``+1.5 ms``."""
    return f"+{us / 1000:,.1f} ms"


def ladder(events: list[TraceEvent]) -> dict[str, Any]:
    """One message's events as lanes (SMSC, SMPS, each NE in order of its first copy)
    and one step per event, plus each NE's copy and answer for the summary table."""
    start = events[0].ts_us
    received = next((e for e in events if e.kind == "received"), events[0])
    lanes = [f"SMSC {received.smsc}", "SMPS"]
    lane_of: dict[str, int] = {}
    for event in events:
        if event.account is not None and event.account not in lane_of:
            lane_of[event.account] = len(lanes)
            lanes.append(event.account)
    nes = {account: {"account": account, "copies": []} for account in lane_of}
    steps = []
    final = None
    for event in events:
        step = _step(event, lane_of, start)
        steps.append(step)
        if event.kind == "final":
            final = {**step, "status": status_text(event.status), "verdict": event.verdict,
                     "reason": event.reason}  # fmt: skip
        if event.account is not None:
            _note_ne(nes[event.account], event, start)
    return {
        "lanes": lanes,
        "steps": steps,
        "as_list": len(lanes) > MAX_LANES,
        "nes": list(nes.values()),
        "final": final,
        "received": received,
        "started": clock(start),
        "duration": after(events[-1].ts_us - start)[1:],
    }


SMSC_LANE, SMPS_LANE = 0, 1


def _arrow(event: TraceEvent, ne: int) -> tuple[int, int, bool, str, str]:
    """(from lane, to lane, dashed?, what, detail) of one event; ``ne`` is its NE's lane."""
    seq = f" · seq {event.sequence}" if event.sequence is not None else ""
    answer = f"{event.command} {status_text(event.status)}"
    match event.kind:
        case "received" | "part_received":
            detail = f"{event.source_addr_raw} → {event.destination_addr_raw}"
            return SMSC_LANE, SMPS_LANE, False, f"{event.command}{seq}", detail
        case "copy_sent":
            detail = f"bind {event.bind} · worker {event.worker}"
            return SMPS_LANE, ne, False, f"{event.command}{seq}", detail
        case "answered":
            late = " · late: after the final answer" if event.late else ""
            detail = f"{event.verdict} in {event.latency_ms:,.1f} ms{late}"
            return ne, SMPS_LANE, False, answer, detail
        case "timeout":
            what = f"no answer ({event.reason or 'timeout'})"
            return ne, SMPS_LANE, True, what, f"gave up after {event.latency_ms:,.1f} ms"
        case "final":
            return SMPS_LANE, SMSC_LANE, False, answer, f"{event.verdict} · reason {event.reason}"
        case "screened":
            return SMPS_LANE, SMPS_LANE, False, f"screening: {event.verdict}", event.reason or ""
        case "held":  # the parts of a long message waited for each other
            return SMPS_LANE, SMPS_LANE, False, "whole message", event.reason or ""
        case "part_answered":  # each part of a long message gets the message's answer
            detail = event.reason or ""
            if event.command == "":  # answered by the worker whose bind it came over
                return SMPS_LANE, SMSC_LANE, True, status_text(event.status), detail
            return SMPS_LANE, SMSC_LANE, False, answer, detail
    # dropped: a copy never sent, or the original refused
    if event.account is not None:
        return SMPS_LANE, ne, True, "copy not sent", event.reason or ""
    return SMPS_LANE, SMPS_LANE, True, "refused", event.reason or ""


def _step(event: TraceEvent, lane_of: dict[str, int], start: int) -> dict[str, Any]:
    source, target, dashed, what, detail = _arrow(
        event, lane_of.get(event.account or "", SMPS_LANE)
    )
    step: dict[str, Any] = {
        "kind": event.kind,
        "t": after(event.ts_us - start),
        "verdict": event.verdict or "",
        "dashed": dashed,
        "late": bool(event.late),
        "what": what,
        "detail": detail,
        "source": source,
        "target": target,
    }
    # Grid lines (trace.css): 1 | time | 2 half-columns per lane, so lane L's lifeline
    # is line 3 + 2L; an arrow runs between lifelines, a note covers its own lane.
    if source == target:
        step.update(direction="self", gs=2 + 2 * source, ge=4 + 2 * source)
    else:
        step.update(
            direction="right" if target > source else "left",
            gs=3 + 2 * min(source, target),
            ge=3 + 2 * max(source, target),
        )
    return step


def _note_ne(ne: dict[str, Any], event: TraceEvent, start: int) -> None:
    """Fold a copy, answer, timeout or drop into the NE's summary row."""
    if event.kind == "copy_sent":
        ne["copies"].append({"sent": after(event.ts_us - start), "bind": event.bind,
                             "sequence": event.sequence, "answer": None})  # fmt: skip
        return
    answer = {
        "kind": event.kind,
        "at": after(event.ts_us - start),
        "status": status_text(event.status) if event.kind == "answered" else "",
        "verdict": event.verdict if event.kind == "answered" else "none",
        "latency": f"{event.latency_ms:,.1f} ms" if event.latency_ms is not None else "",
        "late": bool(event.late),
        "reason": event.reason or "",
    }
    waiting = [c for c in ne["copies"] if c["answer"] is None]
    if waiting:
        waiting[0]["answer"] = answer
    else:
        ne["copies"].append({"sent": "", "bind": "", "sequence": None, "answer": answer})
