"""Login throttling: after too many failed logins for one user, or from one client address,
within a window, further attempts are refused (429 with Retry-After) until the oldest
failure leaves the window. A success clears the user's count.

Kept in memory, per replica: an attacker spreading guesses over N replicas gets N times the
budget, still a few guesses a minute against a slow hash.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from skylight.errors import TooManyRequests


@dataclass
class LoginThrottle:
    per_user: int = 5
    per_address: int = 20
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def _recent(self, key: str) -> deque[float]:
        q = self._failures[key]
        horizon = self.clock() - self.window
        while q and q[0] <= horizon:
            q.popleft()
        if not q:
            del self._failures[key]
            return deque()
        return q

    def check(self, user_key: str, address: str) -> None:
        """Raise ``TooManyRequests`` if this attempt may not even be tried."""
        for key, limit in ((f"u:{user_key}", self.per_user), (f"a:{address}", self.per_address)):
            q = self._recent(key)
            if len(q) >= limit:
                wait = math.ceil(q[0] + self.window - self.clock())
                raise TooManyRequests(
                    "too many failed logins: wait before trying again", max(1, wait)
                )

    def failed(self, user_key: str, address: str) -> None:
        t = self.clock()
        self._failures[f"u:{user_key}"].append(t)
        self._failures[f"a:{address}"].append(t)

    def succeeded(self, user_key: str) -> None:
        self._failures.pop(f"u:{user_key}", None)
