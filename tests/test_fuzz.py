"""API fuzzing with schemathesis: every operation of the app's own OpenAPI document, with
generated inputs (valid and invalid), against a server that has real objects to hit.

Checks on every response: never a 5xx (but 507, the documented answer of a start no sled can
hold), every 4xx/5xx an Oxide ``Error`` body with a ``request_id``, status codes, content
types and bodies as the document says, invalid input refused with a 4xx, and a refused
request (4xx) that changed nothing stored, and no answer slower than ``SLOW`` seconds. After
the run, nothing is left half-made.

Generation is derandomized (hypothesis ``derandomize``, no example database) and bounded
(``EXAMPLES`` per operation and mode, no shrinking): about a minute for both stores on two
CPUs, the PostgreSQL pass being the reduced one. Run with ``-s`` for what each operation was
answered; ``SKYLIGHT_FUZZ_ONLY="POST /v1/instances"`` fuzzes the operations whose label
contains that text.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from skylight.background import webhooks as webhook_task
from skylight.store import schema as tables
from tests.conftest import GiB, instance_body
from tests.oxide_schema import all_pages, assert_error, settled

# Minutes per store (every operation, hundreds of cases): `make test-fast` leaves it out. On
# a loaded machine the SQLite pass has taken 8 minutes: past the suite's default 300 s bound.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

BASE_URL = "http://testserver"
SLOW = 5.0  # seconds
# Examples per operation and generation mode (positive, negative), and one case in how many
# gets a character a store may not take (see spice()): the reduced PostgreSQL pass spends
# more of its few cases on NUL, which only PostgreSQL refuses to store or compare.
EXAMPLES = {"sqlite": 24, "postgres": 6}
SPICED = {"sqlite": 4, "postgres": 2}

# Not fuzzed, and why:
EXCLUDED = {
    # Server-Sent Event streams: a valid request is answered by a stream that never ends
    # (tests/test_events.py covers them, and tests/test_bad_input.py their bad input).
    ("GET", "/v1/instances/{instance}/events/stream"),
    ("GET", "/v1/events/stream"),
    # Sled-agent registration points the control plane at the URL in the body: it would then
    # health-check, and place instances on, a sled agent that is not there (and send requests
    # to whatever address the fuzzer made up). tests/test_http_sled_agents.py covers it with
    # live agents.
    ("POST", "/v1/system/sled-agents"),
    # Replacing the fleet's or the fuzzer's own silo's policy with generated ones takes the
    # fuzzer's roles away, and with them every other operation (tests/test_authorization.py
    # and tests/test_identity.py cover them, bad input included).
    ("PUT", "/v1/system/policy"),
    ("PUT", "/v1/policy"),
}


@pytest.fixture(autouse=True)
def no_outbound_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receivers the fuzzer registers name made-up endpoints: deliveries and probes are
    answered here, and no request leaves the process."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    monkeypatch.setattr(
        webhook_task,
        "client",
        lambda _rule: httpx.AsyncClient(transport=httpx.MockTransport(answer)),
    )


# -- the world the fuzzer hits ---------------------------------------------------------------


def _ok(r: httpx.Response, status: int) -> Any:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    return r.json() if r.content else None


class World:
    """Real objects for path parameters and selectors to name: a project with instances
    running, stopped, failed and failed-to-start, disks, (anti-)affinity groups with members,
    a webhook receiver with a secret, a subscription and deliveries, an armed fault.

    ``seeds`` maps a parameter name to values that name real things (names and ids). When
    the fuzzer deleted or renamed something, :meth:`ensure` rebuilds or re-reads it."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.generation = 0
        self.ids: dict[str, str] = {}
        self.seeds: dict[str, list[str]] = {}
        # what each operation was answered (a summary for whoever runs this with -s)
        self.statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.sleds = [s["id"] for s in all_pages(client, "/v1/system/hardware/sleds")]
        self.build()

    def post(self, url: str, status: int, body: Any = None, **params: Any) -> Any:
        return _ok(self.client.post(url, json=body, params=params), status)

    def build(self) -> None:
        g = "" if self.generation == 0 else str(self.generation)
        self.generation += 1
        ids = self.ids = {}
        project = self.post("/v1/projects", 201, {"name": f"fuzz{g}", "description": "fuzzed"})
        ids["project"] = project["id"]
        ids["spare"] = self.post("/v1/projects", 201, {"name": f"spare{g}", "description": ""})[
            "id"
        ]
        p = {"project": project["id"]}

        def instance(name: str, ncpus: int = 1, **extra: Any) -> dict[str, Any]:
            body = instance_body(f"{name}{g}", ncpus, 1, **extra)
            return dict(self.post("/v1/instances", 201, body, **p))

        # (joins its affinity group while stopped, started below)
        ids["web"] = instance("web", start=False, auto_restart_policy="never")["id"]
        ids["idle"] = instance("idle", start=False)["id"]
        ids["crashed"] = instance("crashed", auto_restart_policy="never")["id"]
        self.post(f"/v1/system/sim/instances/{ids['crashed']}/crash", 204)
        # larger than any sled: created stopped, with a status_reason
        ids["huge"] = instance("huge", ncpus=64)["id"]
        disk = {
            "description": "",
            "size": GiB,
            "disk_backend": {
                "type": "distributed",
                "disk_source": {"type": "blank", "block_size": 512},
            },
        }
        ids["data"] = self.post("/v1/disks", 201, {**disk, "name": f"data{g}"}, **p)["id"]
        ids["boot"] = self.post("/v1/disks", 201, {**disk, "name": f"boot{g}"}, **p)["id"]
        self.post(f"/v1/instances/{ids['idle']}/disks/attach", 202, {"disk": ids["boot"]})
        group = {"description": "", "failure_domain": "sled"}
        ids["aff"] = self.post(
            "/v1/affinity-groups", 201, {**group, "name": f"aff{g}", "policy": "allow"}, **p
        )["id"]
        ids["anti"] = self.post(
            "/v1/anti-affinity-groups", 201, {**group, "name": f"anti{g}", "policy": "fail"}, **p
        )["id"]
        self.post(f"/v1/affinity-groups/{ids['aff']}/members/instance/{ids['web']}", 201)
        self.post(f"/v1/anti-affinity-groups/{ids['anti']}/members/instance/{ids['idle']}", 201)
        self.post(f"/v1/instances/{ids['web']}/start", 202)
        hook = self.post(
            "/v1/webhook-receivers",
            201,
            {
                "name": f"hook{g}",
                "description": "",
                "endpoint": "http://127.0.0.1:9/hook",
                "secrets": ["fuzz-secret"],
                "subscriptions": ["instance.*"],
            },
        )
        ids["hook"] = hook["id"]
        ids["secret"] = hook["secrets"][0]["id"]
        # an event the receiver was subscribed to when it happened: an alert to resend
        self.post(f"/v1/instances/{ids['idle']}/start", 202)
        self.post(f"/v1/instances/{ids['idle']}/stop", 202)
        events = all_pages(self.client, f"/v1/instances/{ids['idle']}/events")
        ids["alert"] = events[0]["id"]
        ids["fault"] = self.post(
            "/v1/system/sim/faults",
            201,
            {
                "instance": ids["huge"],
                "at": "unregister",
                "kind": "error",
                "count": 1,
                "message": "seeded",
            },
        )["id"]
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the names of the seeded objects; False if one is gone."""
        c, ids = self.client, self.ids
        names: dict[str, str] = {}
        for key, url in (
            ("project", f"/v1/projects/{ids['project']}"),
            ("spare", f"/v1/projects/{ids['spare']}"),
            *((k, f"/v1/instances/{ids[k]}") for k in ("web", "idle", "crashed", "huge")),
            *((k, f"/v1/disks/{ids[k]}") for k in ("data", "boot")),
            ("aff", f"/v1/affinity-groups/{ids['aff']}"),
            ("anti", f"/v1/anti-affinity-groups/{ids['anti']}"),
            ("hook", f"/v1/alert-receivers/{ids['hook']}"),
        ):
            r = c.get(url)
            if r.status_code == 404:
                return False
            names[key] = _ok(r, 200)["name"]
        faults = _ok(c.get("/v1/system/sim/faults"), 200)["items"]
        if ids["fault"] not in {f["id"] for f in faults}:
            return False

        def both(*keys: str) -> list[str]:
            return [v for k in keys for v in (names[k], ids[k])]

        self.seeds = {
            "project": [*both("project"), names["spare"]],
            "instance": both("web", "idle", "crashed", "huge"),
            "disk": both("data", "boot"),
            "affinity_group": both("aff"),
            "anti_affinity_group": both("anti"),
            "receiver": both("hook"),
            "sled_id": self.sleds,
            "fault_id": [ids["fault"]],
            "secret_id": [ids["secret"]],
            "alert_id": [ids["alert"]],
            "subscription": ["instance.*"],
        }
        return True

    def ensure(self) -> None:
        """Before each operation: everything seeded exists (rebuilt under new names if the
        fuzzer deleted some of it), and nothing the sim routes did lingers."""
        c = self.client
        for fault in _ok(c.get("/v1/system/sim/faults"), 200)["items"]:
            if fault["id"] != self.ids["fault"]:
                _ok(c.delete(f"/v1/system/sim/faults/{fault['id']}"), 204)
        for sled in self.sleds:
            _ok(c.post(f"/v1/system/sim/sleds/{sled}/power-on"), 204)
        if not self.refresh():
            self.build()
        web = _ok(c.get(f"/v1/instances/{self.ids['web']}"), 200)
        if web["run_state"] in ("stopped", "failed"):
            self.post(f"/v1/instances/{self.ids['web']}/start", 202)


# -- what a refused request must leave as it was ---------------------------------------------

# Rows that background tasks write whatever the requests do: heartbeats, leases, the webhook
# dispatcher's cursor. Deliveries are written by the dispatcher and the deliverer too; those
# a request makes (resend, probe) are compared by their ids.
# (and the audit log, which records every mutating request, a refused one too)
BACKGROUND = {"lease", "replica", "alert_dispatch", "alert_delivery", "audit_log"}
# Logs that only grow (a coalesced event is replaced by one with a new seq): their length and
# newest key say whether anything was written.
LOGS = {"instance_event", "saga_node_event"}


def stored(client: TestClient) -> dict[str, Any]:
    """Every row a request can change, read straight from the store, and the simulated
    rack's faults, power and VMMs."""
    cp = client.app.state.cp  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    with cp.store.engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            if table.name in BACKGROUND:
                continue
            if table.name in LOGS:  # (the long ones: appended to, or replaced with a new seq)
                query = sa.select(sa.func.count(), *(sa.func.max(c) for c in table.primary_key))
            else:
                query = sa.select(table)
            out[table.name] = sorted(repr(tuple(r)) for r in conn.execute(query))
        d = tables.alert_delivery
        out["alert_delivery"] = sorted(
            r.id for r in conn.execute(sa.select(d.c.id).where(d.c.trigger != "alert"))
        )
    rack = cp.rack
    out["faults"] = sorted(repr(f) for f in rack.faults())
    out["power"] = sorted(rack._powered.items())
    out["vmms"] = sorted(repr(v) for v in rack._vmms.values())
    return out


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    out = []
    for key in before:
        if before[key] != after[key]:
            gone = [x for x in before[key] if x not in after[key]]
            new = [x for x in after[key] if x not in before[key]]
            out.append(f"{key}: -{gone[:3]} +{new[:3]}")
    return "; ".join(out)


