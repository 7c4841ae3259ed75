"""Pagination: ``{items, next_page}`` pages with ``limit`` and ``page_token`` for projects,
instances, sleds and events; keyset pages that stay stable while rows are inserted; and the
tokens and limits that are refused."""

from __future__ import annotations

import base64
import json
import random
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient

from skylight.api.paging import decode, next_token
from skylight.operations.silos import Quotas, Utilization
from skylight.store.paging import PageRequest
from tests.conftest import instance_body
from tests.oxide_schema import all_pages, assert_conforms, assert_error

P = {"project": "demo"}
SORTS = ("name_ascending", "name_descending", "id_ascending")


def walk(
    client: TestClient, url: str, limit: int, page_schema: str | None = None, **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of a list, following ``next_page`` (``params`` go with every request, as
    Oxide's ``project`` selector does)."""
    pages: list[list[dict[str, Any]]] = []
    token = None
    for _ in range(1000):
        query = {**params, "limit": limit}
        if token is not None:
            query["page_token"] = token
        r = client.get(url, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "next_page"}, body
        if page_schema is not None:
            assert_conforms(body, page_schema)
        assert len(body["items"]) <= limit
        pages.append(body["items"])
        token = body["next_page"]
        if token is None:
            return pages
    raise AssertionError("pagination did not end")


def flat(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page]


def expected_order(items: list[dict[str, Any]], sort: str) -> list[str]:
    if sort == "id_ascending":
        return [i["id"] for i in sorted(items, key=lambda i: i["id"])]
    return [
        i["id"] for i in sorted(items, key=lambda i: i["name"], reverse=sort == "name_descending")
    ]


def token(**fields: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


def make_projects(client: TestClient, names: list[str]) -> None:
    for name in names:
        r = client.post("/v1/projects", json={"name": name, "description": ""})
        assert r.status_code == 201, r.text


def make_instances(client: TestClient, names: list[str]) -> None:
    for name in names:
        r = client.post("/v1/instances", params=P, json=instance_body(name, 1, 1, start=False))
        assert r.status_code == 201, r.text


# Names whose byte order and case-insensitive order differ, and a run of similar prefixes.
NAMES = ["b", "a-2", "aZ", "a10", "a9", "zed", "mid", "a", "aa", "m-1"]


def test_projects_pages(client: TestClient) -> None:
    shuffled = NAMES[:]
    random.Random(7).shuffle(shuffled)
    make_projects(client, shuffled)
    everything = all_pages(client, "/v1/projects")
    assert len(everything) == len(NAMES)
    for sort in SORTS:
        for limit in (1, 3, 4, 10, 11):
            pages = walk(client, "/v1/projects", limit, "ProjectResultsPage", sort_by=sort)
            got = [p["id"] for p in flat(pages)]
            assert got == expected_order(everything, sort), (sort, limit)
            assert all(len(page) == limit for page in pages[:-1])
    # the default sort is by name, ascending
    assert [p["name"] for p in all_pages(client, "/v1/projects")] == sorted(NAMES)
    r = client.get("/v1/projects", params={"limit": 3})
    assert [p["name"] for p in r.json()["items"]] == sorted(NAMES)[:3]
    assert r.json()["next_page"]


def test_instances_pages(client: TestClient, project: str) -> None:
    make_instances(client, NAMES)
    # another project's instances never show up
    make_projects(client, ["other"])
    r = client.post(
        "/v1/instances", params={"project": "other"}, json=instance_body("b", 1, 1, start=False)
    )
    assert r.status_code == 201
    everything = all_pages(client, "/v1/instances", project="demo")
    assert len(everything) == len(NAMES)
    for sort in SORTS:
        for limit in (1, 3, 10):
            pages = walk(client, "/v1/instances", limit, "InstanceResultsPage", sort_by=sort, **P)
            assert [i["id"] for i in flat(pages)] == expected_order(everything, sort)


def test_sleds_pages(client: TestClient) -> None:
    everything = all_pages(client, "/v1/system/hardware/sleds")
    assert len(everything) == 4
    for limit in (1, 2, 3, 4, 5):
        pages = walk(client, "/v1/system/hardware/sleds", limit, "SledResultsPage")
        assert [s["id"] for s in flat(pages)] == sorted(s["id"] for s in everything)
    sled = everything[0]["id"]
    client.post("/v1/projects", json={"name": "demo", "description": ""})
    for n in range(3):
        r = client.post("/v1/instances", params=P, json=instance_body(f"vm{n}", 1, 1))
        assert r.status_code == 201
    on_sleds = []
    for s in everything:
        pages = walk(client, f"/v1/system/hardware/sleds/{s['id']}/instances", 1)
        on_sleds += [i["id"] for i in flat(pages)]
    assert len(on_sleds) == len(set(on_sleds)) == 3
    assert_error(
        client.get(f"/v1/system/hardware/sleds/{sled}/instances", params={"limit": 0}), 400
    )


def test_events_pages_newest_first(client: TestClient, project: str) -> None:
    r = client.post("/v1/instances", params=P, json=instance_body("vm", 1, 1))
    assert r.status_code == 201
    iid = r.json()["id"]
    for _ in range(2):
        assert client.post("/v1/instances/vm/stop", params=P).status_code == 202
        assert client.post("/v1/instances/vm/start", params=P).status_code == 202
    everything = client.get(f"/v1/instances/{iid}/events", params={"limit": 1000}).json()["items"]
    assert len(everything) >= 10
    times = [e["time"] for e in everything]
    assert times == sorted(times, reverse=True)
    assert everything[0]["kind"] == "instance.running"
    assert everything[-1]["kind"] == "instance.created"
    for limit in (1, 3, 7):
        by_id = flat(walk(client, f"/v1/instances/{iid}/events", limit))
        by_name = flat(walk(client, "/v1/instances/vm/events", limit, **P))
        assert by_id == by_name == everything
    # filters apply across pages
    running = flat(walk(client, f"/v1/instances/{iid}/events", 1, kind="instance.running"))
    assert [e["kind"] for e in running] == ["instance.running"] * 3


def test_pages_are_stable_under_concurrent_inserts(client: TestClient, project: str) -> None:
    originals = [f"p{n:02d}" for n in range(0, 16, 2)]  # p00, p02, ... p14
    make_projects(client, originals)
    make_instances(client, originals)

    def check(url: str, sort: str, create: Any, tag: str, **params: Any) -> None:
        before = {i["id"]: i["name"] for i in all_pages(client, url, **params)}
        # new rows land before, inside and after each page boundary
        fresh = [f"p{n:02d}{tag}" for n in range(1, 17, 2)] + ["a0" + tag, "z9" + tag]
        seen: list[str] = []
        query: dict[str, Any] = {**params, "limit": 3, "sort_by": sort}
        while True:
            r = client.get(url, params=query)
            assert r.status_code == 200, r.text
            seen += [i["id"] for i in r.json()["items"]]
            tok = r.json()["next_page"]
            if tok is None:
                break
            if fresh:
                create([fresh.pop(0), fresh.pop()])
            query = {**params, "limit": 3, "page_token": tok}
        assert len(seen) == len(set(seen)), f"{sort}: a row was repeated"
        missing = set(before) - set(seen)
        assert not missing, f"{sort}: skipped {[before[m] for m in missing]}"
        old_rows = [{"id": k, "name": v} for k, v in before.items()]
        assert [i for i in seen if i in before] == expected_order(old_rows, sort)

    for n, sort in enumerate(SORTS):
        check("/v1/projects", sort, lambda names: make_projects(client, names), f"s{n}")
        check("/v1/instances", sort, lambda names: make_instances(client, names), f"s{n}", **P)

    # events: new events are newer than any page already walked, so they never show up in
    # the pages that follow, and no old event is skipped or repeated
    r = client.post("/v1/instances", params=P, json=instance_body("ev", 1, 1))
    iid = r.json()["id"]
    client.post("/v1/instances/ev/stop", params=P)
    before = [e["id"] for e in all_pages(client, f"/v1/instances/{iid}/events")]
    seen = []
    query: dict[str, Any] = {"limit": 2}
    flip = iter(["start", "stop"] * 10)
    while True:
        r = client.get(f"/v1/instances/{iid}/events", params=query)
        seen += [e["id"] for e in r.json()["items"]]
        if r.json()["next_page"] is None:
            break
        assert client.post(f"/v1/instances/ev/{next(flip)}", params=P).status_code == 202
        query = {"limit": 2, "page_token": r.json()["next_page"]}
    assert seen == before


def test_bad_page_requests_are_refused(client: TestClient, project: str) -> None:
    make_projects(client, ["a1", "a2", "a3"])
    make_instances(client, ["i1", "i2", "i3"])
    iid = all_pages(client, "/v1/instances", project="demo")[0]["id"]
    other_iid = all_pages(client, "/v1/instances", project="demo")[1]["id"]
    pid = client.get("/v1/projects/demo").json()["id"]
    sled = all_pages(client, "/v1/system/hardware/sleds")[0]["id"]
    lists: list[tuple[str, dict[str, Any]]] = [
        ("/v1/projects", {}),
        ("/v1/instances", P),
        ("/v1/system/hardware/sleds", {}),
        (f"/v1/system/hardware/sleds/{sled}/instances", {}),
        (f"/v1/instances/{iid}/events", {}),
    ]
    for url, params in lists:
        for limit in (0, -1, 10**12, "ten", 1.5):
            assert_error(client.get(url, params={**params, "limit": limit}), 400, None, "limit")
        for bad in (
            "garbage",
            "!!!",
            "",
            token(v=1),
            token(v=2, s="id_ascending", m=None, c=""),
            base64.urlsafe_b64encode(b"[1, 2]").decode(),
            "eyJ2IjoxfQ" * 50,
        ):
            r = client.get(url, params={**params, "page_token": bad})
            if bad == "":
                assert r.status_code in (200, 400), r.text  # an empty token is no token
                continue
            assert_error(r, 400, "InvalidRequest", "page_token")

    # a token only works for the list that handed it out
    t_projects = client.get("/v1/projects", params={"limit": 1}).json()["next_page"]
    t_instances = client.get("/v1/instances", params={**P, "limit": 1}).json()["next_page"]
    t_events = client.get(f"/v1/instances/{iid}/events", params={"limit": 1}).json()["next_page"]
    t_sleds = client.get("/v1/system/hardware/sleds", params={"limit": 1}).json()["next_page"]
    assert t_projects and t_instances and t_events and t_sleds
    pairs = [
        ("/v1/instances", P, t_projects),
        ("/v1/projects", {}, t_instances),
        ("/v1/projects", {}, t_sleds),
        ("/v1/system/hardware/sleds", {}, t_projects),
        (f"/v1/instances/{other_iid}/events", {}, t_events),
        (f"/v1/instances/{iid}/events", {}, t_instances),
    ]
    for url, params, tok in pairs:
        assert_error(client.get(url, params={**params, "page_token": tok}), 400, "InvalidRequest")
    make_projects(client, ["other"])
    r = client.get("/v1/instances", params={"project": "other", "page_token": t_instances})
    assert_error(r, 400, "InvalidRequest")

    # sort_by cannot change between pages; repeating the same one is fine
    for url, params in [("/v1/projects", {}), ("/v1/instances", P)]:
        first = client.get(url, params={**params, "limit": 1, "sort_by": "name_descending"})
        tok = first.json()["next_page"]
        r = client.get(url, params={**params, "page_token": tok, "sort_by": "name_descending"})
        assert r.status_code == 200, r.text
        for sort in ("name_ascending", "id_ascending"):
            r = client.get(url, params={**params, "page_token": tok, "sort_by": sort})
            assert_error(r, 400, "InvalidRequest", "sort_by")
        r = client.get(url, params={**params, "sort_by": "size_ascending"})
        assert_error(r, 400, "InvalidRequest", "sort_by")
    r = client.get("/v1/system/hardware/sleds", params={"sort_by": "name_ascending"})
    assert_error(r, 400, "InvalidRequest", "sort_by")

    # forged tokens: right envelope, wrong sort or marker for the list
    forged = [
        ("/v1/projects", {}, "projects", "name_ascending", 5),
        ("/v1/projects", {}, "projects", "name_ascending", {"a": 1}),
        ("/v1/projects", {}, "projects", "name_ascending", None),
        ("/v1/projects", {}, "projects", "id_ascending", 2**70),
        ("/v1/projects", {}, "projects", "seq_descending", 5),
        ("/v1/projects", {}, "projects", "name_ascending", "a\u0000"),
        ("/v1/instances", P, f"instances:{pid}", "bogus", "a"),
        ("/v1/instances", P, f"instances:{pid}", "name_descending", [1]),
        (f"/v1/instances/{iid}/events", {}, f"events:{iid}", "seq_descending", "x"),
        (f"/v1/instances/{iid}/events", {}, f"events:{iid}", "seq_descending", 2**80),
        (f"/v1/instances/{iid}/events", {}, f"events:{iid}", "name_ascending", 3),
        ("/v1/system/hardware/sleds", {}, "sleds", "id_ascending", 7),
        ("/v1/system/hardware/sleds", {}, "sleds", "name_ascending", "x"),
        (
            f"/v1/system/hardware/sleds/{sled}/instances",
            {},
            f"sled-instances:{sled}",
            "id_ascending",
            True,
        ),
    ]
    for url, params, scope, sort, marker in forged:
        tok = token(v=1, s=sort, m=marker, c=scope)
        r = client.get(url, params={**params, "page_token": tok})
        assert r.status_code == 400, (url, sort, marker, r.text)
        assert_error(r, 400, "InvalidRequest", "page_token")
    assert len(all_pages(client, "/v1/projects")) == 5


def test_an_item_built_around_a_row_is_paged_by_the_rows_keys() -> None:
    """A silo's utilization (like a webhook receiver) shows more than its row; its list is
    still paged by the row's name and id: the next page's token carries them."""
    row = SimpleNamespace(id="2b7c0e0a-3f0e-4a8e-9d6c-1f2d3c4b5a69", name="silo-b")
    item = Utilization(row, Quotas(1, 2, 3))  # type: ignore[arg-type]
    assert (item.id, item.name) == (row.id, row.name)
    for sort, key in (("name_ascending", "name"), ("id_ascending", "id")):
        token = next_token(PageRequest(1, None, sort, "silos"), [item], key, "silos")
        assert decode(1, token, None, "silos", sort).marker == getattr(row, key)
