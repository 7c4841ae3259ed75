"""Helpers for the API tests: check bodies against the Oxide subset document, check Error
bodies, and take snapshots of the stored state that a bad request must leave unchanged.

The checker is a small OpenAPI 3.0 subset validator (``$ref``, ``allOf``, ``oneOf``,
``nullable``, ``type``, ``enum``, ``required``, ``properties``, ``items``, ``format`` uuid and
date-time, ``minimum``, ``pattern``, ``minLength``, ``maxLength``). Unknown properties are
allowed: Skylight's additions to a view are additions only.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

SUBSET = Path("/work/shared/oxide-api/nexus-subset.json")
ERROR_FIELDS = ("request_id", "error_code", "message")


@cache
def document() -> dict[str, Any]:
    return dict(json.loads(SUBSET.read_text()))


def schema(name: str) -> dict[str, Any]:
    return dict(document()["components"]["schemas"][name])


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema(node["$ref"].rsplit("/", 1)[1])
    return node


def problems(value: Any, node: dict[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` fails ``node`` (empty: it conforms)."""
    node = _resolve(node)
    if value is None:
        if node.get("nullable"):
            return []
        if not any(k in node for k in ("type", "allOf", "oneOf", "enum")):
            return []
        return [f"{path}: null where the document does not allow it"]
    out: list[str] = []
    for sub in node.get("allOf", []):
        out += problems(value, sub, path)
    if "oneOf" in node:
        matches = [s for s in node["oneOf"] if not problems(value, s, path)]
        if len(matches) != 1:
            out.append(f"{path}: {value!r} matches {len(matches)} of the oneOf alternatives")
    if "enum" in node and value not in node["enum"]:
        out.append(f"{path}: {value!r} is not one of {node['enum']}")
    kind = node.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [*out, f"{path}: expected an object, got {value!r}"]
        for field in node.get("required", []):
            if field not in value:
                out.append(f"{path}: required field {field!r} is missing")
        for field, sub in node.get("properties", {}).items():
            if field in value:
                out += problems(value[field], sub, f"{path}.{field}")
    elif kind == "array":
        if not isinstance(value, list):
            return [*out, f"{path}: expected an array, got {value!r}"]
        for i, item in enumerate(value):
            out += problems(item, node.get("items", {}), f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [*out, f"{path}: expected a string, got {value!r}"]
        fmt = node.get("format")
        if fmt == "uuid":
            try:
                uuid.UUID(value)
            except ValueError:
                out.append(f"{path}: {value!r} is not a UUID")
        if fmt == "date-time":
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                out.append(f"{path}: {value!r} is not a date-time")
            else:
                if parsed.tzinfo is None:
                    out.append(f"{path}: {value!r} has no time zone")
        if "pattern" in node and not re.search(node["pattern"], value):
            out.append(f"{path}: {value!r} does not match {node['pattern']}")
        if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", 10**9):
            out.append(f"{path}: {value!r} has a length out of range")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [*out, f"{path}: expected an integer, got {value!r}"]
        if "minimum" in node and value < node["minimum"]:
            out.append(f"{path}: {value} is below {node['minimum']}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: expected a boolean, got {value!r}")
    elif kind == "number" and (not isinstance(value, int | float) or isinstance(value, bool)):
        out.append(f"{path}: expected a number, got {value!r}")
    return out


def assert_conforms(value: Any, name: str) -> None:
    found = problems(value, schema(name))
    assert not found, f"{name} does not conform to the Oxide document: {found}"


def success_status(path: str, method: str) -> int:
    """The one success status the Oxide document gives an operation."""
    codes = [c for c in document()["paths"][path][method]["responses"] if c.isdigit()]
    assert len(codes) == 1, codes
    return int(codes[0])


# -- errors ----------------------------------------------------------------------------------


def assert_error(
    response: httpx.Response,
    status: int | None = None,
    error_code: str | None = None,
    *mentions: str,
) -> dict[str, Any]:
    """``response`` is an Oxide Error (a 4xx unless ``status`` says otherwise) whose message
    names each of ``mentions`` (case-insensitively)."""
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
    else:
        assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict), body
    for field in ERROR_FIELDS:
        assert field in body, f"Error body lacks {field}: {body}"
    assert isinstance(body["request_id"], str) and body["request_id"], body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    assert body["error_code"] is None or isinstance(body["error_code"], str), body
    if error_code is not None:
        assert body["error_code"] == error_code, body
    for word in mentions:
        assert word.lower() in body["message"].lower(), (word, body["message"])
    if "x-request-id" in response.headers:
        assert response.headers["x-request-id"] == body["request_id"]
    return dict(body)


# -- state snapshots -------------------------------------------------------------------------


def all_pages(client: TestClient, url: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": 1000, **params}
    while True:
        r = client.get(url, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        if not body.get("next_page"):
            return items
        query = {"limit": 1000, "page_token": body["next_page"]}
        query.update({k: v for k, v in params.items() if k == "project"})


def fingerprint(client: TestClient) -> dict[str, Any]:
    """The cheap part of :func:`snapshot`: projects, their instances, the sleds. Every stored
    change a request can make shows here, except new events and faults (append-only, so a
    final :func:`snapshot` comparison still catches them)."""
    projects = all_pages(client, "/v1/projects")
    return {
        "projects": projects,
        "instances": {
            p["id"]: all_pages(client, "/v1/instances", project=p["id"]) for p in projects
        },
        "sleds": all_pages(client, "/v1/system/hardware/sleds"),
    }


def snapshot(client: TestClient) -> dict[str, Any]:
    """Everything a client can see of the stored state: projects, their instances and every
    instance's events, the sleds with their reservations, the armed faults."""
    projects = all_pages(client, "/v1/projects")
    instances = {p["id"]: all_pages(client, "/v1/instances", project=p["id"]) for p in projects}
    events = {
        i["id"]: all_pages(client, f"/v1/instances/{i['id']}/events")
        for items in instances.values()
        for i in items
    }
    faults = client.get("/v1/system/sim/faults")
    return {
        "projects": projects,
        "instances": instances,
        "events": events,
        "sleds": all_pages(client, "/v1/system/hardware/sleds"),
        "faults": faults.json() if faults.status_code == 200 else faults.status_code,
    }


def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.02
) -> Any:
    """Poll until ``predicate`` returns something truthy (a bound against hangs, not a
    performance assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def settled(client: TestClient, project: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The project's instances once none is in a transient state (a bound against hangs)."""
    busy = {"creating", "starting", "stopping", "rebooting"}
    deadline = time.monotonic() + timeout
    while True:
        items = all_pages(client, "/v1/instances", project=project)
        if not any(i["run_state"] in busy for i in items):
            return items
        assert time.monotonic() < deadline, f"instances still busy: {items}"
        time.sleep(0.02)
