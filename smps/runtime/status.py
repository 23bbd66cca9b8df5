"""What a running node says about itself: the start banner, the status report (`smps
status`, the control socket, the admin UI), the workers' part of /health, and the
periodic stats line in the log; made from the configuration and the workers' latest
stats reports.

`show` is `smps status`: it asks the master over the control socket and prints
the report as text (`format_status`).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from smps import __version__
from smps.runtime import control_socket

if TYPE_CHECKING:
    from smps.config import Config
    from smps.runtime.master import Master


def banner(config: Config, path: str) -> list[str]:
    """The start banner: a few lines an operator reads at a glance (never a password)."""
    from sqlalchemy.engine import make_url

    from smps.config import format_address

    ha = config.ha
    role = (
        "standalone, active" if ha.mode == "standalone" else f"keepalived, starts {ha.initial_role}"
    )
    url = make_url(config.database.url)
    where = url.database if url.get_backend_name() == "sqlite" else url.render_as_string()
    accounts = [account.system_id for account in config.ne_accounts]
    smscs = [f"{s.name} {s.host}:{s.port} ({s.binds} binds per worker)" for s in config.smsc]
    return [
        f"SMPS {__version__} starting: node {config.node.name}, configuration {path}",
        f"  role {role}; workers {config.node.worker_count} (placement "
        f"{config.server.placement}); state {config.node.state_dir}",
        f"  NE port {format_address(config.server.listen)}; HTTP "
        f"{format_address(config.web.listen)} (admin UI, /api/v1, /health, /metrics)",
        f"  database {url.get_backend_name()} {where} (record {config.database.record})",
        f"  NE accounts in the file ({len(accounts)}): {', '.join(accounts) or 'none'}",
        f"  SMSCs in the file ({len(smscs)}): {', '.join(smscs) or 'none'}",
    ]


def report(master: Master) -> dict[str, Any]:
    """The node: role, ports, each worker (up, restarts, binds, rate, in flight)
    and the binds summed over the workers."""
    now = time.time()
    workers = []
    smsc: dict[str, int] = {}
    for slot in master.supervisor.slots:
        gauges = slot.report.gauges
        for name, count in gauges.smsc_binds.items():
            smsc[name] = smsc.get(name, 0) + count
        workers.append(
            {
                "index": slot.index,
                "pid": slot.process.pid if slot.ready else None,
                "up": slot.ready,
                "uptime_s": round(now - slot.started_wall, 1) if slot.ready else None,
                "restarts": slot.restarts,
                "ne_binds": master.placement.bound[slot.index],
                "smsc_binds": gauges.smsc_binds,
                "in_flight": gauges.in_flight,
                "received_per_s": round(slot.rate, 1),
            }
        )
    return {
        "node": master.config.node.name,
        "version": __version__,
        "role": master.role,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - master.started, 1),
        "placement": master.config.server.placement,
        "smpp_port": master.smpp_port,
        "http_port": master.http_port,
        "workers": workers,
        # the writer's counters (db_written, db_pending, ...; smps bench reads db_written)
        "db": master.writer.stats() if master.writer is not None else None,
        "smsc_binds": smsc,
        "ne_binds": ne_binds(master),
        "in_flight": sum(w["in_flight"] for w in workers),
        "ha": master.ha.snapshot() if master.ha is not None else None,
    }


def ne_binds(master: Master) -> dict[str, int]:
    """NE binds by account, over every worker."""
    totals: dict[str, int] = {}
    for bound in master.placement.bound:
        for account, count in bound.items():
            totals[account] = totals.get(account, 0) + count
    return totals


def workers_health(master: Master) -> tuple[bool, dict[str, Any]]:
    """Whether every worker runs: the HA check's part of /health (independent of the role)."""
    slots = master.supervisor.slots
    up = sum(1 for s in slots if s.ready)
    body = {
        "status": "ok" if up == len(slots) else "degraded",
        "node": master.config.node.name,
        "version": __version__,
        "uptime_s": round(time.monotonic() - master.started, 3),
        "workers": {"up": up, "configured": len(slots)},
        "binds": ne_binds(master),
    }
    if up < len(slots):
        body["reason"] = f"{len(slots) - up} of {len(slots)} workers not running"
        body["reasons"] = [body["reason"]]
    return up == len(slots), body