# -- the fuzzer ------------------------------------------------------------------------------

CONFIG = schemathesis.Config.from_dict(
    # 507 InsufficientCapacity is how a start that no sled can hold is answered (the seeded
    # instance "huge" is one): the one 5xx a request may get, checked below to be exactly that.
    {"checks": {"not_a_server_error": {"expected-statuses": ["2XX", "3XX", "4XX", "507"]}}}
)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _order(method: str, path: str) -> int:
    """Reads first, then writes, then deletes, then what the sim and sled routes do to the
    rack (faults, power, crashes, provision policy), and expunge (for good) last."""
    if path.endswith("/expunge"):
        return 5
    if path.startswith("/v1/system/sim") or path.startswith("/v1/system/sled-agents"):
        return 4
    if path.endswith("/provision-policy"):
        return 4
    return {"GET": 0, "POST": 1, "PUT": 1, "DELETE": 2}[method]


def operations(client: TestClient) -> list[Any]:
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json(), config=CONFIG)
    ops = [result.ok() for result in schema.get_all_operations()]
    ops = [op for op in ops if (op.method.upper(), op.path) not in EXCLUDED]
    only = os.environ.get("SKYLIGHT_FUZZ_ONLY")  # e.g. "POST /v1/instances", to reproduce
    if only:
        ops = [op for op in ops if only in op.label]
    return sorted(ops, key=lambda op: _order(op.method.upper(), op.path))


