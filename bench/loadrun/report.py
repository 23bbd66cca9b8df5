"""The report of a run: its figures from the measurements, as JSON and as text."""

import itertools
import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import smps
from bench.loadrun.fingerprints import fingerprint_us
from bench.loadrun.scenario import Scenario
from smps._native.pdu import Status

if TYPE_CHECKING:
    from bench.loadrun.driver import Target


def build_report(
    scenario: Scenario,
    measured: dict[str, Any],
    nes: list[dict[str, Any]],
    rss: int | None,
    pinning: dict[str, Any],
    target: "Target",
    proxy: str = "smps",
) -> dict[str, Any]:
    """A timed run's figures; `proxy` names what ran between the generators: "smps",
    or "bare_relay" (bench/bare_relay.py, one process: no master/workers split)."""
    interval = measured["interval_s"]
    decided = measured["answered"]
    whole = measured["whole_run"]
    proxy_cpu = measured["proxy_cpu_s"]
    generator_cpu = measured["smsc_cpu_s"] + measured["ne_cpu_s"]
    latency = {
        key: None if value is None else round(max(0.0, value - scenario.ne_latency * 1000), 3)
        for key, value in measured["latency_ms"].items()
    }
    statuses = measured["statuses"]
    memory = _memory(measured["rss"], scenario.rss_every)
    split = measured.get("proxy_cpu_split_s") or {}
    by_part = _cpu_by_part(measured.get("parts") or [], scenario.cpu_every)
    rows = (
        sum(part["rows"] for part in by_part["parts"])
        if by_part and all(part["rows"] is not None for part in by_part["parts"])
        else None
    )
    if proxy == "bare_relay" and split:
        split = {"relay": sum(split.values())}
    return {
        "proxy": proxy,
        "msgs_per_s": round(decided / interval, 1) if interval > 0 else 0.0,
        "cpu_us_per_msg": round(1e6 * proxy_cpu / decided, 2) if proxy_cpu and decided else None,
        "cpu_us_per_msg_by_process": {
            role: _per_message(seconds, decided) for role, seconds in split.items()
        },
        # records (decisions and trace events) the writer committed over the interval
        "rows_written": rows,
        "master_us_per_row": _per_message(split.get("master"), rows or 0),
        "latency_ms": latency,
        "missing": whole["missing"],
        "duplicates": whole["duplicates"],
        "throttled": statuses.get(Status.RTHROTTLED, 0),
        "timeouts": measured["timeouts"],
        "rss_mb": round(rss / 2**20, 1) if rss is not None else None,
        "rss_growth_mb": memory["rss_growth_mb"] if memory else None,
        "memory": memory,
        # SMPS's CPU in each --cpu-every part of the interval, first against last: creep
        "cpu_by_part": by_part if proxy == "smps" else None,
        "scenario": {**asdict(scenario), "rate": scenario.rate or "max"},
        "measured": {
            "interval_s": round(interval, 3),
            "decided": decided,
            "sent": measured["sent"],
            "statuses": {f"0x{k:02X}": v for k, v in sorted(statuses.items())},
            "proxy_cpu_s": None if proxy_cpu is None else round(proxy_cpu, 3),
            "proxy_cpu_share": None if proxy_cpu is None else round(proxy_cpu / interval, 3),
            "smsc_latency_ms": measured["latency_ms"],
            "latency_basis": "SMSC send-to-response time minus the fixed NE think time",
        },
        "generators": {
            "smsc_cpu_us_per_msg": _per_message(measured["smsc_cpu_s"], decided),
            "ne_cpu_us_per_msg": _per_message(measured["ne_cpu_s"], decided),
            "cpu_share": round(generator_cpu / interval, 3) if interval > 0 else None,
            "cpus": len(pinning["generator_cpus"] or ()) or None,
            "ne_copies": sum(ne["received"] for ne in nes),
        },
        "whole_run": {k: whole[k] for k in ("sent", "answered", "missing", "duplicates")},
        "concat": _concat(scenario, measured, proxy_cpu) if scenario.concat else None,
        # SMPS fingerprints every whole message (smps._native.fingerprint)
        "fingerprint_us": fingerprint_us(scenario) if proxy == "smps" else None,
        "pinning": pinning,
        "machine": _machine(),
        "smps_pid": target.pid,
    }


