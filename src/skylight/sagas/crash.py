"""Test-only crash points: the process dies, as under ``kill -9``, at a named point of a saga.

Recovery has windows that a random kill hits once in hundreds of runs (between a commit and
the work that must follow it, between an action and its log entry). Tests name the window
instead: ``SKYLIGHT_CRASH_AT=POINT:SAGA[/NODE]`` makes the first saga of that name (at that
node) that reaches ``POINT`` end the process with ``os._exit``, so nothing after it runs, not
even a ``finally``. Points:

* ``before_first_step`` — the saga exists in the store, but no step has been logged;
* ``before_log`` — the node's action returned, its ``succeeded`` entry is not written;
* ``after_end`` — the transaction that recorded the saga's end (and created any follow-up
  saga) committed; nothing after it ran.

Unset (always, outside tests), every check is a dictionary lookup that finds nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENV = "SKYLIGHT_CRASH_AT"
POINTS = ("before_first_step", "before_log", "after_end")
EXIT_STATUS = 137  # what a shell reports for a process killed by SIGKILL


@dataclass(frozen=True)
class CrashPoint:
    point: str
    saga: str
    node: str | None = None

    @classmethod
    def parse(cls, text: str) -> CrashPoint:
        point, sep, where = text.partition(":")
        if point not in POINTS or not sep or not where:
            raise ValueError(f"{ENV} takes POINT:SAGA[/NODE] with POINT one of {POINTS}")
        saga, _, node = where.partition("/")
        return cls(point, saga, node or None)

    @classmethod
    def from_env(cls) -> CrashPoint | None:
        text = os.environ.get(ENV)
        return cls.parse(text) if text else None

    def hit(self, point: str, saga: str, node: str | None = None) -> None:
        """Die here if this is the point asked for."""
        if point != self.point or saga != self.saga:
            return
        if self.node is not None and node != self.node:
            return
        log.warning("crash point %s reached in %s (%s): exiting", point, saga, node)
        logging.shutdown()
        os._exit(EXIT_STATUS)