# Path parameters that name something inside a project: by name they need ``?project=``,
# by id they must go without it.
SCOPED = {"instance", "disk", "affinity_group", "anti_affinity_group"}
KEEP = object()  # keep what schemathesis generated


def aim(case: Any, world: World, draw: Callable[[Any], Any]) -> None:
    """Point most cases at real objects, so that they get past the lookups to the checks
    behind them: each path parameter with seeds becomes one of them (or keeps its generated
    value, one time in four or so), and a ``project`` selector goes with scoped names (and
    mostly not with ids); in positive cases, body fields that name things, and sizes, are
    sometimes made real ones. Generated values stay in the mix: they are the fuzzing."""
    seeds = world.seeds
    by_name = by_id = False
    for name in list(case.path_parameters or {}):
        if name not in seeds:
            continue
        value = draw(st.sampled_from([*seeds[name], KEEP]))
        if value is KEEP:
            continue
        case.path_parameters[name] = value
        if name in SCOPED:
            by_id = by_id or value in world.ids.values()
            by_name = by_name or value not in world.ids.values()
    if case.meta.generation.mode == GenerationMode.NEGATIVE:
        # Whatever was made invalid stays so: a body or query mended here would leave the case
        # labelled negative by a mutation that is gone (the path parameters are plain strings:
        # schemathesis has nothing to negate there).
        return
    params = {p.name for p in case.operation.query}
    query = dict(case.query or {})
    if "project" in params:
        scoped_only = by_id and not by_name
        choice = draw(
            st.sampled_from(
                ["omit", "seed", "keep"] if scoped_only else ["seed", "seed", "keep", "omit"]
            )
        )
        if choice == "seed":
            query["project"] = draw(st.sampled_from(seeds["project"]))
        elif choice == "omit":
            query.pop("project", None)
    if "page_token" in query and draw(st.integers(0, 3)):
        del query["page_token"]  # (a made-up one is always refused, before anything else)
    if "receiver" in params and draw(st.booleans()):
        query["receiver"] = draw(st.sampled_from(seeds["receiver"]))
    if case.query is not None or query:
        case.query = query
    body = case.body
    if not isinstance(body, dict):
        return
    for field, value in (
        ("disk", st.sampled_from(seeds["disk"])),
        ("sled", st.sampled_from(seeds["sled_id"])),
        ("instance", st.sampled_from([world.ids[k] for k in ("web", "idle", "crashed", "huge")])),
        ("anti_affinity_groups", st.sampled_from(seeds["anti_affinity_group"]).map(lambda g: [g])),
        ("endpoint", st.just("http://127.0.0.1:9/fuzzed")),
        ("size", st.just(GiB)),
    ):
        if field in body and draw(st.booleans()):
            body[field] = draw(value)
    if case.method.upper() == "PUT" and "boot_disk" in body and draw(st.booleans()):
        body["boot_disk"] = draw(st.sampled_from(seeds["disk"]))  # (a NameOrId in an update)
    if "ncpus" in body and "memory" in body and draw(st.booleans()):
        body["ncpus"], body["memory"] = 1, GiB


def _strings(value: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """(container, key) of every string in a JSON value, a few levels down."""
    if depth > 3:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, str):
            yield value, key
        elif isinstance(item, dict | list):
            yield from _strings(item, depth + 1)


def spice(case: Any, draw: Callable[[Any], Any], one_in: int) -> None:
    """One case in ``one_in`` gets a character the generator never makes, or rarely gets to the
    store: a NUL (PostgreSQL cannot store it in text) in any string sent, or a lone UTF-16
    surrogate (valid JSON, ``"\\ud800"``, but no UTF-8) in a body's."""
    if draw(st.integers(0, one_in - 1)):
        return
    places = [
        *((case.path_parameters, k) for k in (case.path_parameters or {})),
        *((case.query, k) for k, v in (case.query or {}).items() if isinstance(v, str)),
    ]
    body = [] if not isinstance(case.body, dict | list) else list(_strings(case.body))
    if case.media_type != "application/json":  # a form's fields: percent-encoded UTF-8,
        places, body = places + body, []  # which has no lone surrogate to encode
    if not places and not body:
        return
    i = draw(st.integers(0, len(places) + len(body) - 1))
    container, key = [*places, *body][i]
    # (a URL cannot carry a lone surrogate: it has no UTF-8 to percent-encode)
    odd = "\x00" if i < len(places) else draw(st.sampled_from(["\x00", "\ud800"]))
    container[key] = container[key] + odd


