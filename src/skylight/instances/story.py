"""The story of an instance's trouble: since when, what happened, what Skylight is doing about
it, and what its user can do.

An instance's ``status_reason`` is the newest event of its trouble ("restart attempt 3
failed: no room"); alone it hides where the trouble began (the crash), that Skylight is on it
(the next attempt, and when) or that it has stopped trying (and why). The story puts the
four together from what the instance row already holds (its status event, the event its
trouble began with, its auto-restart fields), so every reader (API, CLI, console) tells the
same one, and the fix is said once: in ``action``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from skylight.clock import as_utc
from skylight.events.kinds import Kind
from skylight.store import Row
from skylight.wire import JsonObject

AutoRestartState = Literal["scheduled", "restarting", "gave_up", "off"]


@dataclass(frozen=True)
class AutoRestart:
    """Where automatic restart stands for an instance in trouble."""

    state: AutoRestartState
    attempts: int  # automatic restarts begun since the trouble began
    next_attempt: datetime | None


@dataclass(frozen=True)
class Story:
    since: datetime
    happened: str
    doing: str
    action: str | None
    auto_restart: AutoRestart | None


# The fix when Skylight itself is the one fixing it (a VMM or sled that died): nothing to do.
_SKYLIGHT_FIXES = ("vmm_failure", "sled_failure")
_WAITING_FIX = (
    "Nothing is needed: Skylight restarts it by itself. To try at once, start it; to stop "
    "the retries, stop it."
)


def _clock(t: datetime) -> str:
    return as_utc(t).strftime("%H:%M:%S UTC")


def _auto_restart(row: Row, starting: bool) -> AutoRestart | None:
    if row.auto_restart_policy == "never":
        return AutoRestart("off", row.auto_restart_attempts, None)
    if row.intended_state != "running":
        return None  # stopped by a user (or a failed user start): nothing is planned
    nxt = row.time_next_auto_restart and as_utc(row.time_next_auto_restart)
    if nxt is not None:
        return AutoRestart("scheduled", row.auto_restart_attempts, nxt)
    if starting and row.auto_restart_attempts:
        return AutoRestart("restarting", row.auto_restart_attempts, None)
    if row.state == "failed" and row.status_kind == Kind.AUTO_RESTART_GAVE_UP:
        return AutoRestart("gave_up", row.auto_restart_attempts, None)
    return None


def _happened(row: Row, reason: JsonObject, origin: JsonObject | None) -> str:
    first = str((origin or reason).get("message", "")).strip()
    if origin is None or row.status_event_id == row.status_origin_event_id:
        return first
    since = f"{_clock(row.origin_time)}: {first}"
    latest = str(reason.get("message", "")).strip()
    if row.status_kind in (Kind.AUTO_RESTART_FAILED, Kind.AUTO_RESTART_GAVE_UP):
        return f"{since} Automatic restart attempt {row.auto_restart_attempts} failed: {latest}"
    if row.status_kind == Kind.START_FAILED:
        return f"{since} A start since then failed: {latest}"
    return f"{since} Then: {latest}"


def _doing(row: Row, reason: JsonObject, auto: AutoRestart | None, starting: bool) -> str:
    if auto is not None and auto.state == "scheduled":
        assert auto.next_attempt is not None
        attempt = f"attempt {auto.attempts + 1}"
        policy = (
            f"its {row.auto_restart_policy or 'best_effort'} auto-restart policy retries "
            "while the reason may pass"
        )
        if starting:
            return (
                f"Starting it now, as a user asked. Should that fail for a reason that may "
                f"pass, automatic restarts carry on: {attempt} at {_clock(auto.next_attempt)}."
            )
        return f"Restarting it automatically at {_clock(auto.next_attempt)} ({attempt}; {policy})."
    if auto is not None and auto.state == "restarting":
        return f"Restarting it automatically now (attempt {auto.attempts})."
    if starting:
        return "Starting it now."
    if auto is not None and auto.state == "gave_up":
        return (
            f"Nothing: automatic restarts stopped after attempt {auto.attempts}, because the "
            "reason will not pass by itself."
        )
    if auto is not None and auto.state == "off" and row.state == "failed":
        return "Nothing: its auto-restart policy is never, so it stays failed until started."
    if reason.get("code") == "operation_stuck":
        return "Nothing until operators resolve the operation that could not be undone."
    if row.state == "failed":
        return "Nothing: it stays failed until it is started or stopped."
    return "Nothing: a start that a user asked for is not retried."


def _action(reason: JsonObject, auto: AutoRestart | None) -> str | None:
    fixing = auto is not None and auto.state in ("scheduled", "restarting")
    if fixing and reason.get("code") in _SKYLIGHT_FIXES:
        return _WAITING_FIX
    if reason.get("code") in _SKYLIGHT_FIXES:
        return "Start the instance again; it will be placed afresh."
    action = reason.get("action")
    return str(action) if action else None


def of(row: Row, reason: JsonObject) -> Story:
    """The story of ``row``'s trouble; ``reason`` is its status reason (as the caller may see
    it: the origin's is redacted the same way by the caller)."""
    origin = row.origin_reason if row.status_origin_event_id else None
    starting = (row.state == "vmm" and row.vmm_state in ("creating", "starting")) or (
        row.state == "no_vmm" and row.intended_state == "running"
    )
    auto = _auto_restart(row, starting)
    since = row.origin_time if origin is not None else row.status_time
    return Story(
        since=as_utc(since),
        happened=_happened(row, reason, origin),
        doing=_doing(row, reason, auto, starting),
        action=_action(reason, auto),
        auto_restart=auto,
    )