def _concat(scenario: Scenario, measured: dict[str, Any], proxy_cpu: float | None) -> dict:
    """The concat scenario's figures: originals are the parts SMPS receives
    (msgs_per_s, cpu_us_per_msg); here whole messages too, and the check that the
    parts of one message all got the same answer (over the whole run)."""
    interval = measured["interval_s"]
    messages = measured["messages"]
    whole = measured["whole_run"]
    return {
        "parts_decided": measured["answered"],  # = measured.decided
        "messages_decided": messages,
        "messages_per_s": round(messages / interval, 1) if interval > 0 else 0.0,
        "cpu_us_per_message": _per_message(proxy_cpu, messages),  # cpu_us_per_msg is per part
        "long_messages": whole["long_answered"],
        "mismatched": sum(whole["mismatched"].values()),
        "mismatched_by_statuses": whole["mismatched"],
        # with the hold off SMPS judges each part alone: different answers are expected
        "checked": scenario.hold,
    }


def _cpu_by_part(samples: list[dict[str, Any]], every: float) -> dict[str, Any] | None:
    """CPU per message (master, workers) and rows written (the master's CPU per row)
    in each part of the interval between two samples; `creep`: the last part's CPU per
    message against the first's. A last part shorter than half of `every` is left out
    of the comparison (it is reported)."""
    parts = []
    for before, after in itertools.pairwise(samples):
        answered = after["answered"] - before["answered"]
        if before["proxy_cpu"] is None or after["proxy_cpu"] is None or not answered:
            continue
        cpu = {role: after["proxy_cpu"][role] - t for role, t in before["proxy_cpu"].items()}
        rows = (
            after["rows"] - before["rows"]
            if after["rows"] is not None and before["rows"] is not None
            else None
        )
        parts.append(
            {
                "from_s": round(before["at"] - samples[0]["at"], 1),
                "seconds": round(after["at"] - before["at"], 1),
                "decided": answered,
                "cpu_us_per_msg": _per_message(sum(cpu.values()), answered),
                "master_us_per_msg": _per_message(cpu["master"], answered),
                "workers_us_per_msg": _per_message(cpu["workers"], answered),
                "rows": rows,
                "master_us_per_row": _per_message(cpu["master"], rows) if rows else None,
            }
        )
    whole = [part for part in parts if part["seconds"] >= every / 2]
    if not whole:
        return None
    first, last = whole[0], whole[-1]
    return {
        "every_s": every,
        "parts": parts,
        "first_cpu_us_per_msg": first["cpu_us_per_msg"],
        "last_cpu_us_per_msg": last["cpu_us_per_msg"],
        "creep": round(last["cpu_us_per_msg"] / first["cpu_us_per_msg"] - 1, 4)
        if len(whole) > 1
        else None,
    }


def _rows_row(report: dict[str, Any]) -> str | None:
    """Records written over the interval and the master's CPU per row."""
    rows = report.get("rows_written")
    if rows is None:
        return None
    decided = report["measured"]["decided"]
    per_row = report.get("master_us_per_row")
    return (
        f"{rows:,} written (record: {report['scenario']['record']}, "
        f"{rows / decided if decided else 0:.2f} per original)"
        + ("" if per_row is None else f"; master CPU {per_row:.2f} µs per row")
    )


def _parts_row(report: dict[str, Any]) -> str:
    """Each part's CPU µs/msg; first against last."""
    by_part = report["cpu_by_part"]
    values = " ".join(f"{part['cpu_us_per_msg']:.2f}" for part in by_part["parts"])
    creep = by_part["creep"]
    return f"{values} µs/msg every {by_part['every_s']:g} s" + (
        "" if creep is None else f"; last against first {creep:+.1%}"
    )


