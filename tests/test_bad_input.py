"""Bad input, endpoint family by endpoint family: every case is a 4xx with an Oxide Error body
whose message names the problem, never a 500, and leaves the stored state as it was."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import GiB, instance_body
from tests.oxide_schema import (
    all_pages,
    assert_conforms,
    assert_error,
    fingerprint,
    snapshot,
)

P = {"project": "demo"}
MiB = 1024**2
JSON = {"content-type": "application/json"}
UPDATE = {
    "ncpus": 2,
    "memory": 2 * GiB,
    "auto_restart_policy": None,
    "boot_disk": None,
    "cpu_platform": None,
    "enable_jumbo_frames": False,
}
UNKNOWN = str(uuid.uuid4())
BAD_NAMES = ["Demo", "1x", "x-", "-x", "a" * 64, "", "a_b", "a b", "x\n", str(uuid.uuid4())]


class Case:
    """One bad request and what its error must say."""

    def __init__(
        self,
        method: str,
        url: str,
        status: int | None = None,
        mentions: tuple[str, ...] = (),
        error_code: str | None = None,
        **request: Any,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.mentions = mentions
        self.error_code = error_code
        self.request = request

    def __repr__(self) -> str:
        return f"{self.method} {self.url} {self.request}"[:300]


@pytest.fixture
def world(client: TestClient) -> dict[str, Any]:
    """A project with a running and a stopped instance: something for bad input to break."""
    r = client.post("/v1/projects", json={"name": "demo", "description": "bad input"})
    assert r.status_code == 201, r.text
    running = client.post("/v1/instances", params=P, json=instance_body("vm", 2, 2))
    assert running.status_code == 201, running.text
    idle = client.post("/v1/instances", params=P, json=instance_body("idle", 1, 1, start=False))
    assert idle.status_code == 201, idle.text
    sled = all_pages(client, "/v1/system/hardware/sleds")[0]["id"]
    return {"vm": running.json()["id"], "idle": idle.json()["id"], "sled": sled}


def run_cases(client: TestClient, cases: list[Case]) -> None:
    before = snapshot(client)
    cheap = fingerprint(client)
    for case in cases:
        r = client.request(case.method, case.url, **case.request)
        assert r.status_code < 500, (case, r.status_code, r.text)
        try:
            assert_error(r, case.status, case.error_code, *case.mentions)
        except AssertionError as exc:
            raise AssertionError(f"{case}: {exc}") from None
        if case.method != "GET":  # (a GET changes nothing by construction: no need to look)
            assert fingerprint(client) == cheap, f"{case} changed the stored state"
    assert snapshot(client) == before, "events or faults changed"


def body_cases(method: str, url: str, valid: dict[str, Any], **params: Any) -> Iterator[Case]:
    """What can be wrong with any JSON body, whatever the endpoint."""
    kw: dict[str, Any] = {"params": params} if params else {}
    yield Case(method, url, 400, ("json",), content=b'{"name": ', headers=JSON, **kw)
    yield Case(method, url, 400, (), content=b"\xff\xfe\x00garbage", headers=JSON, **kw)
    yield Case(method, url, 400, ("body",), content=b"", headers=JSON, **kw)
    yield Case(method, url, 400, (), content=b"[" * 50_000 + b"]" * 50_000, headers=JSON, **kw)
    for not_object in ([valid], "text", None, 5):
        yield Case(method, url, 400, (), json=not_object, **kw)
    # valid JSON, but not declared as such
    yield Case(
        method, url, None, (), content=b"name=x", headers={"content-type": "text/plain"}, **kw
    )
    # more than 1 MiB: refused before anything reads it, declared or streamed
    big = {**valid, "padding": "x" * (MiB + 16)}
    yield Case(method, url, 413, ("size",), "PayloadTooLarge", json=big, **kw)

    def chunks() -> Iterator[bytes]:
        yield b'{"padding": "'
        for _ in range(17):
            yield b"y" * 65536
        yield b'"}'

    yield Case(method, url, 413, (), "PayloadTooLarge", content=chunks(), headers=JSON, **kw)


def field_cases(
    method: str, url: str, valid: dict[str, Any], bad: dict[str, list[Any]], **params: Any
) -> Iterator[Case]:
    """Each field with each bad value, one at a time: the message names the field."""
    kw: dict[str, Any] = {"params": params} if params else {}
    for field, values in bad.items():
        for value in values:
            yield Case(method, url, 400, (field,), json={**valid, field: value}, **kw)


def missing_cases(
    method: str, url: str, valid: dict[str, Any], required: list[str], **params: Any
) -> Iterator[Case]:
    """Each required field left out, one at a time: the message names the field."""
    kw: dict[str, Any] = {"params": params} if params else {}
    for field in required:
        body = {k: v for k, v in valid.items() if k != field}
        yield Case(method, url, 400, (field,), json=body, **kw)


# -- projects --------------------------------------------------------------------------------


def test_bad_input_projects(client: TestClient, world: dict[str, Any]) -> None:
    valid = {"name": "fresh", "description": "ok"}
    cases = [
        *body_cases("POST", "/v1/projects", valid),
        *missing_cases("POST", "/v1/projects", valid, ["name", "description"]),
        *field_cases(
            "POST",
            "/v1/projects",
            valid,
            {
                "name": [*BAD_NAMES, 5, None, ["fresh"], {"n": 1}, True],
                "description": [5, None, ["x"], "x" * 513, "nul\x00byte", False],
            },
        ),
        Case(
            "POST",
            "/v1/projects",
            400,
            ("demo",),
            "ObjectAlreadyExists",
            json={**valid, "name": "demo"},
        ),
        *body_cases("PUT", "/v1/projects/demo", valid),
        *field_cases(
            "PUT",
            "/v1/projects/demo",
            valid,
            {
                "name": ["Demo", "x-", "a" * 64, BAD_NAMES[-1], 5],
                "description": [5, ["x"], "x" * 513, "\x00"],
            },
        ),
        Case("PUT", f"/v1/projects/{UNKNOWN}", 404, (UNKNOWN,), "ObjectNotFound", json=valid),
        Case("PUT", "/v1/projects/nope", 404, ("nope",), "ObjectNotFound", json=valid),
        Case("PUT", "/v1/projects/Demo", 400, ("project",), json=valid),
        Case("GET", f"/v1/projects/{UNKNOWN}", 404, (UNKNOWN,), "ObjectNotFound"),
        Case("GET", "/v1/projects/nope", 404, ("nope",), "ObjectNotFound"),
        Case("GET", "/v1/projects/" + "a" * 64, 400, ("project",)),
        Case("DELETE", f"/v1/projects/{UNKNOWN}", 404, (UNKNOWN,), "ObjectNotFound"),
        Case("DELETE", "/v1/projects/nope", 404, ("nope",), "ObjectNotFound"),
        Case("DELETE", "/v1/projects/x-", 400, ("project",)),
        # not empty
        Case("DELETE", "/v1/projects/demo", 400, ("instance",)),
        Case("GET", "/v1/projects", 400, ("limit",), params={"limit": "many"}),
        Case("GET", "/v1/projects", 400, ("limit",), params={"limit": 0}),
        Case("GET", "/v1/projects", 400, ("sort_by",), params={"sort_by": "newest"}),
        Case("GET", "/v1/projects", 400, ("page_token",), params={"page_token": "nope"}),
    ]
    run_cases(client, cases)


# -- instances -------------------------------------------------------------------------------


def test_bad_input_instance_create(client: TestClient, world: dict[str, Any]) -> None:
    valid = instance_body("fresh", 2, 2, start=False)
    url = "/v1/instances"
    sizes = {
        "ncpus": [0, 1000, 255, -1, 65536, 2**64, "2", 2.5, None, True, [2]],
        "memory": [
            -1,
            0,
            2**64,
            2**63,
            GiB + 1,
            GiB + MiB // 2,
            512 * MiB,
            1537 * GiB,
            "4294967296",
            "4 GiB",
            4.5,
            None,
            False,
        ],
    }
    cases = [
        *body_cases("POST", url, valid, **P),
        *missing_cases(
            "POST", url, valid, ["name", "description", "hostname", "ncpus", "memory"], **P
        ),
        *field_cases("POST", url, valid, sizes, **P),
        *field_cases(
            "POST",
            url,
            valid,
            {
                "name": [*BAD_NAMES, 5, None],
                "hostname": ["-x", "x-", "a..b", "a_b", "x" * 254, "", "x\n", 5, None],
                "description": ["x" * 513, 5, None, "\x00"],
                "start": ["yes", 1, None, "true"],
                "auto_restart_policy": ["sometimes", 5, "Never"],
                "cpu_platform": ["pentium", 5, "AMD_MILAN"],
                "enable_jumbo_frames": ["no", 0],
                "user_data": [5, "x" * (32 * 1024 + 1), "\x00"],
                "ssh_public_keys": ["key", [5]],
                "disks": ["disk", [5]],
                "anti_affinity_groups": ["group", [5]],
            },
            **P,
        ),
        # sizes out of range are refused even when the JSON types are right
        Case("POST", url, 400, ("ncpus",), json={**valid, "ncpus": 0}, params=P),
        Case("POST", url, 400, ("memory",), json={**valid, "memory": 2**64}, params=P),
        # a number too long to be a number
        Case(
            "POST",
            url,
            400,
            (),
            content=b'{"name": "x", "description": "", "hostname": "x", "ncpus": 1, "memory": '
            + b"9" * 5000
            + b"}",
            headers=JSON,
            params=P,
        ),
        Case(
            "POST", url, 400, ("vm",), "ObjectAlreadyExists", json={**valid, "name": "vm"}, params=P
        ),
        Case("POST", url, 400, ("project",), json=valid),
        Case("POST", url, 404, ("nope",), "ObjectNotFound", json=valid, params={"project": "nope"}),
        Case(
            "POST", url, 404, (UNKNOWN,), "ObjectNotFound", json=valid, params={"project": UNKNOWN}
        ),
        Case("POST", url, 400, ("project",), json=valid, params={"project": "Bad"}),
        Case(
            "POST",
            url,
            None,
            (),
            json={**valid, "disks": [{"type": "attach", "name": "nope"}]},
            params=P,
        ),
        Case("POST", url, None, (), json={**valid, "anti_affinity_groups": ["nope"]}, params=P),
        Case(
            "POST",
            url,
            None,
            (),
            json={**valid, "boot_disk": {"type": "attach", "name": "x"}},
            params=P,
        ),
    ]
    run_cases(client, cases)


def test_bad_input_instance_update_and_actions(client: TestClient, world: dict[str, Any]) -> None:
    vm, idle = world["vm"], world["idle"]
    url = "/v1/instances/idle"
    cases = [
        *body_cases("PUT", url, UPDATE, **P),
        *missing_cases("PUT", url, UPDATE, list(UPDATE), **P),
        *field_cases(
            "PUT",
            url,
            UPDATE,
            {
                "ncpus": [0, 1000, -1, "2", None],
                "memory": [-1, 0, GiB + 1, 2**64, "1", None],
                "auto_restart_policy": ["sometimes", 5],
                "cpu_platform": ["pentium", 5],
                "enable_jumbo_frames": ["no", None],
                "boot_disk": [5, ["x"]],
            },
            **P,
        ),
        Case(
            "PUT",
            url,
            404,
            ("nope",),
            "ObjectNotFound",
            json={**UPDATE, "boot_disk": "nope"},
            params=P,
        ),
        # a running instance keeps its size
        Case("PUT", "/v1/instances/vm", 400, ("stopped",), json={**UPDATE, "ncpus": 4}, params=P),
        Case("PUT", f"/v1/instances/{UNKNOWN}", 404, (UNKNOWN,), "ObjectNotFound", json=UPDATE),
        Case("PUT", f"/v1/instances/{idle}", 400, ("project",), json=UPDATE, params=P),
        # a running instance cannot be deleted, a stopped one not rebooted
        Case("DELETE", "/v1/instances/vm", 400, ("running",), params=P),
        Case("POST", "/v1/instances/idle/reboot", 400, ("running",), params=P),
    ]
    for action in ("start", "stop", "reboot", "events"):
        method = "GET" if action == "events" else "POST"
        cases += [
            Case(method, f"/v1/instances/{UNKNOWN}/{action}", 404, (UNKNOWN,), "ObjectNotFound"),
            Case(
                method, f"/v1/instances/nope/{action}", 404, ("nope",), "ObjectNotFound", params=P
            ),
            Case(method, f"/v1/instances/{vm}/{action}", 400, ("project",), params=P),
            Case(method, f"/v1/instances/vm/{action}", 400, ("project",)),
            Case(method, f"/v1/instances/Vm/{action}", 400, ("instance",), params=P),
            Case(
                method,
                f"/v1/instances/vm/{action}",
                404,
                ("nope",),
                "ObjectNotFound",
                params={"project": "nope"},
            ),
            Case(method, f"/v1/instances/vm/{action}", 400, ("project",), params={"project": "x-"}),
        ]
    for method in ("GET", "DELETE"):
        cases += [
            Case(method, f"/v1/instances/{UNKNOWN}", 404, (UNKNOWN,), "ObjectNotFound"),
            Case(method, "/v1/instances/nope", 404, ("nope",), "ObjectNotFound", params=P),
            Case(method, f"/v1/instances/{vm}", 400, ("project",), params=P),
            Case(method, "/v1/instances/vm", 400, ("project",)),
            Case(method, "/v1/instances/" + "a" * 64, 400, ("instance",), params=P),
        ]
    events = f"/v1/instances/{vm}/events"
    cases += [
        Case("GET", events, 400, ("severity",), params={"severity": "fatal"}),
        Case("GET", events, 400, ("since",), params={"since": "yesterday"}),
        Case("GET", events, 400, ("limit",), params={"limit": 0}),
        Case("GET", events, 400, ("limit",), params={"limit": -5}),
        Case("GET", events, 400, ("page_token",), params={"page_token": "x"}),
        Case("GET", events, 400, ("kind",), params={"kind": "instance.\x00"}),
        Case("GET", events, 400, ("operation",), params={"operation": "\x00"}),
        Case("GET", "/v1/instances", 400, ("project",)),
        Case("GET", "/v1/instances", 404, ("nope",), "ObjectNotFound", params={"project": "nope"}),
        Case("GET", "/v1/instances", 400, ("limit",), params={**P, "limit": 10**9}),
        Case("GET", "/v1/instances", 400, ("sort_by",), params={**P, "sort_by": "id_descending"}),
    ]
    run_cases(client, cases)


# -- sleds, faults, routes -------------------------------------------------------------------


def test_bad_input_sleds_and_faults(client: TestClient, world: dict[str, Any]) -> None:
    sled = world["sled"]
    policy = f"/v1/system/hardware/sleds/{sled}/provision-policy"
    valid = {"state": "non_provisionable"}
    fault = {"at": "ensure_running", "kind": "error", "count": 1, "message": "x"}
    faults = "/v1/system/sim/faults"
    cases = [
        Case("GET", "/v1/system/hardware/sleds/not-a-uuid", 400, ("not-a-uuid",)),
        Case("GET", f"/v1/system/hardware/sleds/{UNKNOWN}", 404, (UNKNOWN,), "ObjectNotFound"),
        Case("GET", "/v1/system/hardware/sleds/nope/instances", 400, ("nope",)),
        Case(
            "GET",
            f"/v1/system/hardware/sleds/{UNKNOWN}/instances",
            404,
            (UNKNOWN,),
            "ObjectNotFound",
        ),
        Case(
            "GET",
            f"/v1/system/hardware/sleds/{sled}/instances",
            400,
            ("limit",),
            params={"limit": 0},
        ),
        Case("GET", "/v1/system/hardware/sleds", 400, ("limit",), params={"limit": "x"}),
        Case(
            "GET",
            "/v1/system/hardware/sleds",
            400,
            ("sort_by",),
            params={"sort_by": "name_ascending"},
        ),
        *body_cases("PUT", policy, valid),
        *missing_cases("PUT", policy, valid, ["state"]),
        *field_cases("PUT", policy, valid, {"state": ["expunged", "", 5, None, ["provisionable"]]}),
        Case(
            "PUT",
            f"/v1/system/hardware/sleds/{UNKNOWN}/provision-policy",
            404,
            (UNKNOWN,),
            "ObjectNotFound",
            json=valid,
        ),
        Case("PUT", "/v1/system/hardware/sleds/nope/provision-policy", 400, ("nope",), json=valid),
        *body_cases("POST", faults, fault),
        *missing_cases("POST", faults, fault, ["at", "kind"]),
        *field_cases(
            "POST",
            faults,
            fault,
            {
                "at": ["boot", 5, None],
                "kind": ["explode", 5],
                "count": [0, -1, "1", 10**7],
                "message": ["x" * 1025, 5, "\x00"],
                "sled": ["nope", 5],
                "instance": ["nope", 5],
            },
        ),
        Case("POST", faults, 404, (UNKNOWN,), "ObjectNotFound", json={**fault, "sled": UNKNOWN}),
        Case(
            "POST", faults, 404, (UNKNOWN,), "ObjectNotFound", json={**fault, "instance": UNKNOWN}
        ),
        Case("DELETE", f"{faults}/{UNKNOWN}", 404, (UNKNOWN,), "ObjectNotFound"),
        Case(
            "POST", f"/v1/system/sim/sleds/{UNKNOWN}/power-off", 404, (UNKNOWN,), "ObjectNotFound"
        ),
        Case("POST", "/v1/system/sim/sleds/nope/power-on", 400, ("nope",)),
        Case("POST", "/v1/system/sim/instances/idle/crash", 400, ("running",), params=P),
        Case(
            "POST", f"/v1/system/sim/instances/{UNKNOWN}/crash", 404, (UNKNOWN,), "ObjectNotFound"
        ),
    ]
    run_cases(client, cases)


def test_unknown_routes_and_methods(client: TestClient, world: dict[str, Any]) -> None:
    cases = [
        Case("GET", "/v1/nope", 404),
        Case("GET", "/v2/projects", 404),
        Case("GET", "/v1/projects/demo/instances", 404),
        Case("POST", "/v1/instances/vm/explode", 404, params=P),
        Case("GET", "/v1/system/hardware/racks", 404),
        Case("GET", "/v1/instances/vm/events/nope", 404, params=P),
        Case("PATCH", "/v1/projects/demo", 405, json={"description": "x"}),
        Case("DELETE", "/v1/projects", 405),
        Case("POST", "/v1/me", 405, json={}),
        Case("PUT", "/v1/system/hardware/sleds", 405, json={}),
        Case("GET", "/v1/instances/vm/start", 405, params=P),
        Case("POST", "/v1/instances/vm", 405, params=P, json={}),
    ]
    run_cases(client, cases)


# -- random bodies ---------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(valid, JSON_VALUES)


NAMES = st.one_of(
    st.sampled_from(["fresh", "vm", "demo", "Bad", "a" * 64, "x-"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True),
)
INSTANCE_FIELDS = {
    "name": _maybe(NAMES),
    "description": _maybe(TEXT),
    "hostname": _maybe(st.sampled_from(["web", "a.b", "-x", "x" * 254])),
    "ncpus": _maybe(st.integers(min_value=-2, max_value=300)),
    "memory": _maybe(st.sampled_from([GiB, 2 * GiB, GiB + 1, 0, -GiB, 2**64, 4 * GiB])),
    "start": _maybe(st.just(False)),
    "auto_restart_policy": _maybe(st.sampled_from(["never", "best_effort", None])),
    "cpu_platform": _maybe(st.sampled_from(["amd_milan", "amd_turin", None])),
    "enable_jumbo_frames": _maybe(st.booleans()),
    "user_data": _maybe(TEXT),
    "ssh_public_keys": _maybe(st.lists(TEXT, max_size=2)),
    "disks": _maybe(st.just([])),
}
PROJECT_FIELDS = {"name": _maybe(NAMES), "description": _maybe(TEXT)}


def random_bodies(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    objects = st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda body: st.dictionaries(TEXT, JSON_VALUES, max_size=2).map(
            lambda extra: {**extra, **body}
        )
    )
    return st.one_of(objects, objects, objects, JSON_VALUES)


RANDOM = settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _check_random_post(
    client: TestClient, url: str, params: dict[str, Any], body: Any, schema: str
) -> None:
    before = fingerprint(client)
    r = client.post(url, params=params, json=body)
    assert r.status_code < 500, (body, r.status_code, r.text)
    if r.status_code == 201:
        created = r.json()
        assert_conforms(created, schema)
        assert isinstance(body, dict) and created["name"] == body["name"]
        return
    assert_error(r)
    assert fingerprint(client) == before, f"{body!r} was refused but changed the stored state"


def test_random_instance_create_bodies(client: TestClient, world: dict[str, Any]) -> None:
    @RANDOM
    @given(body=random_bodies(INSTANCE_FIELDS))
    def post(body: Any) -> None:
        _check_random_post(client, "/v1/instances", P, body, "Instance")

    before = snapshot(client)
    post()
    _only_additions(before, snapshot(client))


def test_random_project_create_bodies(client: TestClient, world: dict[str, Any]) -> None:
    @RANDOM
    @given(body=random_bodies(PROJECT_FIELDS))
    def post(body: Any) -> None:
        _check_random_post(client, "/v1/projects", {}, body, "Project")

    before = snapshot(client)
    post()
    _only_additions(before, snapshot(client))


def _only_additions(before: dict[str, Any], after: dict[str, Any]) -> None:
    """After the random bodies, what existed before is untouched: created projects and
    instances may have been added, nothing else."""
    assert after["faults"] == before["faults"]
    old_projects = {p["id"]: p for p in before["projects"]}
    assert {p["id"]: p for p in after["projects"] if p["id"] in old_projects} == old_projects
    for pid, items in before["instances"].items():
        old = {i["id"]: i for i in items}
        assert {i["id"]: i for i in after["instances"][pid] if i["id"] in old} == old
    for iid, events in before["events"].items():
        assert after["events"][iid] == events


# -- found by the fuzzer (tests/test_fuzz.py) ------------------------------------------------


def test_a_long_hostname_that_ends_badly_is_refused_at_once(
    client: TestClient, world: dict[str, Any]
) -> None:
    """The hostname pattern used to backtrack: refusing 7 labels of 10 letters and a "!"
    took 2 s of the event loop, each more label 10 times longer (8: 18 s)."""
    hostname = ".".join(["a" * 10] * 7) + "!"
    before = fingerprint(client)
    started = time.monotonic()
    r = client.post("/v1/instances", params=P, json=instance_body("fresh", 1, 1, hostname=hostname))
    elapsed = time.monotonic() - started
    assert_error(r, 400, None, "hostname")
    assert elapsed < 0.5, f"{elapsed:.2f}s to refuse a hostname"
    assert fingerprint(client) == before
    # and the labels are still the RFC 1035 ones
    for i, good in enumerate(("a", "a-b", "A9", "web.example", "1.2.3.x", "a" * 63 + ".b")):
        body = instance_body(f"good{i}", 1, 1, hostname=good, start=False)
        assert client.post("/v1/instances", params=P, json=body).status_code == 201, good
    for bad in ("-a", "a-", "a..b", ".a", "a.", "a_b", "a.-b", "a b"):
        assert_error(
            client.post("/v1/instances", params=P, json=instance_body("bad", hostname=bad)),
            400,
            None,
            "hostname",
        )


def _receivers(client: TestClient) -> Any:
    r = client.get("/v1/alert-receivers")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_lone_surrogates_are_refused_not_stored(client: TestClient, world: dict[str, Any]) -> None:
    """JSON can spell a lone UTF-16 surrogate ("\\ud800"), which is no Unicode text: neither
    store can take it, and a secret (a plain string, unlike the length-checked fields) got
    as far as the INSERT and a 500."""
    hook = {"name": "hook", "description": "", "endpoint": "http://127.0.0.1:9/", "secrets": ["s"]}
    r = client.post("/v1/webhook-receivers", json=hook)
    assert r.status_code == 201, r.text
    before, cheap = _receivers(client), fingerprint(client)
    json_headers = {**JSON}
    lone = '"\\ud800"'  # the JSON text of a string holding one lone surrogate
    cases = [
        (
            "/v1/webhook-receivers",
            {},
            '{"name": "h2", "description": "", "endpoint": '
            f'"http://127.0.0.1:9/", "secrets": [{lone}]}}',
            "secrets",
        ),
        ("/v1/webhook-secrets", {"receiver": "hook"}, f'{{"secret": {lone}}}', "secret"),
        (
            "/v1/instances",
            P,
            '{"name": "k", "description": "", "hostname": "k", "ncpus": 1, '
            f'"memory": {GiB}, "start": false, "ssh_public_keys": [{lone}]}}',
            "ssh_public_keys",
        ),
    ]
    for url, params, body, field in cases:
        r = client.post(url, params=params, content=body.encode(), headers=json_headers)
        assert_error(r, 400, None, field, "surrogate")
    assert _receivers(client) == before
    assert fingerprint(client) == cheap


def test_removing_a_subscription_that_cannot_exist_is_refused(
    client: TestClient, world: dict[str, Any]
) -> None:
    """A NUL in the subscription of DELETE .../subscriptions/{subscription} reached the
    store, where PostgreSQL cannot even compare it: a 500. What could never be subscribed is
    refused for what it is; what could be but is not, is not found."""
    hook = {
        "name": "hook",
        "description": "",
        "endpoint": "http://127.0.0.1:9/",
        "secrets": ["s"],
        "subscriptions": ["instance.failed"],
    }
    assert client.post("/v1/webhook-receivers", json=hook).status_code == 201
    before = _receivers(client)
    url = "/v1/alert-receivers/hook/subscriptions"
    for bad in ("instance.fail%00ed", "%00", "Instance.failed", "a" * 256):
        assert_error(client.delete(f"{url}/{bad}"), 400, None, "subscription")
    r = client.delete(f"{url}/instance.running")
    assert_error(r, 404, "ObjectNotFound", "instance.running")
    assert _receivers(client) == before
    assert client.delete(f"{url}/instance.failed").status_code == 204


def test_every_event_list_refuses_a_nul_filter(client: TestClient, world: dict[str, Any]) -> None:
    """``kind`` and ``operation`` with a NUL were refused by an instance's event list only:
    the project's and the fleet's passed them to PostgreSQL, which cannot compare them (a
    500 there)."""
    lists = [
        ("/v1/events", P),
        ("/v1/system/events", {}),
        (f"/v1/instances/{world['vm']}/events", {}),
    ]
    cases = [
        Case("GET", url, 400, (field, "NUL"), params={**params, field: value})
        for url, params in lists
        for field in ("kind", "operation")
        for value in ("\x00", "instance.\x00running")
    ]
    run_cases(client, cases)
