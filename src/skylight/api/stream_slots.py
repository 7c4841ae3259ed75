"""How many event streams may be open at once, on this replica: in all, and per user. A
stream past either cap is refused with 429 and Retry-After, before it holds anything;
a slot is given back when its stream ends, however it ends."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

from skylight.errors import TooManyRequests

RETRY_AFTER = 5


class StreamSlots:
    def __init__(self, total: int, per_user: int) -> None:
        self.total = total
        self.per_user = per_user
        self._open: Counter[str] = Counter()

    @property
    def in_use(self) -> int:
        return sum(self._open.values())

    def hold(self, user_id: str, body: AsyncIterator[str]) -> AsyncIterator[str]:
        """``body``, holding one of ``user_id``'s slots while it runs."""
        if self._open[user_id] >= self.per_user:
            raise TooManyRequests(
                f"you have {self.per_user} event streams open already: close one first",
                RETRY_AFTER,
            )
        if self.in_use >= self.total:
            raise TooManyRequests(
                "this server has as many event streams open as it serves; try again shortly",
                RETRY_AFTER,
            )
        self._open[user_id] += 1
        return _Held(self, user_id, body)

    def _release(self, user_id: str) -> None:
        self._open[user_id] -= 1
        if self._open[user_id] <= 0:
            del self._open[user_id]


class _Held:
    """The stream's body, giving its slot back exactly once: when the body ends or fails,
    when the server closes it, or, for a response never sent at all (its client gone
    first), when it is dropped."""

    def __init__(self, slots: StreamSlots, user_id: str, body: AsyncIterator[str]) -> None:
        self._slots, self._user_id, self._body = slots, user_id, body
        self._held = True

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self._user_id)

    def __aiter__(self) -> _Held:
        return self

    async def __anext__(self) -> str:
        try:
            return await anext(self._body)
        except BaseException:
            self._release()
            raise

    async def aclose(self) -> None:
        self._release()
        aclose = getattr(self._body, "aclose", None)
        if aclose is not None:
            await aclose()

    def __del__(self) -> None:
        self._release()