def degradations(master: Master) -> list[str]:
    """What the node serves worse for now: SMSC binds down for longer than their
    back-off, as the workers last reported them, and database writes failing."""
    reasons = [
        f"worker {slot.index}: {reason}"
        for slot in master.supervisor.slots
        for reason in slot.report.smsc_down
    ]
    if master.writer is not None and (failing := master.writer.failing()):
        reasons.append(failing)
    return reasons


def stats_line(master: Master) -> str:
    """The line logged every `log.stats_interval`."""
    status = report(master)
    fields: dict[str, Any] = {
        "uptime": f"{status['uptime_s']:.0f}s",
        "workers": f"{sum(1 for w in status['workers'] if w['up'])}/{len(status['workers'])}",
        "smsc_binds": ",".join(f"{n}:{c}" for n, c in sorted(status["smsc_binds"].items())) or "-",
        "ne_binds": ",".join(f"{a}:{c}" for a, c in sorted(status["ne_binds"].items())) or "-",
        "received_s": f"{sum(w['received_per_s'] for w in status['workers']):.1f}",
        "in_flight": status["in_flight"],
    }
    if master.writer is not None:
        fields.update(master.writer.stats())
    return "stats " + " ".join(f"{key}={value}" for key, value in fields.items())


def show(config: Config) -> int:
    """`smps status`: print role, workers, binds and in flight; 1 when no master runs."""
    answer = control_socket.ask(config.node.state_dir, {"cmd": "status"}, timeout=5.0)
    if answer is None:
        return 1
    print(format_status(answer))
    return 0


def format_status(report: dict[str, Any]) -> str:
    lines = [
        f"node {report['node']}  role {report['role']}  version {report['version']}  "
        f"master pid {report['pid']}  up {report['uptime_s']:.0f}s",
        f"placement {report['placement']}  smpp :{report['smpp_port']}  "
        f"http :{report['http_port']}  in flight {report['in_flight']}",
        "workers:",
    ]
    for worker in report["workers"]:
        binds = ",".join(f"{a}:{n}" for a, n in sorted(worker["ne_binds"].items())) or "-"
        uptime = f"{worker['uptime_s']:.0f}s" if worker["uptime_s"] is not None else "-"
        lines.append(
            f"  #{worker['index']} pid {worker['pid'] or '-'}  "
            f"{'up' if worker['up'] else 'DOWN'} {uptime}  restarts {worker['restarts']}  "
            f"{worker['received_per_s']:.1f} msg/s  in flight {worker['in_flight']}  "
            f"NE binds {binds}"
        )
    smsc = ", ".join(f"{n}:{c}" for n, c in sorted(report["smsc_binds"].items())) or "-"
    ne = ", ".join(f"{a}:{c}" for a, c in sorted(report["ne_binds"].items())) or "-"
    lines.append(f"SMSC binds: {smsc}")
    lines.append(f"NE binds:   {ne}")
    if report.get("ha"):
        lines.append(format_ha(report["ha"]))
    return "\n".join(lines)


def format_ha(ha: dict[str, Any]) -> str:
    """One line: mode, role and why, keepalived's last word, the lease."""
    keepalived = ha["keepalived"]["state"] if ha["keepalived"] else "-"
    line = f"HA {ha['mode']}: {ha['role']} ({ha['reason']})  keepalived {keepalived}"
    lease = ha.get("lease")
    if lease is not None:
        holder = lease["holder"] or "none"
        line += f"  lease holder {holder} epoch {lease['epoch']}"
        if lease["held"]:
            line += " (held here)"
        elif lease["waiting"]:
            line += " (waiting for it)"
        if lease["error"]:
            line += f"  lease error: {lease['error']}"
    return line
