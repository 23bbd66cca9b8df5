"""The HA controller: which role this node plays (ACTIVE, STANDBY, FAULT) and why.

Two inputs decide the role:

- **keepalived** (``ha.mode: keepalived``; `smps.ha.keepalived`) says MASTER, BACKUP, FAULT or STOP,
  through its ``vrrp_notify_fifo`` (``ha.notify_fifo``; lines arrive in the
  order the states changed, unlike notify scripts, which may run out of order)
  or through ``smps ha notify`` on the control socket. Until it says anything
  the node plays ``ha.initial_role``. ``ha.mode: standalone`` is always ACTIVE.
- **the database lease** (``ha.lease``, MySQL/MariaDB only; `smps.ha.lease`)
  fences a second active node when VRRP splits: keepalived MASTER makes the
  node ACTIVE only while it holds the lease row, which the controller renews
  every ttl/3; it steps down ttl/3 before the lease could expire unrenewed.

The node implements one callback, ``on_role(role, reason)``: STANDBY and FAULT
mean stop taking originals, answer those in flight, unbind SMSCs and NEs and
close the NE listener; ACTIVE means bind again (within a second). Demotion may
come at any moment (after a healed split brain keepalived demotes the lower
priority at once, even with ``nopreempt``): a demotion cancels a promotion
still in progress, so ``on_role(ACTIVE)`` must be safe to cancel. A demotion
itself is never cancelled; a promotion asked for meanwhile waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from smps.config import HaConfig
from smps.ha.keepalived import Notice, parse_notice, read_notify_fifo
from smps.ha.lease import DbLease, LeaseState

log = logging.getLogger("smps.ha")


T = TypeVar("T")


async def _within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`awaitable`, or TimeoutError after `seconds`. Unlike asyncio.wait_for on
    Python 3.11 it never drops a cancel that arrives as the awaitable finishes,
    so stop() cannot leave a lease loop running."""
    async with asyncio.timeout(seconds):
        return await awaitable


class Role(enum.StrEnum):
    ACTIVE = "active"
    STANDBY = "standby"
    FAULT = "fault"


RoleCallback = Callable[[Role, str], Awaitable[None]]
"""The node's part: make the data plane match ``role``; ``reason`` is for its log."""

HealthSource = Callable[[], tuple[bool, dict[str, Any]]]
"""The node's own health: (able to serve, details with a ``reason`` when not)."""


@dataclass(frozen=True)
class Transition:
    role: Role
    reason: str
    at: float  # time.time()


