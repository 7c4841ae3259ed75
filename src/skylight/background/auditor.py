"""The auditor: no instance stays in the dark, whatever bug or fault put it there.

Every replica looks, every ``audit_interval`` seconds, for instances that are not where their
user wants them, with no operation that has made progress for ``audit_after`` seconds and no
status reason (``store/audit.py`` says exactly which). Each is explained by an
``instance.operation_stuck`` event with reason ``operation_stuck``, which becomes its
``status_reason``; operators see which saga stalled, whose it was and where it stood. The
finding is re-checked under the instance's lock, so two replicas report it once, and it is
counted in ``skylight_instances_found_in_the_dark``: 0 in a healthy control plane.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.engine import Connection

from skylight.background.loop import every
from skylight.clock import now
from skylight.events import reasons
from skylight.events.kinds import Kind, control_plane
from skylight.instances.record import record
from skylight.services import Services
from skylight.store import audit, instances

log = logging.getLogger(__name__)
ACTOR = control_plane("auditor")


def _reason(suspect: audit.Suspect, quiet: float, replica: str) -> reasons.Reason:
    if suspect.saga_id is not None:
        message = (
            f"An operation on this instance has made no progress for {quiet:.0f} seconds, "
            "and nothing is under way to change that."
        )
    else:
        message = (
            "The instance is not where it was asked to be, and no operation is under way "
            f"to bring it there (unchanged for {quiet:.0f} seconds)."
        )
    return reasons.make(
        "operation_stuck",
        message,
        transient=False,
        action="Operators have been told and can see what stalled. Stopping and starting "
        "the instance again may clear it.",
        internal={
            "found_by": "auditor",
            "replica": replica,
            "case": suspect.case,
            "saga_id": suspect.saga_id,
            "saga": suspect.saga_name,
            "saga_state": suspect.saga_state,
            "saga_owner": suspect.saga_owner,
            "last_step": list(suspect.last_step) if suspect.last_step else None,
        },
    )


async def run_once(cp: Services) -> int:
    """One look; returns how many instances it explained."""
    before = now() - timedelta(seconds=cp.settings.audit_after)
    found = await cp.store.tx(lambda c: audit.suspects(c, before))
    explained = 0
    for suspect in found:

        def write(conn: Connection, suspect: audit.Suspect = suspect) -> bool:
            instances.lock(conn, suspect.instance_id)
            if not audit.still_dark(conn, suspect, before):
                return False
            since = suspect.quiet_since or before
            quiet = (now() - since).total_seconds()
            record(
                conn,
                suspect.instance_id,
                Kind.OPERATION_STUCK,
                ACTOR,
                operation_id=suspect.saga_id,
                reason=_reason(suspect, quiet, cp.sec_id),
                explains_status=True,
            )
            return True

        if await cp.store.tx(write):
            explained += 1
            cp.metrics.in_the_dark.labels(case=suspect.case).inc()
            log.error(
                "instance %s was in the dark (%s, saga %s); recorded instance.operation_stuck",
                suspect.instance_id,
                suspect.case,
                suspect.saga_id,
            )
    return explained


async def loop(services: Services) -> None:
    # Not at once: sagas resumed at start-up get an interval to log their next step.
    interval = services.settings.audit_interval
    await every("auditor", interval, lambda: run_once(services), wait_first=True)
