"""A sled agent's error as the reason an operation failed, in the operation's own words.

The sled that did not answer is the sled's failure (``sled_failure``); an answer that says
the VMM failed is the VMM's (``vmm_failure``). Either may pass by itself. The agent's own text
is for operators only.
"""

from __future__ import annotations

from collections.abc import Callable

from skylight.events import reasons
from skylight.events.reasons import Reason
from skylight.sled.agent import SledAgentError


def explainer(
    sled_message: str, vmm_message: str, action: str
) -> Callable[[Exception], Reason | None]:
    """The reason for a sled agent's error: ``sled_message`` when the sled did not answer,
    ``vmm_message`` when it said the VMM failed, both telling the user to ``action``; None
    for any other exception."""

    def explain(exc: Exception) -> Reason | None:
        if not isinstance(exc, SledAgentError):
            return None
        if exc.kind in ("unreachable", "timeout"):
            code, message = "sled_failure", sled_message
        else:
            code, message = "vmm_failure", vmm_message
        return reasons.make(
            code,
            message,
            action=action,
            internal={"sled_agent_error": exc.kind, "detail": exc.message},
        )

    return explain