def _memory(samples: list[tuple[float, int]], every: float) -> dict[str, Any] | None:
    """SMPS's RSS over the measured interval: first and last sample, growth, samples."""
    if len(samples) < 2:
        return None
    mb = [(max(0.0, round(at, 1)), round(rss / 2**20, 1)) for at, rss in samples]
    return {
        "rss_start_mb": mb[0][1],
        "rss_end_mb": mb[-1][1],
        "rss_growth_mb": round((samples[-1][1] - samples[0][1]) / 2**20, 1),
        # the first minutes include pools and caches filling; a leak shows here too
        "rss_growth_second_half_mb": round(
            (samples[-1][1] - samples[(len(samples) - 1) // 2][1]) / 2**20, 1
        ),
        "rss_max_mb": max(rss for _at, rss in mb),
        "every_s": every,
        "samples": mb,
    }


def build_inflight_report(
    scenario: Scenario,
    counts: dict[str, Any],
    copies: int,
    before: int,
    held: int,
    peak: int,
    nes: list[dict[str, Any]],
    pinning: dict[str, Any],
    target: "Target",
) -> dict[str, Any]:
    """The in-flight run: what SMPS's resident memory grew by per original held."""
    in_flight = counts["sent"] - counts["answered"] - counts["missing"]
    return {
        "mode": "inflight",
        "inflight": {
            "originals": in_flight,
            "sent": counts["sent"],
            "answered": counts["answered"],
            "messages": counts["messages"],  # whole messages: a long one's parts are one
            "ne_copies": copies,
            "ne_copies_expected": scenario.nes * counts["messages"],  # one per whole message
            "rss_before_bytes": before,
            "rss_held_bytes": held,
            "rss_before_mb": round(before / 2**20, 1),
            "rss_held_mb": round(held / 2**20, 1),
            "bytes_per_original": round((held - before) / in_flight) if in_flight > 0 else None,
            "target_bytes": 2048,
        },
        "rss_mb": round(peak / 2**20, 1),
        "duplicates": counts["duplicates"],
        "scenario": {**asdict(scenario), "rate": scenario.rate or "max"},
        "generators": {"ne_summaries": nes},
        "pinning": pinning,
        "machine": _machine(),
        "smps_pid": target.pid,
    }


def format_inflight_report(report: dict[str, Any]) -> str:
    s = report["scenario"]
    i = report["inflight"]
    per = i["bytes_per_original"]
    rows = [
        (
            "scenario",
            f"{s['nes']} NEs x {s['ne_binds']} binds (window {s['ne_window']}, never answering), "
            f"SMSC {s['smsc_binds']} binds (window {s['window']}), {s['workers']} worker(s), "
            f"policy.timeout {s['timeout']:g} s",
        ),
        (
            "in flight",
            f"{i['originals']:,} originals ({i['answered']:,} answered of {i['sent']:,} sent); "
            f"NEs hold {i['ne_copies']:,} of {i['ne_copies_expected']:,} copies",
        ),
        ("RSS before", f"{i['rss_before_mb']:,.1f} MB"),
        ("RSS held", f"{i['rss_held_mb']:,.1f} MB"),
        (
            "per original",
            "n/a"
            if per is None
            else f"{per:,} bytes (target <= {i['target_bytes']:,}: "
            f"{'met' if per <= i['target_bytes'] else 'NOT met'})",
        ),
        ("peak RSS", f"{report['rss_mb']:,.1f} MB"),
        ("code", f"commit {report['machine']['commit']}, {report['machine']['date']}"),
    ]
    lines = [f"smps bench --inflight: {'OK' if succeeded(report) else 'INCOMPLETE (see counts)'}"]
    width = max(len(name) for name, _ in rows)
    return "\n".join(lines + [f"  {name:<{width}}  {value}" for name, value in rows])


def _per_message(seconds: float | None, messages: int) -> float | None:
    return round(1e6 * seconds / messages, 2) if seconds is not None and messages else None


def _machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as file:
            model = next(
                (line.split(":", 1)[1].strip() for line in file if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "commit": _commit(),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # others' load makes msg/s noisy
    }


def _commit() -> str | None:
    """The source tree's commit, with -dirty when it has changes: which code ran."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(smps.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def format_report(report: dict[str, Any]) -> str:
    s = report["scenario"]
    m = report["measured"]
    g = report["generators"]
    lat = report["latency_ms"]
    c = report.get("concat")
    failed = failures(report)
    relay = report.get("proxy") == "bare_relay"
    processes = "one process" if relay else f"{s['workers']} worker(s)"

    def number(value: Any, unit: str = "", fmt: str = ",.1f") -> str:
        return "n/a" if value is None else f"{value:{fmt}}{unit}"

    rows = [
        (
            "scenario",
            f"{s['nes']} NEs x {s['ne_binds']} binds, SMSC {s['smsc_binds']} binds, "
            f"{processes}, rate {s['rate']}, block {s['block_ratio']:.0%}, "
            f"NE latency {s['ne_latency'] * 1000:g} ms, window {s['window']}/"
            f"{s['ne_window']}{', screening rules' if s.get('screening') else ''}"
            f"{', concat traffic (30 % in 3 parts)' if c else ''}"
            f"{'' if s.get('hold', True) else ', no hold (parts judged alone)'}",
        ),
        (
            "measured",
            f"{m['interval_s']:.1f} s after {s['warmup']:g} s warm-up; "
            f"{m['decided']:,} originals decided"
            + (f" (parts; {c['messages_decided']:,} whole messages)" if c else ""),
        ),
        (
            "throughput",
            f"{number(report['msgs_per_s'])} msg/s"
            + (f", {number(c['messages_per_s'])} whole messages/s" if c else ""),
        ),
        (
            "proxy CPU",
            f"{number(report['cpu_us_per_msg'], ' µs/msg', '.2f')}"
            + (
                f" per original part, {number(c['cpu_us_per_message'], ' µs', '.2f')} per "
                "whole message"
                if c
                else ""
            )
            + f"  ({number(m['proxy_cpu_share'], '', '.0%')} of a core{_split_text(report)})",
        ),
        (
            "added latency",
            "n/a"
            if lat["p50"] is None
            else f"p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
            f"max {lat['max']:.3f} ms",
        ),
        *([("rows", _rows_row(report))] if _rows_row(report) else []),
        *([("CPU by part", _parts_row(report))] if report.get("cpu_by_part") else []),
        ("peak RSS", number(report["rss_mb"], " MB")),
        ("RSS over run", _memory_row(report["memory"])),
        ("throttled", report["throttled"]),
        ("timeouts", report["timeouts"]),
        ("missing", report["missing"]),
        ("duplicates", report["duplicates"]),
        *([("one verdict", _verdict_row(c))] if c else []),
        *([("fingerprint", _fingerprint_row(report))] if report.get("fingerprint_us") else []),
        (
            "generators",
            f"SMSC {number(g['smsc_cpu_us_per_msg'], '', '.2f')} + NEs "
            f"{number(g['ne_cpu_us_per_msg'], '', '.2f')} µs/msg, "
            f"{number(g['cpu_share'], '', '.0%')} of a core"
            + (f" (on {g['cpus']} CPU)" if g["cpus"] else " (not pinned)"),
        ),
        (
            "code",
            f"commit {report['machine']['commit']}, {report['machine']['date']}, load "
            f"average {report['machine']['loadavg_1m']:g} on {report['machine']['cpus']} CPUs",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    title = "bare relay" if relay else "smps bench"
    lines = [f"{title}: {'FAILED (' + ', '.join(failed) + ')' if failed else 'OK'}"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    if g["cpus"] and g["cpu_share"] is not None and g["cpu_share"] > 0.9 * g["cpus"]:
        lines.append("  warning: the generators used their CPUs fully; they may be the bottleneck")
    if report["pinning"].get("shared"):
        lines.append(f"  note: {report['pinning']['shared']}")
    return "\n".join(lines)


def _fingerprint_row(report: dict[str, Any]) -> str:
    return f"{report['fingerprint_us']:.3f} µs per original (the scenario's texts, timed apart)"


def _verdict_row(concat: dict[str, Any]) -> str:
    """Whether the parts of each long message got one answer (the concat scenario)."""
    text = (
        f"{concat['long_messages']:,} three-part messages answered, "
        f"{concat['mismatched']:,} with parts answered differently"
    )
    if concat["mismatched"]:
        by = concat["mismatched_by_statuses"]
        text += " (" + ", ".join(f"{statuses}: {n:,}" for statuses, n in sorted(by.items())) + ")"
    if not concat["checked"]:
        text += "; not a failure with no hold"
    return text


def _memory_row(memory: dict[str, Any] | None) -> str:
    if memory is None:
        return "n/a"
    return (
        f"{memory['rss_start_mb']:,.1f} -> {memory['rss_end_mb']:,.1f} MB "
        f"(growth {memory['rss_growth_mb']:+,.1f} MB, in the second half "
        f"{memory['rss_growth_second_half_mb']:+,.1f}; max {memory['rss_max_mb']:,.1f}; "
        f"{len(memory['samples'])} samples every {memory['every_s']:g} s)"
    )


def _split_text(report: dict[str, Any]) -> str:
    """'; master 4.1 + workers 9.9' µs/msg, when both are known."""
    split = report.get("cpu_us_per_msg_by_process") or {}
    if split.get("master") is None or split.get("workers") is None:
        return ""
    return f"; master {split['master']:.1f} + workers {split['workers']:.1f}"


def succeeded(report: dict[str, Any]) -> bool:
    """A timed run: no `failures`. An in-flight run: every original held
    unanswered, every copy at the NEs."""
    if report.get("mode") == "inflight":
        i = report["inflight"]
        return (
            i["bytes_per_original"] is not None
            and i["answered"] == 0
            and i["ne_copies"] >= i["ne_copies_expected"]
        )
    return not failures(report)


def failures(report: dict[str, Any]) -> list[str]:
    """What failed a timed run, in words; none when it succeeded: responses missing
    or duplicated, or (the concat scenario, with the hold) parts of one message
    answered differently."""
    found = []
    if report["missing"]:
        found.append("missing responses")
    if report["duplicates"]:
        found.append("duplicate responses")
    concat = report.get("concat")
    if concat and concat["checked"] and concat["mismatched"]:
        found.append("parts of one message answered differently")
    return found


def format_sweep(reports: list[dict[str, Any]]) -> str:
    """One line per point of a --nes/--workers list."""
    lines = [
        "smps bench sweep:",
        "  NEs  workers      msg/s  CPU µs/msg  p50 / p99 ms       RSS MB  missing/dup",
    ]
    for r in reports:
        s, lat = r["scenario"], r["latency_ms"]
        latency = "n/a" if lat["p50"] is None else f"{lat['p50']:.1f} / {lat['p99']:.1f}"
        cpu = "n/a" if r["cpu_us_per_msg"] is None else f"{r['cpu_us_per_msg']:.1f}"
        lines.append(
            f"  {s['nes']:>3}  {s['workers']:>7}  {r['msgs_per_s']:>9,.0f}  {cpu:>10}  "
            f"{latency:<17} {r['rss_mb'] or 0:>6.1f}  {r['missing']}/{r['duplicates']}"
            + (f"  ratio {r['ratio']:.2f}" if r.get("ratio") else "")
            + (" (shared cores)" if r["pinning"].get("shared") else "")
        )
    return "\n".join(lines)


# What a run's scenario may have that an earlier one's has not, for --compare-to:
# (key, its value in a report that does not name it, what it is on, what it is off).
_SCENARIO_SWITCHES = (
    ("screening", False, "screening", "no screening"),
    ("concat", False, "the concat traffic", "the standard traffic"),
    ("hold", True, "the hold", "judging parts alone"),
)


def baseline_ratio(report: dict[str, Any], relay: dict[str, Any]) -> float | None:
    """SMPS's CPU per original over the bare relay's in the same scenario (--baseline)."""
    if not report["cpu_us_per_msg"] or not relay["cpu_us_per_msg"]:
        return None
    return round(report["cpu_us_per_msg"] / relay["cpu_us_per_msg"], 2)


def format_baseline(report: dict[str, Any]) -> str:
    """The line that puts a run next to its yardstick (--baseline)."""
    relay = report["baseline"]
    if report["ratio"] is None:
        return "ratio SMPS/bare relay: n/a (no CPU figure)"
    return (
        f"ratio SMPS/bare relay: {report['ratio']:.2f} (CPU {report['cpu_us_per_msg']:.2f} "
        f"against {relay['cpu_us_per_msg']:.2f} µs/msg; {report['msgs_per_s']:,.0f} against "
        f"{relay['msgs_per_s']:,.0f} msg/s)"
    )


def format_added_cpu(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The CPU per original a run added to an earlier one (`--compare-to`), named by
    what its scenario changed; between two concat runs, per whole message too."""
    was, now = before["scenario"], after["scenario"]
    what = " and ".join(
        on if now.get(key, default) else off
        for key, default, on, off in _SCENARIO_SWITCHES
        if now.get(key, default) != was.get(key, default)
    )
    if after["cpu_us_per_msg"] is None or before["cpu_us_per_msg"] is None:
        return f"{what or 'this run'}: no CPU figure to compare (give --pid with --no-start)"
    added = after["cpu_us_per_msg"] - before["cpu_us_per_msg"]
    line = (
        f"{what or 'this run'} added {added:+.2f} µs CPU per original"
        f"{' part' if after.get('concat') else ''}: {after['cpu_us_per_msg']:.2f} against "
        f"{before['cpu_us_per_msg']:.2f} µs/msg ({after['msgs_per_s']:,.0f} and "
        f"{before['msgs_per_s']:,.0f} msg/s)"
    )
    now_cpu = (after.get("concat") or {}).get("cpu_us_per_message")
    was_cpu = (before.get("concat") or {}).get("cpu_us_per_message")
    if now_cpu is not None and was_cpu is not None:
        line += (
            f"; per whole message {now_cpu - was_cpu:+.2f} µs: {now_cpu:.2f} against {was_cpu:.2f}"
        )
    return line
