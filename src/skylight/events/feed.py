"""Wakes event streams when this replica commits events.

Streams read the store from a cursor; the feed only tells them when to look again, so a
stream never holds more than one page of events and a slow or vanished client costs
nothing but its own task. Events committed by other replicas are found by the streams'
periodic look (their poll interval).
"""

from __future__ import annotations

import asyncio


class Feed:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self.closed = False
        # Counts wake-ups: a reader notes it before it looks at the store and hands it to
        # ``wait``, so that a commit made while it was looking is not slept through.
        self.version = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, _kinds: list[str]) -> None:
        """Called from the store's worker threads after a commit that wrote events."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """The server is shutting down: streams end now instead of holding it up."""
        self.closed = True
        self._wake()

    async def wait(self, timeout: float, since: int | None = None) -> None:
        """Until something was committed here (after ``version`` was ``since``, if given),
        or ``timeout`` seconds."""
        if since is not None and since != self.version:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass
