"""Webhooks: alert receivers get every event they subscribe to as a signed POST, with retries,
across restarts, exactly as the Oxide API describes them; bad input changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from skylight.api.app import create_app
from skylight.clock import now
from skylight.config import Settings
from skylight.testing.receiver import WebhookReceiver
from skylight.webhooks import alerts, send
from tests.conftest import AdminClient, as_user, instance_body, make_settings, recovery_admin
from tests.oxide_schema import wait_for

SECRET = "correct horse battery staple"


Receiver = WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    fast = {"webhook_interval": 0.05, "webhook_backoff": 0.05, "webhook_timeout": 2.0}
    return make_settings(tmp_path / "data", db_url, **{**fast, **overrides})


@pytest.fixture
def hooks(tmp_path: Path, db_url: str) -> Iterator[TestClient]:
    with AdminClient(create_app(_settings(tmp_path, db_url))) as c:
        assert c.post("/v1/projects", json={"name": "demo", "description": ""}).status_code == 201
        yield c


def _create(client: TestClient, url: str, subscriptions: list[str], **extra: Any) -> Any:
    body = {
        "name": extra.pop("name", "ops"),
        "description": "the on-call pager",
        "endpoint": url,
        "secrets": extra.pop("secrets", [SECRET]),
        "subscriptions": subscriptions,
        **extra,
    }
    r = client.post("/v1/webhook-receivers", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _deliveries(client: TestClient, receiver: str = "ops", **params: Any) -> list[Any]:
    r = client.get(f"/v1/alert-receivers/{receiver}/deliveries", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _events(client: TestClient, instance: str) -> list[dict[str, Any]]:
    r = client.get(f"/v1/instances/{instance}/events", params={"project": "demo"})
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["items"]))


def test_a_failed_start_reaches_the_receiver_signed(hooks: TestClient, receiver: Receiver) -> None:
    """Nobody has to be waiting: the start failure's event goes out as the Oxide API's
    signed delivery, with the reason that says what happened and what to do."""
    rx = _create(hooks, receiver.url, ["instance.start_failed"])
    r = hooks.post(
        "/v1/instances", params={"project": "demo"}, json=instance_body("big", ncpus=200)
    )
    # Create with start answers 201 (decisions.md); the start's failure is in the events.
    assert r.status_code == 201, r.text
    assert r.json()["status_reason"]["code"] == "exceeds_sled_size"

    wait_for(lambda: receiver.all(), "the delivery")
    headers, raw = receiver.all()[0].headers, receiver.all()[0].body
    payload = json.loads(raw)
    failed = [e for e in _events(hooks, "big") if e["kind"] == "instance.start_failed"]
    assert len(failed) == 1
    assert payload["alert_class"] == "instance.start_failed"
    assert payload["alert_id"] == failed[0]["id"]
    reason = payload["data"]["reason"]
    assert reason["code"] == "exceeds_sled_size" and reason["transient"] is False
    assert reason["message"] == failed[0]["reason"]["message"] and reason["action"]
    assert payload["data"]["instance_id"] == failed[0]["instance_id"]
    assert payload["delivery"]["receiver_id"] == rx["id"]
    assert payload["delivery"]["trigger"] == "alert"

    assert headers["content-type"] == ["application/json"]
    assert headers["x-oxide-receiver-id"] == [rx["id"]]
    assert headers["x-oxide-delivery-id"] == [payload["delivery"]["id"]]
    assert headers["x-oxide-alert-id"] == [payload["alert_id"]]
    assert headers["x-oxide-alert-class"] == ["instance.start_failed"]
    assert headers["x-oxide-timestamp"] == [payload["delivery"]["sent_at"]]
    [sig] = headers["x-oxide-signature"]
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert sig == f"a=sha256&id={rx['secrets'][0]['id']}&s={expected}"

    [d] = wait_for(lambda: _deliveries(hooks, delivered=True), "delivered state")
    assert d["id"] == payload["delivery"]["id"] and d["alert_id"] == payload["alert_id"]
    assert d["alert_class"] == "instance.start_failed" and d["trigger"] == "alert"
    [attempt] = d["attempts"]["webhook"]
    assert attempt["attempt"] == 1 and attempt["result"] == "succeeded"
    assert attempt["response"]["status"] == 204
    assert len(receiver.all()) == 1  # one event, one delivery


def test_subscriptions_choose_what_is_sent(hooks: TestClient, receiver: Receiver) -> None:
    """An exact class gets only that class; ``**`` gets every event; nothing from before the
    subscription is sent."""
    r = hooks.post("/v1/instances", params={"project": "demo"}, json=instance_body("early"))
    assert r.status_code == 201, r.text
    other = Receiver()
    try:
        _create(hooks, receiver.url, ["instance.running"], name="running-only")
        _create(hooks, other.url, ["**"], name="everything")
        r = hooks.post(
            "/v1/instances",
            params={"project": "demo"},
            json=instance_body("web", start=True),
        )
        assert r.status_code == 201, r.text
        kinds = [e["kind"] for e in _events(hooks, "web")]
        assert "instance.running" in kinds

        got = wait_for(lambda: len(other.bodies()) >= len(kinds) and other.bodies(), "every event")
        wait_for(lambda: receiver.bodies(), "the running event")
        time.sleep(0.3)  # a pass or two more: nothing else may arrive
        assert [b["alert_class"] for b in receiver.bodies()] == ["instance.running"]
        assert sorted(b["alert_class"] for b in got) == sorted(kinds)
        early = {e["id"] for e in _events(hooks, "early")}
        assert not early & {b["alert_id"] for b in other.bodies()}
    finally:
        other.close()


def test_a_failing_receiver_is_retried_with_backoff(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    receiver.script = [500, 503]
    with AdminClient(create_app(_settings(tmp_path, db_url))) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _create(c, receiver.url, ["instance.created"])
        c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
        [d] = wait_for(lambda: _deliveries(c, delivered=True), "delivery after retries")
        attempts = d["attempts"]["webhook"]
        assert [a["result"] for a in attempts] == [
            "failed_http_error",
            "failed_http_error",
            "succeeded",
        ]
        assert [a["response"]["status"] for a in attempts] == [500, 503, 204]
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        # Same delivery id every time, so the receiver can tell a retry from a new alert.
        ids = {r.headers["x-oxide-delivery-id"][0] for r in receiver.all()}
        assert ids == {d["id"]}
        assert not _deliveries(c, pending=True) and not _deliveries(c, failed=True)


def test_a_delivery_gives_up_then_a_probe_resends_it(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    receiver.script = [500, 500]
    with AdminClient(create_app(_settings(tmp_path, db_url, webhook_attempts=2))) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _create(c, receiver.url, ["instance.created"])
        c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
        [d] = wait_for(lambda: _deliveries(c, failed=True), "the delivery to give up")
        assert [a["result"] for a in d["attempts"]["webhook"]] == ["failed_http_error"] * 2
        assert not _deliveries(c, pending=True)

        r = c.post("/v1/alert-receivers/ops/probe", params={"resend": True})
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["probe"]["alert_class"] == "probe"
        assert result["probe"]["state"] == "delivered"
        assert result["probe"]["trigger"] == "probe"
        assert result["resends_started"] == 1
        again = wait_for(
            lambda: [x for x in _deliveries(c, delivered=True) if x["trigger"] == "resend"],
            "the resend",
        )
        assert again[0]["alert_id"] == d["alert_id"]
        # Once it got through, a second probe has nothing to resend.
        r = c.post("/v1/alert-receivers/ops/probe", params={"resend": True})
        assert r.json()["resends_started"] == 0


def test_unreachable_and_silent_receivers_are_told_apart(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    receiver.hang = 1.0
    settings = _settings(tmp_path, db_url, webhook_timeout=0.3, webhook_attempts=1)
    with AdminClient(create_app(settings)) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _create(c, receiver.url, ["instance.created"], name="silent")
        closed = Receiver()
        closed.close()  # nothing listens on its port any more
        _create(c, closed.url, ["instance.created"], name="gone")
        c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
        [silent] = wait_for(lambda: _deliveries(c, "silent", failed=True), "timeout")
        [gone] = wait_for(lambda: _deliveries(c, "gone", failed=True), "unreachable")
        assert silent["attempts"]["webhook"][0]["result"] == "failed_timeout"
        assert gone["attempts"]["webhook"][0]["result"] == "failed_unreachable"
        assert gone["attempts"]["webhook"][0]["response"] is None


def test_pending_deliveries_survive_a_restart(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    """A delivery written is sent, even when the server stops before it got through."""
    settings = _settings(tmp_path, db_url, webhook_backoff=3600.0)
    with AdminClient(create_app(settings)) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        receiver.script = [500]
        _create(c, receiver.url, ["instance.created"])
        c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
        [d] = wait_for(
            lambda: [x for x in _deliveries(c, pending=True) if x["attempts"]["webhook"]],
            "a failed first attempt",
        )
    # Restarted with a short backoff: the pending delivery is picked up where it was.
    from skylight.store import webhooks as rows
    from skylight.store.engine import Store

    store = Store(settings.resolved_db_url())
    store.tx_sync(lambda conn: rows.claim(conn, [d["id"]], now()))  # due now, not in an hour
    store.dispose()
    with AdminClient(create_app(_settings(tmp_path, db_url))) as c:
        [done] = wait_for(lambda: _deliveries(c, delivered=True), "delivery after restart")
        assert done["id"] == d["id"]
        assert [a["result"] for a in done["attempts"]["webhook"]] == [
            "failed_http_error",
            "succeeded",
        ]


def test_secret_rotation_signs_with_every_secret(hooks: TestClient, receiver: Receiver) -> None:
    rx = _create(hooks, receiver.url, ["instance.created"])
    r = hooks.post("/v1/webhook-secrets", params={"receiver": "ops"}, json={"secret": "next"})
    assert r.status_code == 201, r.text
    second = r.json()["id"]
    listed = hooks.get("/v1/webhook-secrets", params={"receiver": "ops"}).json()
    assert [s["id"] for s in listed["secrets"]] == [rx["secrets"][0]["id"], second]
    assert "secret" not in json.dumps(listed).replace('"secrets"', "")  # values never shown

    hooks.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
    wait_for(lambda: receiver.all(), "a delivery")
    headers, raw = receiver.all()[0].headers, receiver.all()[0].body
    sigs = headers["x-oxide-signature"]
    assert sigs == [
        f"a=sha256&id={rx['secrets'][0]['id']}&s={send.signature(SECRET, raw)}",
        f"a=sha256&id={second}&s={send.signature('next', raw)}",
    ]
    # The old one retired: only the new one signs.
    r = hooks.delete(f"/v1/webhook-secrets/{rx['secrets'][0]['id']}")
    assert r.status_code == 204, r.text
    hooks.post("/v1/instances", params={"project": "demo"}, json=instance_body("b"))
    wait_for(lambda: len(receiver.all()) == 2, "the second delivery")
    headers, raw = receiver.all()[1].headers, receiver.all()[1].body
    assert headers["x-oxide-signature"] == [f"a=sha256&id={second}&s={send.signature('next', raw)}"]
    # The last secret cannot go: deliveries would go out unsigned.
    r = hooks.delete(f"/v1/webhook-secrets/{second}")
    assert r.status_code == 400 and "last secret" in r.json()["message"]


def test_resend_an_alert(hooks: TestClient, receiver: Receiver) -> None:
    _create(hooks, receiver.url, ["instance.created"])
    hooks.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
    [first] = wait_for(lambda: _deliveries(hooks, delivered=True), "the delivery")
    r = hooks.post(f"/v1/alerts/{first['alert_id']}/resend", params={"receiver": "ops"})
    assert r.status_code == 201, r.text
    new_id = r.json()["delivery_id"]
    assert new_id != first["id"]
    wait_for(lambda: len(_deliveries(hooks, delivered=True)) == 2, "the resend")
    assert [b["delivery"]["trigger"] for b in receiver.bodies()] == ["alert", "resend"]
    assert len({b["alert_id"] for b in receiver.bodies()}) == 1
    # An alert this receiver never had, and an id that is no alert at all.
    r = hooks.post(
        "/v1/alerts/01900000-0000-7000-8000-000000000000/resend",
        params={"receiver": "ops"},
    )
    assert r.status_code == 404, r.text


def test_receivers_are_managed_as_in_the_oxide_api(hooks: TestClient, receiver: Receiver) -> None:
    rx = _create(hooks, receiver.url, ["instance.failed"])
    assert rx["name"] == "ops" and rx["endpoint"] == receiver.url
    assert rx["subscriptions"] == ["instance.failed"] and len(rx["secrets"]) == 1
    r = hooks.get("/v1/alert-receivers/ops")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["kind"] == {"kind": "webhook", "endpoint": receiver.url, "secrets": rx["secrets"]}
    assert hooks.get(f"/v1/alert-receivers/{rx['id']}").json() == view

    r = hooks.post(
        "/v1/alert-receivers/ops/subscriptions",
        json={"subscription": "instance.auto_restart_*"},
    )
    assert r.status_code == 400  # a glob is a whole segment
    r = hooks.post("/v1/alert-receivers/ops/subscriptions", json={"subscription": "instance.*"})
    assert r.status_code == 201 and r.json() == {"subscription": "instance.*"}
    r = hooks.delete("/v1/alert-receivers/ops/subscriptions/instance.failed")
    assert r.status_code == 204
    r = hooks.put(
        "/v1/webhook-receivers/ops",
        json={"name": "pager", "description": "new", "endpoint": receiver.url + "/v2"},
    )
    assert r.status_code == 204, r.text
    view = hooks.get("/v1/alert-receivers/pager").json()
    assert view["subscriptions"] == ["instance.*"] and view["description"] == "new"
    assert view["kind"]["endpoint"] == receiver.url + "/v2"
    listed = hooks.get("/v1/alert-receivers").json()
    assert [x["name"] for x in listed["items"]] == ["pager"]

    classes = hooks.get(
        "/v1/alert-classes", params={"filter": "instance.*"}, headers=as_user(hooks)
    )
    assert classes.status_code == 403  # fleet admins only
    classes = hooks.get("/v1/alert-classes", params={"filter": "*.running"})
    assert [c["name"] for c in classes.json()["items"]] == ["instance.running"]
    every = hooks.get("/v1/alert-classes").json()["items"]
    assert [c["name"] for c in every] == sorted(alerts.CLASSES)

    r = hooks.delete("/v1/alert-receivers/pager")
    assert r.status_code == 204
    assert hooks.get("/v1/alert-receivers/pager").status_code == 404
    assert hooks.get("/v1/alert-receivers").json()["items"] == []


BAD_CREATES = [
    ({"endpoint": "ftp://example.com/x"}, "http"),
    ({"endpoint": "not a url"}, "endpoint"),
    ({"endpoint": "/relative/path"}, "absolute"),
    ({"secrets": []}, "secret"),
    ({"secrets": [""]}, "secret"),
    ({"subscriptions": ["Instance.running"]}, "segment"),
    ({"subscriptions": ["instance."]}, "segment"),
    ({"subscriptions": ["disk.created"]}, "matches no alert class"),
    ({"name": "Bad Name"}, "name"),
    ({"secrets": "one"}, "secrets"),
    ({"endpoint": 5}, "endpoint"),
]


@pytest.mark.parametrize(("change", "words"), BAD_CREATES)
def test_bad_receivers_are_refused_and_change_nothing(
    hooks: TestClient, receiver: Receiver, change: dict[str, Any], words: str
) -> None:
    body = {
        "name": "ops",
        "description": "",
        "endpoint": receiver.url,
        "secrets": [SECRET],
        "subscriptions": ["instance.created"],
        **change,
    }
    r = hooks.post("/v1/webhook-receivers", json=body)
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["request_id"] and words in error["message"].lower()
    assert hooks.get("/v1/alert-receivers").json()["items"] == []


def test_other_bad_input(hooks: TestClient, receiver: Receiver) -> None:
    body = {"name": "ops", "description": "", "endpoint": receiver.url, "secrets": [SECRET]}
    user = as_user(hooks)  # a silo collaborator: no fleet role
    assert hooks.post("/v1/webhook-receivers", json=body, headers=user).status_code == 403
    assert hooks.get("/v1/alert-receivers", headers=user).status_code == 403
    _create(hooks, receiver.url, ["instance.created"])
    again = hooks.post("/v1/webhook-receivers", json=body)
    assert again.status_code == 400 and "already exists" in again.json()["message"]
    r = hooks.post(
        "/v1/alert-receivers/ops/subscriptions",
        json={"subscription": "instance.created"},
    )
    assert r.status_code == 400 and "already exists" in r.json()["message"]
    r = hooks.delete("/v1/alert-receivers/ops/subscriptions/instance.running")
    assert r.status_code == 404
    assert hooks.get("/v1/alert-receivers/nope").status_code == 404
    r = hooks.put("/v1/webhook-receivers/ops", json={"endpoint": "gopher://x"})
    assert r.status_code == 400
    assert hooks.get("/v1/alert-receivers/ops").json()["kind"]["endpoint"] == (receiver.url)
    assert hooks.delete("/v1/webhook-secrets/not-a-uuid").status_code == 400
    unknown = "01900000-0000-7000-8000-000000000000"
    assert hooks.delete(f"/v1/webhook-secrets/{unknown}").status_code == 404
    r = hooks.post("/v1/alerts/xyz/resend", params={"receiver": "ops"})
    assert r.status_code == 400
    r = hooks.get("/v1/alert-receivers/ops/deliveries", params={"limit": 0})
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("pattern", "name", "hit"),
    [
        ("instance.running", "instance.running", True),
        ("instance.running", "instance.stopped", False),
        ("instance.*", "instance.running", True),
        ("*", "instance.running", False),
        ("**", "instance.running", True),
        ("**.running", "instance.running", True),
        ("instance.**", "instance.running", True),
        ("*.*.*", "instance.running", False),
        ("instance.*.x", "instance.running", False),
        ("**.**", "instance.running", True),
        ("**.instance.**.running.**", "instance.running", True),
        ("**.running.**.x", "instance.running", False),
    ],
)
def test_subscription_globs(pattern: str, name: str, hit: bool) -> None:
    assert alerts.matches(pattern, name) is hit


def test_dispatch_hands_out_each_event_once_under_concurrency(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    """Two dispatchers at once (as two replicas whose leases overlapped) never both deliver
    an event: the cursor moves in the transaction that writes the deliveries."""
    from skylight.background import webhooks as background
    from skylight.store import webhooks as rows
    from skylight.store.engine import Store

    settings = _settings(tmp_path, db_url, webhook_interval=3600.0)
    with AdminClient(create_app(settings)) as c:
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        _create(c, receiver.url, ["instance.created"])
        store = Store(settings.resolved_db_url())
        errors: list[BaseException] = []

        def dispatcher() -> None:
            try:
                for _ in range(40):
                    store.tx_sync(lambda conn: background.dispatch_batch(conn, limit=3))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=dispatcher) for _ in range(2)]
        for t in threads:
            t.start()
        for i in range(12):
            c.post("/v1/instances", params={"project": "demo"}, json=instance_body(f"i{i}"))
        for t in threads:
            t.join()
        store.tx_sync(lambda conn: background.dispatch_batch(conn))
        assert not errors, errors
        alert_ids = store.tx_sync(
            lambda conn: [
                d.alert_id
                for d in rows.deliveries_page(
                    conn, _rx_id(conn), ["pending", "delivered", "failed"], limit=100, marker=None
                )
            ]
        )
        store.dispose()
        assert len(alert_ids) == 12 and len(set(alert_ids)) == 12


def _rx_id(conn: Any) -> str:
    from skylight.store import webhooks as rows

    row = rows.by_name(conn, "ops")
    assert row is not None
    return str(row.id)


def test_a_commit_made_while_a_reader_looked_is_not_slept_through() -> None:
    """Streams and the webhook loop note the feed's version before they read the store; a
    commit made while they read ends their next wait at once, instead of after the poll
    interval (a second, by default)."""
    import asyncio

    from skylight.events.feed import Feed

    async def scenario() -> tuple[bool, bool]:
        feed = Feed()
        feed.bind(asyncio.get_running_loop())
        seen = feed.version
        feed.notify(["instance.created"])  # committed while the reader was reading
        await asyncio.sleep(0)  # the wake-up runs on the loop
        missed = asyncio.create_task(feed.wait(3600.0, since=seen))
        done, _ = await asyncio.wait({missed}, timeout=5.0)
        quiet = asyncio.create_task(feed.wait(3600.0, since=feed.version))
        idle, _ = await asyncio.wait({quiet}, timeout=0.05)
        quiet.cancel()
        return bool(done), bool(idle)

    returned_at_once, returned_without_commit = asyncio.run(scenario())
    assert returned_at_once
    assert not returned_without_commit


def test_a_receiver_that_does_not_answer_delays_only_itself(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    """Its request hangs until the timeout; the other receiver's delivery of the same event
    arrives meanwhile, not after it."""
    receiver.hang = 3.0
    settings = _settings(tmp_path, db_url, webhook_timeout=2.0, webhook_attempts=1)
    quick = Receiver()
    try:
        with AdminClient(create_app(settings)) as c:
            c.post("/v1/projects", json={"name": "demo", "description": ""})
            _create(c, receiver.url, ["instance.created"], name="stuck")
            _create(c, quick.url, ["instance.created"], name="quick")
            c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a"))
            wait_for(lambda: receiver.all() and quick.all(), "both requests")
            # The stuck receiver's attempt is still under way (it ends with the timeout).
            assert _deliveries(c, "stuck", pending=True)
            assert not _deliveries(c, "stuck", failed=True)
            wait_for(lambda: _deliveries(c, "quick", delivered=True), "quick delivered")
            assert not _deliveries(c, "stuck", failed=True), "quick waited for stuck"
            [s] = wait_for(lambda: _deliveries(c, "stuck", failed=True), "the timeout")
            assert s["attempts"]["webhook"][0]["result"] == "failed_timeout"
    finally:
        quick.close()


def test_settled_deliveries_go_with_event_retention(hooks: TestClient, receiver: Receiver) -> None:
    """Delivered and failed deliveries older than the retention setting are deleted by the
    retention pass; pending ones stay, however old."""
    from datetime import timedelta

    import sqlalchemy as sa

    from skylight.background import retention
    from skylight.store.schema import alert_delivery

    _create(hooks, receiver.url, ["instance.created"])
    for name in ("a", "b", "c"):
        hooks.post("/v1/instances", params={"project": "demo"}, json=instance_body(name))
    wait_for(lambda: len(_deliveries(hooks, delivered=True)) == 3, "three deliveries")
    cp = hooks.app.state.cp  # type: ignore[attr-defined]
    old = now() - timedelta(days=40)
    ids = [d["id"] for d in _deliveries(hooks)]
    with cp.store.engine.begin() as conn:
        conn.execute(alert_delivery.update().values(time_started=old))
        conn.execute(  # one of them still being tried (not due for an hour)
            alert_delivery.update()
            .where(alert_delivery.c.id == ids[0])
            .values(state="pending", time_next_attempt=now() + timedelta(hours=1))
        )
        conn.execute(
            alert_delivery.update().where(alert_delivery.c.id == ids[1]).values(state="failed")
        )
    hooks.portal.call(retention.run_once, cp)  # type: ignore[union-attr]
    with cp.store.engine.connect() as conn:
        left = list(conn.execute(sa.select(alert_delivery.c.id)).scalars())
    assert left == [ids[0]]


def test_two_replicas_deliver_each_event_once_and_survive_the_holder(
    tmp_path: Path, pg_url: str, receiver: Receiver
) -> None:
    """Two replicas on one PostgreSQL store: only the lease holder dispatches and sends, so
    each event arrives once; when the holder stops, the other takes the lease over and
    delivers what happens next, through either replica."""
    import asyncio

    import sqlalchemy as sa

    from skylight import projects
    from skylight.controlplane import ControlPlane
    from skylight.operations import instances as operations
    from skylight.rack_secret import create as create_secret
    from skylight.webhooks import receivers as receiver_ops
    from skylight.webhooks.destination import Destinations
    from tests.conftest import GiB

    shared = tmp_path / "rack-secret"  # one rack: its replicas share the secret
    create_secret(shared)

    def settings(port: int) -> Settings:
        s = _settings(tmp_path / str(port), pg_url)
        s.rack_secret_file = shared
        s.bind = f"127.0.0.1:{port}"
        s.heartbeat_interval = 0.1
        s.adoption_timeout = 0.6  # also the lease's time to live
        return s

    def body(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "description": "",
            "hostname": name,
            "ncpus": 1,
            "memory": GiB,
            "auto_restart_policy": None,
            "cpu_platform": None,
            "enable_jumbo_frames": False,
            "user_data": "",
            "start": False,
        }

    async def until(what: str, pred: Any) -> None:
        deadline = time.monotonic() + 30
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        a, b = ControlPlane(settings(3001)), ControlPlane(settings(3002))
        await a.start()
        await b.start()
        stopped: list[ControlPlane] = []
        try:
            admin = await a.store.tx(recovery_admin)
            await a.store.tx(lambda c: projects.create(c, admin, "demo", ""))
            await a.store.tx(
                lambda c: receiver_ops.create(
                    c,
                    name="ops",
                    description="",
                    endpoint=receiver.url,
                    secrets=[SECRET],
                    subscriptions=["instance.created"],
                    rule=Destinations(a.settings.webhook_allow_cidrs),
                    sealer=a.webhook_sealer,
                )
            )
            for i in range(4):
                await operations.create(a if i % 2 else b, admin, "demo", body(f"x{i}"), wait=0)
            await until("the first four", lambda: len(receiver.all()) >= 4)
            holder = await a.store.tx(
                lambda c: c.execute(
                    sa.text("SELECT holder FROM lease WHERE name = 'webhooks'")
                ).scalar_one()
            )
            first, other = (a, b) if holder == a.sec_id else (b, a)
            await first.stop()
            stopped.append(first)
            for i in range(4, 8):
                await operations.create(other, admin, "demo", body(f"x{i}"), wait=0)
            await until("the next four", lambda: len(receiver.all()) >= 8)
            await asyncio.sleep(0.3)  # a few more passes: nothing more may arrive
        finally:
            for cp in (a, b):
                if cp not in stopped:
                    await cp.stop()

    asyncio.run(scenario())
    bodies = receiver.bodies()
    assert len(bodies) == 8
    assert len({b["alert_id"] for b in bodies}) == 8
    assert sorted(b["data"]["kind"] for b in bodies) == ["instance.created"] * 8


def _reference_match(pattern: list[str], name: list[str]) -> bool:
    """The definition, by brute force over every split ``**`` could take."""
    if not pattern:
        return not name
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_reference_match(rest, name[i:]) for i in range(len(name) + 1))
    return bool(name) and head in ("*", name[0]) and _reference_match(rest, name[1:])


@settings(max_examples=400, deadline=None)
@given(
    pattern=st.lists(
        st.sampled_from(["*", "**", "instance", "running", "x"]), min_size=1, max_size=7
    ),
    name=st.lists(st.sampled_from(["instance", "running", "x"]), min_size=1, max_size=4),
)
def test_glob_matching_is_the_definition(pattern: list[str], name: list[str]) -> None:
    """Matching is one pass over the pattern (a glob of 80 ``**`` once took 0.6 s by
    recursion); it agrees with the definition everywhere."""
    assert alerts.matches(".".join(pattern), ".".join(name)) is _reference_match(pattern, name)


def test_long_globs_are_refused() -> None:
    from skylight.errors import InvalidValue

    with pytest.raises(InvalidValue, match="more than 16 segments"):
        alerts.check_subscription(".".join(["**"] * 80 + ["x"]))


def test_a_receiver_keeps_at_most_eight_secrets(hooks: TestClient, receiver: Receiver) -> None:
    body = {"name": "ops", "description": "", "endpoint": receiver.url, "subscriptions": []}
    r = hooks.post("/v1/webhook-receivers", json={**body, "secrets": ["s"] * 9})
    assert r.status_code == 400 and "at most 8" in r.json()["message"]
    _create(hooks, receiver.url, [], secrets=[f"s{i}" for i in range(8)])
    r = hooks.post("/v1/webhook-secrets", params={"receiver": "ops"}, json={"secret": "one more"})
    assert r.status_code == 400 and "at most 8" in r.json()["message"]
    listed = hooks.get("/v1/webhook-secrets", params={"receiver": "ops"}).json()
    assert len(listed["secrets"]) == 8


def test_secrets_are_sealed_in_the_store_and_old_clear_ones_sealed_on_start(
    tmp_path: Path, db_url: str, receiver: Receiver
) -> None:
    """A copy of the store holds no webhook secret in clear; deliveries are still signed
    with the secret itself, and a secret stored in clear before sealing existed is sealed
    when a replica starts."""
    import sqlalchemy as sa

    from skylight.store.schema import webhook_secret

    settings = _settings(tmp_path, db_url)
    with AdminClient(create_app(settings)) as c:
        _create(c, receiver.url, ["instance.created"])
        cp = c.app.state.cp  # type: ignore[attr-defined]
        with cp.store.engine.begin() as conn:
            stored = [r.secret for r in conn.execute(sa.select(webhook_secret))]
            assert stored and all(s.startswith("v1.") and SECRET not in s for s in stored)
            conn.execute(webhook_secret.update().values(secret=SECRET))  # as an old store had
        c.post("/v1/projects", json={"name": "demo", "description": ""})
        c.post("/v1/instances", params={"project": "demo"}, json=instance_body("a", start=False))
        got = wait_for(lambda: receiver.all(), "a delivery")
        [sig] = got[0].headers["x-oxide-signature"]
        assert sig.endswith(f"&s={send.signature(SECRET, got[0].body)}")  # still signs
    with AdminClient(create_app(settings)) as c:  # a restart seals it
        cp = c.app.state.cp  # type: ignore[attr-defined]
        with cp.store.engine.connect() as conn:
            stored = [r.secret for r in conn.execute(sa.select(webhook_secret))]
        assert stored and all(s.startswith("v1.") and SECRET not in s for s in stored)