class HaController:
    """Decides this node's role from keepalived and the lease, and applies it via ``on_role``.

    ``start()`` applies the initial role and starts the FIFO reader and the
    lease keeper; ``stop()`` ends them and gives the lease back (call it after
    the node has stopped serving). ``notify()`` takes a keepalived state from
    any source; ``handle_control()`` serves ``smps ha notify`` and ``smps ha
    check`` on the node's control socket.
    """

    def __init__(
        self,
        config: HaConfig,
        on_role: RoleCallback,
        *,
        health: HealthSource,
        lease: DbLease | None = None,
        on_lease: Callable[[float], None] | None = None,
    ):
        if config.lease.enabled and lease is None:
            raise ValueError("ha.lease.enabled needs a DbLease")
        self.config = config
        self.on_role = on_role
        self.health_source = health
        self.on_lease = on_lease  # told serve_until at every grant and renewal
        self.lease = lease if config.lease.enabled else None
        self.ttl = config.lease.ttl
        self.keepalived: Notice | None = None
        # Lease bookkeeping (times are loop.time()).
        self.lease_state: LeaseState | None = None
        self.held_epoch: int | None = None
        # While held: when this node must have stopped serving unless renewed, on the
        # time.monotonic() clock, which every process of the host shares. The node's
        # workers enforce it themselves, so a stalled master cannot keep them serving.
        self.serve_until: float | None = None
        self.lease_error: str | None = None
        self.db_ok_at: float | None = None
        self.role, self.reason = self._decide()
        self.last = Transition(self.role, self.reason, time.time())
        self.transitions: dict[Role, int] = dict.fromkeys(Role, 0)
        self.applied: Role | None = None  # what on_role last started to apply
        self._follow_groups = False
        self._expiry: asyncio.TimerHandle | None = None
        self._apply_wanted = asyncio.Event()
        self._lease_wake = asyncio.Event()
        self._applying: asyncio.Task | None = None
        self._applying_role: Role | None = None
        self._tasks: list[asyncio.Task] = []

    # ---- public -----------------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        """The fencing token while this node holds the lease (write it with each decision)."""
        return self.held_epoch

    @property
    def settled(self) -> bool:
        """The data plane has been told the current role and has finished applying it."""
        return self.applied == self.role and (self._applying is None or self._applying.done())

    async def start(self) -> None:
        self._apply_wanted.set()
        self._tasks.append(asyncio.create_task(self._apply_roles(), name="ha-roles"))
        if self.config.mode == "keepalived" and self.config.notify_fifo:
            self._tasks.append(
                asyncio.create_task(
                    read_notify_fifo(self.config.notify_fifo, self.notify), name="ha-fifo"
                )
            )
        if self.lease is not None:
            self._tasks.append(asyncio.create_task(self._keep_lease(), name="ha-lease"))
        log.info(
            "HA mode %s, lease %s; role %s (%s)",
            self.config.mode,
            f"on (ttl {self.ttl:g}s, holder {self.lease.holder})" if self.lease else "off",
            self.role,
            self.last.reason,
        )

    async def stop(self) -> None:
        """Stop following keepalived and the lease; give the lease back if this node held it."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._expiry is not None:
            self._expiry.cancel()
        if self.lease is not None and self.held_epoch is not None:
            try:
                await _within(self.ttl / 3, self.lease.release())
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                log.warning("could not give the lease back (it expires by itself): %s", exc)
            self.held_epoch = None

    def notify(self, notice: Notice) -> None:
        """Follow a keepalived state change. With a sync group, the group's state is followed
        and its member instances' lines are ignored."""
        if self.config.mode != "keepalived":
            log.info("keepalived %s ignored: ha.mode is %s", notice.state, self.config.mode)
            return
        if notice.kind == "GROUP":
            self._follow_groups = True
        elif notice.kind == "INSTANCE" and self._follow_groups:
            return
        log.info(
            "keepalived: %s%s%s",
            f"{notice.kind} {notice.name} " if notice.kind else "",
            notice.state,
            f" priority {notice.priority}" if notice.priority is not None else "",
        )
        self.keepalived = notice
        self._lease_wake.set()
        self._evaluate()

    def check(self) -> tuple[bool, str]:
        """For keepalived's ``vrrp_script``: can this node serve? Reads state only.

        Independent of the role (a standby must pass it to be eligible), with
        one exception: in keepalived mode a node that has not heard keepalived
        since it started fails it. keepalived does not repeat its state, so a
        node restarted quickly under a MASTER keepalived would otherwise stay
        standby behind the VIP; failing the check makes keepalived go FAULT,
        which it tells the node, and then BACKUP, and a fresh election follows.
        """
        if self.config.mode == "keepalived" and self.keepalived is None:
            return False, "no state from keepalived since this node started"
        ok, body = self.health_source()
        if not ok:
            return False, str(body.get("reason", "node not healthy"))
        if self.lease is not None:
            loop_now = asyncio.get_running_loop().time()
            if self.db_ok_at is None or loop_now - self.db_ok_at > self.ttl:
                return False, f"lease database not reached for over {self.ttl:g}s"
        return True, "ok"

    def snapshot(self) -> dict[str, Any]:
        """Role, why and since when, keepalived's last word, the lease: for /health, status."""
        keepalived = None
        if self.keepalived is not None:
            keepalived = {
                "state": self.keepalived.state,
                "name": self.keepalived.name,
                "priority": self.keepalived.priority,
            }
        report: dict[str, Any] = {
            "mode": self.config.mode,
            "role": str(self.role),
            "reason": self.reason,
            "since": self.last.at,
            "last_transition": {
                "role": str(self.last.role),
                "reason": self.last.reason,
                "at": self.last.at,
            },
            "settled": self.settled,
            "transitions": sum(self.transitions.values()),
            "keepalived": keepalived,
        }
        if self.lease is not None:
            state = self.lease_state
            report["lease"] = {
                "holder": state.holder if state and state.valid else None,
                "epoch": state.epoch if state else None,
                "expires_in_s": round(state.expires_in, 3) if state else None,
                "held": self.held_epoch is not None,
                "waiting": self._wants_active() and self.held_epoch is None,
                "error": self.lease_error,
            }
        return report

    def metrics(self) -> Iterable[Metric]:
        """Transitions and the lease, for a CallbackCollector (the role gauge is the node's)."""
        transitions = CounterMetricFamily(
            "smps_ha_transitions", "HA role changes, by the role entered.", labels=["role"]
        )
        for role, count in self.transitions.items():
            transitions.add_metric([str(role)], count)
        yield transitions
        if self.lease is not None:
            held = GaugeMetricFamily("smps_ha_lease_held", "1 while this node holds the HA lease.")
            held.add_metric([], 1.0 if self.held_epoch is not None else 0.0)
            yield held
            epoch = GaugeMetricFamily("smps_ha_lease_epoch", "Epoch of the HA lease as last read.")
            epoch.add_metric([], float(self.lease_state.epoch if self.lease_state else 0))
            yield epoch

    async def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"cmd": "ha.notify", "args": [...]}`` and ``{"cmd": "ha.check"}`` (see smps.ha_cli)."""
        command = request.get("cmd")
        if command == "ha.notify":
            args = request.get("args")
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                return {"error": "ha.notify needs args: a list of strings"}
            try:
                notice = parse_notice(args)
            except ValueError as exc:
                return {"error": str(exc)}
            self.notify(notice)
            return {"result": "ok", "role": str(self.role), "reason": self.reason}
        if command == "ha.check":
            healthy, reason = self.check()
            return {"healthy": healthy, "reason": reason, "role": str(self.role)}
        return {"error": f"unknown command {command!r}"}

    async def handle_control_line(self, line: str | bytes) -> str:
        """One JSON request line in, one JSON answer line (with its newline) out."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            answer: dict[str, Any] = {"error": f"bad request: {exc}"}
        else:
            answer = await self.handle_control(request)
        return json.dumps(answer) + "\n"

    # ---- deciding ---------------------------------------------------------------------

    def _wants_active(self) -> bool:
        """keepalived (or, before it spoke, ha.initial_role) wants this node to serve."""
        if self.config.mode == "standalone":
            return True
        if self.keepalived is None:
            return self.config.initial_role == "active"
        return self.keepalived.state == "MASTER"

    def _decide(self) -> tuple[Role, str]:
        if self.config.mode == "standalone":
            return Role.ACTIVE, "standalone"
        notice = self.keepalived
        said = (
            f"keepalived {notice.state}" if notice else f"initial role {self.config.initial_role}"
        )
        if notice is not None and notice.state == "FAULT":
            return Role.FAULT, said
        if not self._wants_active():
            return Role.STANDBY, said
        if self.lease is None:
            return Role.ACTIVE, said
        if self.held_epoch is None:
            state = self.lease_state
            if state is not None and state.valid and state.holder != self.lease.holder:
                return Role.STANDBY, (
                    f"{said}; waiting for the lease (held by {state.holder}, epoch {state.epoch}, "
                    f"expires in {state.expires_in:.1f}s)"
                )
            return Role.STANDBY, f"{said}; waiting for the lease"
        return Role.ACTIVE, f"{said}; lease epoch {self.held_epoch}"

    def _evaluate(self, cause: str | None = None) -> None:
        """Re-decide the role; ``cause``, when given, is why a change of role happened."""
        role, reason = self._decide()
        self.reason = reason
        if role == self.role:
            return
        self.role = role
        reason = cause or reason
        self.last = Transition(role, reason, time.time())
        self.transitions[role] += 1
        level = logging.INFO if role == Role.ACTIVE or "keepalived" in reason else logging.WARNING
        log.log(level, "HA role -> %s: %s", role, reason)
        if role != Role.ACTIVE and self._applying_role == Role.ACTIVE and self._applying:
            self._applying.cancel()  # demotion wins over a promotion still binding
        self._apply_wanted.set()

    async def _apply_roles(self) -> None:
        """Run on_role for each new role, one at a time, the newest role winning."""
        while True:
            await self._apply_wanted.wait()
            self._apply_wanted.clear()
            target, reason = self.role, self.reason
            if target == self.applied:
                continue
            self.applied = target
            self._applying_role = target
            self._applying = asyncio.create_task(self.on_role(target, reason), name="ha-on-role")
            try:
                await self._applying
            except asyncio.CancelledError:
                if not _being_cancelled():
                    log.info("promotion to %s interrupted by %s", target, self.role)
                    continue
                raise
            except Exception:
                log.exception("applying HA role %s failed", target)
            finally:
                self._applying_role = None
            if self.held_epoch is not None and not self._wants_active():
                self._lease_wake.set()  # drained: give the lease back now, not at the next round

    # ---- the lease --------------------------------------------------------------------

    async def _keep_lease(self) -> None:
        """Hold the lease while keepalived wants this node active; read it otherwise.

        A node waiting for another holder's lease tries again as that lease
        expires rather than up to ttl/3 later: after a crash, that is the failover.
        """
        assert self.lease is not None
        loop = asyncio.get_running_loop()
        interval = self.ttl / 3
        while True:
            self._lease_wake.clear()
            started = loop.time()
            ok = await self._lease_round(started)
            wake = started + (interval if ok else interval / 3)
            state = self.lease_state
            if ok and self.held_epoch is None and self._wants_active() and state.valid:
                wake = min(wake, loop.time() + state.expires_in + 0.005)
            with contextlib.suppress(TimeoutError):
                await _within(max(0.0, wake - loop.time()), self._lease_wake.wait())

    async def _lease_round(self, started: float) -> bool:
        assert self.lease is not None
        try:
            # Renewed too while a demotion drains, so that it can be given back afterwards
            # instead of the other node waiting for it to expire.
            if self._wants_active() or (self.held_epoch is not None and not self.settled):
                state = await _within(self.ttl / 3, self.lease.acquire())
                if state.holder == self.lease.holder:
                    self._granted(state, started)
                else:
                    self._lost(f"lease held by {state.holder} (epoch {state.epoch})")
            elif self.held_epoch is not None:
                await _within(self.ttl / 3, self.lease.release())
                log.info("lease epoch %d given back", self.held_epoch)
                self._drop_lease()
                state = await _within(self.ttl / 3, self.lease.read())
            else:
                state = await _within(self.ttl / 3, self.lease.read())
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if self.lease_error is None:
                log.warning("lease database unreachable: %s", reason)
            self.lease_error = reason
            return False
        if self.lease_error is not None:
            log.info("lease database reachable again")
        self.lease_error = None
        self.db_ok_at = asyncio.get_running_loop().time()
        self.lease_state = state
        self._evaluate()  # a waiting reason may have changed
        return True

    def _granted(self, state: LeaseState, started: float) -> None:
        """Held until ``started + ttl`` at the latest: the database set the expiry after
        ``started``. Step down ttl/3 before that unless renewed meanwhile."""
        if self.held_epoch != state.epoch:
            log.info("lease taken: epoch %d", state.epoch)
        self.held_epoch = state.epoch
        self.lease_state = state
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        step_down = started + self.ttl - self.ttl / 3
        self._expiry = loop.call_at(step_down, self._lost, "lease not renewed in time")
        self.serve_until = time.monotonic() + (step_down - loop.time())
        self._evaluate()
        if self.on_lease is not None:
            self.on_lease(self.serve_until)

    def _lost(self, reason: str) -> None:
        cause = None
        if self.held_epoch is not None:
            cause = f"lease epoch {self.held_epoch} lost: {reason}"
            log.warning("%s", cause)
        self._drop_lease()
        self._evaluate(cause)

    def _drop_lease(self) -> None:
        self.held_epoch = None
        self.serve_until = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
