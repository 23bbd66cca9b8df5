"""Live trace events for watchers (the API's Server-Sent Events stream).

The hub is one more trace sink: the node fans every finished event out to the
files, the database writer and the hub. ``put`` runs on the data plane, so it
only appends the event to the queue of each subscriber whose filter takes it
and never waits: a subscriber's queue is bounded, and when a watcher reads
too slowly the newest events are dropped and counted for that subscriber
alone, to be reported to it in order (see :meth:`Subscription.receive`).
With nobody watching, ``put`` is a loop over an empty tuple.

Everything runs on the node's event loop: call ``put`` from the loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from smps.proxy.records import TraceEvent

QUEUE_LIMIT = 1000  # events waiting per subscriber before that subscriber loses events

EventFilter = Callable[[TraceEvent], bool]


class Subscription:
    """One watcher's bounded queue of events; use through :meth:`TraceHub.subscribe`."""

    __slots__ = ("_events", "_hub", "_wake", "closed", "dropped", "limit", "wants")

    def __init__(self, hub: TraceHub, wants: EventFilter | None, limit: int):
        self._hub = hub
        self.wants = wants
        self.limit = limit
        self.dropped = 0  # events lost since the last receive()
        self.closed = False
        self._events: deque[TraceEvent] = deque()
        self._wake = asyncio.Event()

    def offer(self, event: TraceEvent) -> None:
        """Queue ``event`` if the filter takes it; count it as dropped when the queue is full."""
        if self.wants is not None and not self.wants(event):
            return
        if len(self._events) >= self.limit:
            self.dropped += 1
            self._hub.dropped += 1
        else:
            self._events.append(event)
        self._wake.set()

    async def receive(self, timeout: float) -> tuple[list[TraceEvent], int]:
        """Wait up to ``timeout`` s; return (events, events dropped after them).

        Events are dropped only while the queue is full, so every dropped one
        came after every queued one: reporting the count after the events keeps
        the watcher's view in order. ``([], 0)`` means nothing happened (time
        for a heartbeat) or the subscription was closed (see ``closed``).
        """
        if not self._events and not self.dropped and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # wait_for can swallow a cancel (3.11)
                    await self._wake.wait()
        self._wake.clear()
        events = list(self._events)
        self._events.clear()
        dropped, self.dropped = self.dropped, 0
        return events, dropped

    def close(self) -> None:
        """Stop the subscription; a waiting receive() returns at once."""
        self.closed = True
        self._hub._remove(self)
        self._wake.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class TraceHub:
    """Fan-out of new trace events to live subscribers; a trace sink (``put``)."""

    def __init__(self, queue_limit: int = QUEUE_LIMIT):
        self.queue_limit = queue_limit
        self.dropped = 0  # events lost by slow subscribers, over all of them
        self._subscribers: tuple[Subscription, ...] = ()

    def put(self, event: TraceEvent) -> None:
        for subscriber in self._subscribers:
            subscriber.offer(event)

    def subscribe(self, wants: EventFilter | None = None) -> Subscription:
        """A new subscription to events that ``wants`` takes (all when None);
        close it (or use it as a context manager) when the watcher leaves."""
        subscription = Subscription(self, wants, self.queue_limit)
        self._subscribers = (*self._subscribers, subscription)
        return subscription

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription (the HTTP server is shutting down)."""
        for subscription in self._subscribers:
            subscription.close()

    def _remove(self, subscription: Subscription) -> None:
        self._subscribers = tuple(s for s in self._subscribers if s is not subscription)
