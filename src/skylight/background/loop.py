"""The one skeleton of every periodic task: run a pass, then wait, forever.

A pass that fails is logged and the next one comes after the interval: a background task
never dies of one bad pass. A store outage is one warning line, not a traceback per pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from skylight.store import StoreUnavailable

log = logging.getLogger(__name__)


async def every(
    name: str,
    interval: float,
    one_pass: Callable[[], Awaitable[object]],
    *,
    wait_first: bool = False,
) -> None:
    """Run ``one_pass`` every ``interval`` seconds until cancelled (``wait_first``: the
    first pass, too, after an interval)."""
    outage = False
    if wait_first:
        await asyncio.sleep(interval)
    while True:
        try:
            await one_pass()
            outage = False
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as exc:
            if not outage:
                log.warning("%s: the store is unavailable (%s); trying again", name, exc)
            outage = True
        except Exception:
            log.exception("%s pass failed; trying again next interval", name)
        await asyncio.sleep(interval)
