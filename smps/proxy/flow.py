"""Back-pressure on the SMSCs (`flow.on_overload: pause`): when the originals in
flight of a data plane reach 90 % of `flow.max_inflight`, SMPS stops reading from
the SMSC sessions that keep sending, and reads again from all of them once in
flight is down to 70 %. With `throttle` (the default) nothing pauses: a full
table answers ESME_RTHROTTLED instead (the dispatcher)."""

import logging

from smps.smpp.session import Session

log = logging.getLogger("smps.proxy")


class ReadPause:
    """The SMSC sessions paused for too much in flight, and the two thresholds."""

    __slots__ = ("enabled", "pause_at", "paused", "resume_at")

    def __init__(self) -> None:
        self.paused: set[Session] = set()
        self.configure(False, 1)

    def configure(self, enabled: bool, capacity: int) -> None:
        self.enabled = enabled
        self.pause_at = max(1, int(capacity * 0.9))
        self.resume_at = int(capacity * 0.7)

    # The dispatcher calls `added` only when enabled and `released` only when something
    # is paused: the checks stay inline on the message path.

    def added(self, session: Session, in_flight: int) -> None:
        """An original from ``session`` is in flight: pause its reads past the mark."""
        if in_flight < self.pause_at:
            return
        if session.is_open and session not in self.paused:
            session.pause_reading()
            self.paused.add(session)
            log.warning("flow: %d originals in flight; pausing reads from %s",
                        in_flight, session.name)  # fmt: skip

    def released(self, in_flight: int) -> None:
        """An original left: read again from every paused session below the mark."""
        if in_flight <= self.resume_at:
            for session in self.paused:
                session.resume_reading()
            log.info("flow: in flight down to %d; reading again", in_flight)
            self.paused.clear()
