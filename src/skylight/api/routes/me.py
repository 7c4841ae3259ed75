"""/v1/me"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from skylight.api import deps, models

router = APIRouter(tags=["session"])
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@router.get("/v1/me", response_model=models.CurrentUser)
async def current_user_view() -> models.CurrentUser:
    return models.CurrentUser(
        id=deps.USER_ID,
        display_name="privileged",
        silo_id=deps.SILO_ID,
        silo_name="default",
        fleet_viewer=True,
        silo_admin=True,
        time_created=_EPOCH,
        time_modified=_EPOCH,
    )