def send(client: TestClient, case: Any) -> tuple[httpx.Response, dict[str, str], str]:
    """The request schemathesis would send, sent through the app's own TestClient (whose
    lifespan runs the control plane)."""
    kw = case.as_transport_kwargs(base_url=BASE_URL)
    fields = ("method", "url", "headers", "params", "data", "json", "cookies", "files")
    prepared = requests.Request(**{k: kw[k] for k in fields if k in kw}).prepare()
    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    body = prepared.body
    if isinstance(body, str):  # (a form, as requests prepares it)
        body = body.encode()
    shown = body if body is None or len(body) < 1000 else body[:1000] + b"..."  # type: ignore[operator]
    url = str(prepared.url)
    request = f"{prepared.method} {url if len(url) < 400 else url[:400] + '...'} body={shown!r}"
    started = time.monotonic()
    try:
        response = client.request(
            str(prepared.method), str(prepared.url), headers=headers, content=body
        )
    except Exception as exc:  # the app raised: the TestClient re-raises what became a 500
        raise AssertionError(f"server error ({exc!r}): {request}") from exc
    elapsed = time.monotonic() - started
    what = f"{request} -> {response.status_code} {response.text[:400]}"
    # Nothing here waits on anything slow (the simulated VMMs boot in 20 ms): a request that
    # takes this long is spending the event loop's time on its input (as the hostname pattern
    # did, exponentially, before it was fixed; past a few labels it never returns at all).
    assert elapsed < SLOW, f"{elapsed:.1f}s to answer: {what}"
    return response, headers, what


def check(client: TestClient, case: Any, world: World) -> None:
    method = case.method.upper()
    before = stored(client) if method != "GET" else None
    response, headers, what = send(client, case)
    status = response.status_code
    world.statuses[case.operation.label][status] += 1
    if status >= 500:
        assert status == 507, f"server error: {what}"
        assert response.json().get("error_code") == "InsufficientCapacity", what
    if status >= 400:
        try:
            assert_error(response, status)
        except AssertionError as exc:
            raise AssertionError(f"not an Error body ({exc}): {what}") from None
    if before is not None and 400 <= status < 500:
        after = stored(client)
        assert after == before, f"refused, but changed {_diff(before, after)}: {what}"
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (Exception, BaseExceptionGroup) as exc:  # (schemathesis raises a group)
        raise AssertionError(f"{what}\n{exc}") from None


