"""Who the user is: login, sessions, device tokens, silos, quotas, the audit log.

Who may call which operation is walked in tests/test_authorization.py; these are the rest of
SPEC's Identity section: credentials, their lifetimes and revocation, bad input on the new
routes, quota failures explained like any start failure, and secrets kept out of the store
and the logs.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from skylight import login_flow
from skylight.api.app import create_app
from skylight.errors import TooManyRequests
from skylight.identity.secrets import token_hash
from skylight.identity.throttle import LoginThrottle
from skylight.store.engine import make_engine
from skylight.store.schema import console_session
from tests.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    AdminClient,
    GiB,
    event_kinds,
    instance_body,
    make_settings,
    user_headers,
)

P = {"project": "demo"}


def _login(client: TestClient, username: str, password: str, silo: str = "recovery") -> Any:
    return client.post(
        f"/v1/login/{silo}/local",
        json={"username": username, "password": password},
        headers={"authorization": ""},
    )


# -- login, sessions, tokens ------------------------------------------------------------------


def test_nothing_answers_without_a_credential_but_ping_and_login(client: TestClient) -> None:
    anonymous = {"authorization": ""}
    assert client.get("/v1/ping", headers=anonymous).json() == {"status": "ok"}
    for method, path in (("GET", "/v1/projects"), ("GET", "/v1/me"), ("POST", "/v1/projects")):
        r = client.request(method, path, headers=anonymous)
        assert r.status_code == 401, (method, path)
        assert r.json()["error_code"] == "Unauthorized" and r.json()["request_id"]
    bogus = {"authorization": "Bearer oxide-token-not-one-of-ours"}
    assert client.get("/v1/me", headers=bogus).status_code == 401
    assert client.get("/v1/me", headers={**anonymous, "cookie": "session=nope"}).status_code == 401


def test_login_sets_an_httponly_session_that_logout_ends(client: TestClient) -> None:
    user_headers(client, "bob", silo_role="viewer")
    r = _login(client, "bob", USER_PASSWORD)
    assert r.status_code == 204
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    session = {"authorization": "", "cookie": f"session={r.cookies['session']}"}
    client.cookies.clear()
    me = client.get("/v1/me", headers=session).json()
    assert me["display_name"] == "bob" and me["silo_name"] == "recovery"
    assert me["fleet_viewer"] is False and me["silo_admin"] is False
    assert client.post("/v1/logout", headers=session).status_code == 204
    assert client.get("/v1/me", headers=session).status_code == 401


def test_a_wrong_password_an_unknown_user_and_an_unknown_silo_answer_alike(
    client: TestClient,
) -> None:
    answers = [
        _login(client, "admin", "wrong"),
        _login(client, "nobody", "wrong"),
        _login(client, "admin", ADMIN_PASSWORD, silo="nowhere"),
    ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.json()["message"] for r in answers}) == 1
    assert "wrong" not in answers[0].json()["message"].replace("wrong username", "")


def test_logins_are_throttled_per_user_with_retry_after(client: TestClient) -> None:
    statuses = [_login(client, "admin", f"guess-{i}").status_code for i in range(6)]
    assert statuses == [401] * 5 + [429]
    r = _login(client, "admin", ADMIN_PASSWORD)  # even the right password waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error_code"] == "TooManyRequests"
    assert _login(client, "someone-else", "x").status_code == 401  # per user, not for all


def test_device_flow_tokens_are_listed_and_revoked_at_once(client: TestClient) -> None:
    headers = user_headers(client, "carol", silo_role="viewer")
    tokens = client.get("/v1/me/access-tokens", headers=headers).json()["items"]
    assert len(tokens) == 1 and tokens[0]["time_expires"] is None
    r = client.delete(f"/v1/me/access-tokens/{tokens[0]['id']}", headers=headers)
    assert r.status_code == 204
    assert client.get("/v1/me", headers=headers).status_code == 401  # the very next request
    admin_tokens = client.get("/v1/me/access-tokens").json()["items"]
    assert tokens[0]["id"] not in {t["id"] for t in admin_tokens}  # one's own only


def test_device_flow_bad_input_is_a_4xx(client: TestClient) -> None:
    anon = {"authorization": ""}
    r = client.post("/device/auth", data={"client_id": "not-a-uuid"}, headers=anon)
    assert r.status_code == 400 and "client_id" in r.json()["message"]
    assert client.post("/device/auth", data={}, headers=anon).status_code == 400
    grant = {"device_code": "x", "client_id": login_flow.CLIENT_ID}
    r = client.post("/device/token", data={**grant, "grant_type": "password"}, headers=anon)
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = client.post("/device/token", data={**grant, "grant_type": login_flow.GRANT}, headers=anon)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    auth = client.post("/device/auth", data={"client_id": login_flow.CLIENT_ID}, headers=anon)
    pending = {**grant, "grant_type": login_flow.GRANT, "device_code": auth.json()["device_code"]}
    r = client.post("/device/token", data=pending, headers=anon)
    assert r.status_code == 400 and r.json()["error"] == "authorization_pending"
    r = client.post("/device/confirm", json={"user_code": "BCDF-GHJK"})
    assert r.status_code == 404
    r = client.post("/device/confirm", json={"user_code": auth.json()["user_code"]})
    assert r.status_code == 204
    assert (
        client.post("/device/confirm", json={"user_code": auth.json()["user_code"]}).status_code
        == 400
    )
    token = client.post("/device/token", data=pending, headers=anon)
    assert token.status_code == 200 and token.json()["token_type"] == "Bearer"
    assert token.json()["access_token"].startswith("oxide-token-")
    again = client.post("/device/token", data=pending, headers=anon)
    assert again.status_code == 400  # a device code buys one token


def test_sessions_end_when_idle_or_too_old(client: TestClient, settings: Any) -> None:
    """A session unused for ``session_idle``, or older than ``session_absolute`` however
    much it is used, is refused (the clock is moved by ageing the stored session, so the
    test does not depend on how fast the machine is)."""
    engine = make_engine(settings.resolved_db_url())

    def session_aged(**ago: float) -> dict[str, str]:
        r = _login(client, "admin", ADMIN_PASSWORD)
        client.cookies.clear()
        headers = {"authorization": "", "cookie": f"session={r.cookies['session']}"}
        assert client.get("/v1/me", headers=headers).status_code == 200
        t = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(
                console_session.update()
                .where(console_session.c.token_hash == token_hash(r.cookies["session"]))
                .values(
                    time_created=t - timedelta(seconds=ago.get("created", 0)),
                    time_last_used=t - timedelta(seconds=ago.get("used", 0)),
                )
            )
        return headers

    try:
        idle, absolute = settings.session_idle, settings.session_absolute
        fresh = session_aged(created=idle / 2, used=idle / 2)  # inside both limits
        assert client.get("/v1/me", headers=fresh).status_code == 200
        unused = session_aged(created=idle + 60, used=idle + 60)
        r = client.get("/v1/me", headers=unused)
        assert r.status_code == 401 and "expired" in r.json()["message"]
        assert client.get("/v1/me", headers=unused).status_code == 401  # and it is gone
        old = session_aged(created=absolute + 60, used=1)  # used just now, but too old
        assert client.get("/v1/me", headers=old).status_code == 401
    finally:
        engine.dispose()


def test_revocation_holds_on_every_replica_at_once(tmp_path: Path, pg_url: str) -> None:
    with (
        AdminClient(create_app(make_settings(tmp_path / "a", pg_url))) as a,
        TestClient(create_app(make_settings(tmp_path / "b", pg_url))) as b,
    ):
        headers = user_headers(a, "dave", silo_role="viewer")
        assert b.get("/v1/me", headers=headers).status_code == 200  # a token works anywhere
        token_id = a.get("/v1/me/access-tokens", headers=headers).json()["items"][0]["id"]
        assert a.delete(f"/v1/me/access-tokens/{token_id}", headers=headers).status_code == 204
        assert b.get("/v1/me", headers=headers).status_code == 401


# -- silos, users, policies: bad input --------------------------------------------------------


def _silo(name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "description": "",
        "discoverable": True,
        "identity_mode": "local_only",
        "quotas": {"cpus": 8, "memory": 16 * GiB, "storage": 100 * GiB},
    }
    return body | extra


def test_new_routes_refuse_bad_input_with_a_4xx_and_write_nothing(client: TestClient) -> None:
    before = client.get("/v1/system/silos").json()["items"]
    cases = [
        (_silo("s1", identity_mode="saml_jit"), "not supported"),
        (_silo("s1", admin_group_name="admins"), "groups are not supported"),
        (_silo("NotAName"), "name"),
        ({**_silo("s1"), "quotas": {"cpus": -1, "memory": 0, "storage": 0}}, "cpus"),
    ]
    for body, words in cases:
        r = client.post("/v1/system/silos", json=body)
        assert r.status_code == 400 and words in r.json()["message"], (body, r.text)
    assert client.get("/v1/system/silos").json()["items"] == before
    assert client.get("/v1/system/silos/nowhere").status_code == 404
    users = "/v1/system/identity-providers/local/users"
    r = client.post(
        users,
        params={"silo": "nowhere"},
        json={"external_id": "x", "password": {"mode": "login_disallowed"}},
    )
    assert r.status_code == 404
    r = client.post(
        users,
        params={"silo": "recovery"},
        json={"external_id": "Bad_Name", "password": {"mode": "login_disallowed"}},
    )
    assert r.status_code == 400
    policy = client.get("/v1/policy").json()
    admin_id = policy["role_assignments"][0]["identity_id"]
    for assignment, status in (
        ({"identity_id": admin_id, "identity_type": "silo_user", "role_name": "owner"}, 400),
        ({"identity_id": admin_id, "identity_type": "silo_group", "role_name": "viewer"}, 400),
        ({"identity_id": "not-a-uuid", "identity_type": "silo_user", "role_name": "viewer"}, 400),
        (
            {
                "identity_id": "01900000-0000-7000-8000-000000000000",
                "identity_type": "silo_user",
                "role_name": "viewer",
            },
            400,
        ),
    ):
        r = client.put("/v1/policy", json={"role_assignments": [assignment]})
        assert r.status_code == status, (assignment, r.text)
    assert client.get("/v1/policy").json() == policy  # nothing changed
    r = client.post("/v1/system/silos", json=_silo("s1"))
    assert r.status_code == 201
    assert client.post("/v1/system/silos", json=_silo("s1")).status_code == 400  # exists


def test_projects_are_per_silo(client: TestClient) -> None:
    assert client.post("/v1/system/silos", json=_silo("other")).status_code == 201
    headers = user_headers(client, "olga", silo="other", silo_role="admin")
    assert client.post("/v1/projects", json={"name": "demo", "description": ""}).status_code == 201
    # The same name in another silo is another project; neither silo sees the other's.
    r = client.post("/v1/projects", json={"name": "demo", "description": ""}, headers=headers)
    assert r.status_code == 201
    theirs = r.json()["id"]
    assert [p["id"] for p in client.get("/v1/projects", headers=headers).json()["items"]] == [
        theirs
    ]
    assert client.get(f"/v1/projects/{theirs}").status_code == 404  # by id too
    assert client.get("/v1/projects/demo").json()["id"] != theirs


# -- quotas and utilization ---------------------------------------------------------------------


def test_a_start_past_the_silo_quota_fails_explained(client: TestClient) -> None:
    assert client.post("/v1/system/silos", json=_silo("small")).status_code == 201  # 8 vCPUs
    headers = user_headers(client, "quinn", silo="small", silo_role="collaborator")
    r = client.post("/v1/projects", json={"name": "demo", "description": ""}, headers=headers)
    assert r.status_code == 201
    r = client.post("/v1/instances", params=P, json=instance_body("a", 6, 4), headers=headers)
    assert r.status_code == 201 and r.json()["run_state"] == "running"
    util = client.get("/v1/utilization", headers=headers).json()
    assert util["capacity"]["cpus"] == 8 and util["provisioned"]["cpus"] == 6
    assert util["provisioned"]["memory"] == 4 * GiB
    # A waiting caller is answered 507 with the numbers and what to do.
    body = instance_body("b", 4, 4, start=False)
    assert client.post("/v1/instances", params=P, json=body, headers=headers).status_code == 201
    r = client.post("/v1/instances/b/start", params=P, headers=headers)
    assert r.status_code == 507, r.text
    reason = r.json()["reason"]
    assert reason["code"] == "quota_exceeded" and reason["transient"] is False
    assert reason["diagnosis"] == {
        "quota": {"cpus": 8, "memory": 16 * GiB},
        "provisioned": {"cpus": 6, "memory": 4 * GiB},
        "requested": {"cpus": 4, "memory": 4 * GiB},
    }
    assert "8 vCPUs" in reason["message"] and "administrator" in reason["action"]
    # Nobody waiting: the event and the status reason say the same.
    r = client.post(
        "/v1/instances/b/start", params=P, headers={**headers, "prefer": "respond-async"}
    )
    assert r.status_code == 202
    view = client.get("/v1/instances/b", params=P, headers=headers).json()
    for _ in range(600):  # (a bound against hangs, not a duration asserted)
        if view["run_state"] != "starting":
            break
        time.sleep(0.1)
        view = client.get("/v1/instances/b", params=P, headers=headers).json()
    assert view["status_reason"]["code"] == "quota_exceeded"
    assert view["run_state"] == "stopped" and view["intended_state"] == "stopped"
    r = client.get("/v1/instances/b/placement", params=P, headers=headers)
    assert r.json()["fits"] is False and r.json()["reason"]["code"] == "quota_exceeded"
    # Raised by an operator, the same start runs.
    r = client.put("/v1/system/silos/small/quotas", json={"cpus": 16})
    assert r.status_code == 200 and r.json()["cpus"] == 16
    assert client.post("/v1/instances/b/start", params=P, headers=headers).status_code == 202
    sums = client.get("/v1/system/utilization/silos/small").json()
    assert sums["allocated"]["cpus"] == 16 and sums["provisioned"]["cpus"] == 10


# -- who did it ---------------------------------------------------------------------------------


def test_events_name_the_person_and_the_audit_log_records_requests(
    client: TestClient, project: str
) -> None:
    headers = user_headers(client, "erin", silo_role="collaborator")
    client.post("/v1/instances", params=P, json=instance_body("a"), headers=headers)
    events = client.get("/v1/instances/a/events", params=P).json()["items"]
    created = next(e for e in events if e["kind"] == "instance.created")
    me = client.get("/v1/me", headers=headers).json()
    assert created["actor"] == {"type": "user", "id": me["id"], "display_name": "erin"}
    assert "instance.running" in event_kinds(client, "a")
    _login(client, "erin", "wrong")
    r = client.get("/v1/system/audit-log", params={"start_time": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200
    entries = r.json()["items"]
    create = [e for e in entries if e["operation_id"] == "instance_create"]
    assert create and create[-1]["actor"]["silo_user_id"] == me["id"]
    assert create[-1]["result"] == {"kind": "success", "http_status_code": 201}
    assert create[-1]["auth_method"] == "access_token"
    failed = [
        e for e in entries if e["operation_id"] == "login_local" and e["result"]["kind"] == "error"
    ]
    assert failed and failed[-1]["actor"] == {"kind": "unauthenticated"}
    assert failed[-1]["result"]["http_status_code"] == 401
    assert not [e for e in entries if e["operation_id"].endswith("_list")]  # reads are not logged
    since = {"start_time": "2020-01-01T00:00:00Z"}
    assert client.get("/v1/system/audit-log", params=since, headers=headers).status_code == 403


# -- secrets ------------------------------------------------------------------------------------


def test_passwords_and_tokens_are_nowhere_in_clear(
    client: TestClient, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = user_headers(client, "frank", silo_role="viewer")
    token = headers["authorization"].removeprefix("Bearer ")
    _login(client, "frank", "a-wrong-password")
    secrets = [USER_PASSWORD, ADMIN_PASSWORD, token, "a-wrong-password"]
    engine = make_engine(settings.resolved_db_url())
    try:
        with engine.connect() as conn:
            meta = sa.MetaData()
            meta.reflect(conn)
            for table in meta.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    text = repr(tuple(row))
                    for secret in secrets:
                        assert secret not in text, (table.name, secret)
    finally:
        engine.dispose()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in logged


def test_the_login_throttle_counts_per_user_and_per_address_within_its_window() -> None:
    clock = [0.0]
    throttle = LoginThrottle(per_user=2, per_address=3, window=60.0, clock=lambda: clock[0])
    for user in ("a", "b", "c"):  # three users, one address: the address runs out
        throttle.check(user, "10.0.0.1")
        throttle.failed(user, "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("d", "10.0.0.1")
    assert refused.value.retry_after == 60
    throttle.check("d", "10.0.0.2")  # another address is not held back
    throttle.failed("a", "10.0.0.2")
    with pytest.raises(TooManyRequests):
        throttle.check("a", "10.0.0.3")  # user a failed twice, from anywhere
    clock[0] = 61.0  # the window moved past every failure
    throttle.check("a", "10.0.0.1")
    throttle.failed("e", "10.0.0.9")
    throttle.succeeded("e")  # a success forgets the user's failures
    throttle.failed("e", "10.0.0.9")
    throttle.check("e", "10.0.0.9")
