"""One table maps what the domain says went wrong to what the API answers; sagas speak in
reasons only, and their parameters are typed values that survive the log."""

from __future__ import annotations

import pytest

from skylight.api.errors import ERROR_CODE, REASON_ERROR_CODE, STATUS, error_code
from skylight.errors import AlreadyExists, NotFound, OperationFailed, SkylightError
from skylight.events import reasons
from skylight.sagas import instance_create, instance_start
from skylight.sagas.definition import dump


@pytest.mark.parametrize("code", sorted(reasons.CATALOG))
def test_every_reason_code_answers_a_documented_status(code: str) -> None:
    exc = OperationFailed(reasons.make(code, "it failed"))
    assert error_code(exc) == REASON_ERROR_CODE[code]
    assert STATUS[error_code(exc)] in (409, 500, 503, 507)


def test_every_domain_error_has_a_code_and_a_status() -> None:
    for cls in [*SkylightError.__subclasses__()]:
        if cls is OperationFailed:
            continue
        assert cls in ERROR_CODE, f"{cls.__name__} has no entry in api/errors.py"
        assert STATUS[ERROR_CODE[cls]] < 600
    assert error_code(NotFound.by_id("instance", "x")) == "ObjectNotFound"
    assert error_code(AlreadyExists("instance", "x")) == "ObjectAlreadyExists"


def test_capacity_failures_answer_507_and_changed_state_409() -> None:
    full = OperationFailed(reasons.make("insufficient_capacity", "no room"))
    raced = OperationFailed(reasons.make("instance_changed_state", "raced"))
    assert STATUS[error_code(full)] == 507
    assert STATUS[error_code(raced)] == 409


def test_saga_params_round_trip_through_the_log() -> None:
    params = instance_start.Params(
        instance_id="i",
        project_id="p",
        vmm_id="v",
        ncpus=2,
        memory=4,
        cpu_platform=None,
        reason="user",
        actor={"type": "user", "id": "u"},
    )
    stored = dump(params)
    assert instance_start.SAGA.load(stored) == params
    # What an older version wrote: an extra key, and a null where there is now a default.
    older = {**stored, "saga_id": "s"}
    assert instance_start.SAGA.load(older) == params
    create = instance_create.SAGA.load(
        {
            "instance_id": "i",
            "project_id": "p",
            "actor": {"type": "user", "id": "u"},
            "start": True,
            **{k: None for k in instance_create.SETTINGS},
            "disk_plan": None,
        }
    )
    assert create.disk_plan == {} and create.anti_affinity_group_ids == []