def fuzz(client: TestClient, world: World, op: Any, mode: GenerationMode, store: str) -> str | None:
    """Run one operation in one mode: the first failure, if any, as text."""
    ran = 0
    failures: list[str] = []

    @hsettings(
        max_examples=EXAMPLES[store],
        derandomize=True,
        database=None,
        deadline=None,
        # no shrinking: the failing request is reported as it was sent, and a run stays bounded
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy(generation_mode=mode), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        nonlocal ran
        ran += 1
        aim(case, world, data.draw)
        # Whether the case is still negative after aim() is decided now, before spice() adds
        # what the schema cannot say (and its validator cannot read: a lone surrogate).
        assert case.meta is not None
        case.freeze_metadata()
        spice(case, data.draw, SPICED[store])
        try:
            check(client, case, world)
        except AssertionError as exc:
            # Hypothesis replays a failing example before it reports it; the world may have
            # changed since (a refused request that wrote something cannot write it twice),
            # so keep the first failure as it happened.
            failures.append(str(exc))
            raise
        except Exception as exc:  # the app raised (TestClient re-raises): keep what and where
            failures.append(f"{type(exc).__name__}: {exc} on {case.method} {case.formatted_path}")
            raise

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid: the operation's only inputs are path parameters that any
        # string satisfies (the negative mode of GET /v1/projects/{project}, say).
        assert mode == GenerationMode.NEGATIVE and ran == 0, op.label
    except (Exception, BaseExceptionGroup) as exc:
        return f"{op.label} [{mode.value}]: {failures[0] if failures else exc}"[:6000]
    return None


def assert_nothing_half_made(client: TestClient) -> None:
    """After the run: every listed object can be viewed, no instance is stuck in a transient
    state, and what each sled has reserved is the sum of the instances placed on it."""
    for project in all_pages(client, "/v1/projects"):
        _ok(client.get(f"/v1/projects/{project['id']}"), 200)
        for inst in settled(client, project["id"]):
            _ok(client.get(f"/v1/instances/{inst['id']}"), 200)
            all_pages(client, f"/v1/instances/{inst['id']}/events")
        for kind in ("disks", "affinity-groups", "anti-affinity-groups"):
            for item in all_pages(client, f"/v1/{kind}", project=project["id"]):
                _ok(client.get(f"/v1/{kind}/{item['id']}"), 200)
    receivers = _ok(client.get("/v1/alert-receivers", params={"limit": 1000}), 200)
    for rx in receivers["items"]:
        _ok(client.get(f"/v1/alert-receivers/{rx['id']}"), 200)
    for sled in all_pages(client, "/v1/system/hardware/sleds"):
        on_it = all_pages(client, f"/v1/system/hardware/sleds/{sled['id']}/instances")
        assert sled["reserved_hardware_threads"] == sum(i["ncpus"] for i in on_it), sled
        assert sled["reserved_memory"] == sum(i["memory"] for i in on_it), sled


def test_fuzz_every_operation(client: TestClient, db_url: str) -> None:
    store = "sqlite" if db_url.startswith("sqlite") else "postgres"
    world = World(client)
    failures = []
    started = time.monotonic()
    for op in operations(client):
        world.ensure()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = fuzz(client, world, op, mode, store)
            if failure is not None:
                failures.append(failure)
    total = sum(world.statuses.values(), Counter())
    print(
        f"\n{store}: {len(world.statuses)} operations, {total.total()} requests in "
        f"{time.monotonic() - started:.1f}s: {sorted(total.items())}"
    )
    for label, statuses in world.statuses.items():
        print(f"  {label}: {sorted(statuses.items())}")
    assert_nothing_half_made(client)
    assert not failures, "\n\n".join(failures)
