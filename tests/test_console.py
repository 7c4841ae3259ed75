"""The web console, driven in Debian's chromium by Playwright against a real server.

One server for the module (2 sleds of 8 threads and 32 GiB, automatic restarts held off so a
crashed instance stays ``failed``); each test works in its own project and browser context.
Under ``CI=true`` a missing chromium fails the browser tests instead of skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

from skylight import login_flow
from skylight.console import STATIC
from skylight.testing import ServerProcess
from skylight.testing.server import ADMIN_PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

GiB = 1024**3
USER_PASSWORD = "alice-console-password"
EXPECT_TIMEOUT = 15_000  # ms: a start waits for its saga; the machine may be busy


# The console tests' rack: 2 sleds of 8 threads and 32 GiB, VMMs that boot in 0.2 s.
RACK = ["--sim-sleds", "2", "--sim-sled-cpus", "8", "--sim-sled-memory", "32"]
RACK += ["--sim-start-delay", "0.2"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        Path(tmp_path_factory.mktemp("console")),
        args=[*RACK, "--auto-restart-interval", "3600"],
    )
    proc.start()
    yield proc
    proc.stop()


def add_alice(client: httpx.Client) -> None:
    """Make "alice", a collaborator of the recovery silo who is no operator."""
    r = client.post(
        "/v1/system/identity-providers/local/users",
        params={"silo": "recovery"},
        json={"external_id": "alice", "password": {"mode": "password", "value": USER_PASSWORD}},
    )
    assert r.status_code == 201, r.text
    policy = client.get("/v1/policy").json()
    policy["role_assignments"].append(
        {"identity_id": r.json()["id"], "identity_type": "silo_user", "role_name": "collaborator"}
    )
    assert client.put("/v1/policy", json=policy).status_code == 200


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    """The recovery admin (a fleet admin: an operator); the browser tests are alice's unless
    they log in otherwise."""
    with server.client(timeout=30) as client:
        add_alice(client)
        yield client


def _log_in(page: Page, username: str, password: str) -> None:
    """Through the console's login page, as a person would."""
    page.goto("/console/#/projects")
    expect(page.get_by_role("heading", name="Log in to Skylight")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Projects", level=1)).to_be_visible()
    expect(page.locator("#who-name")).to_contain_text(username)


def _chromium() -> str:
    path = os.environ.get("SKYLIGHT_TEST_CHROMIUM") or shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is required under CI=true (make test installs it with apt-get)")
    pytest.skip("chromium is not installed (apt-get install chromium; make test does it)")


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = _chromium()
    pw: Playwright = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=executable)
        yield browser
        browser.close()
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@contextmanager
def alice_page(browser: Browser, server: ServerProcess, height: int = 900) -> Iterator[Page]:
    """A fresh browser context on the console, logged in as alice through the login page;
    JavaScript errors fail the test."""
    expect.set_options(timeout=EXPECT_TIMEOUT)
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _log_in(page, "alice", USER_PASSWORD)
    yield page
    context.close()
    assert errors == [], errors


@pytest.fixture
def page(browser: Browser, server: ServerProcess, api: httpx.Client) -> Iterator[Page]:
    with alice_page(browser, server) as p:
        yield p


def _project(api: httpx.Client, name: str) -> str:
    r = api.post("/v1/projects", json={"name": name, "description": "console tests"})
    assert r.status_code == 201, r.text
    return name


def _instance(
    api: httpx.Client, project: str, name: str, ncpus: int = 1, *, start: bool = True
) -> dict[str, Any]:
    body = {
        "name": name,
        "description": "",
        "hostname": name,
        "ncpus": ncpus,
        "memory": 1 * GiB,
        "start": start,
    }
    r = api.post("/v1/instances", params={"project": project}, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _open_instance(page: Page, project: str, name: str) -> None:
    page.goto(f"/console/#/projects/{project}/instances/{name}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    # Live: the stream is open and its cursor fixed, so nothing from now on is missed.
    expect(page.locator(".live")).to_have_text(re.compile(r"^Live"))


# -- served by the API server ----------------------------------------------------------------


def test_root_redirects_to_the_console_which_is_static_and_not_in_openapi(
    api: httpx.Client,
) -> None:
    r = api.get("/")
    assert r.status_code == 307
    assert r.headers["location"] == "/console/"
    r = api.get("/console/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js"></script>' in r.text
    for name in ("app.js", "api.js", "stream.js", "ui.js", "instance.js", "style.css"):
        asset = api.get(f"/console/{name}")
        assert asset.status_code == 200, name
        kind = "text/css" if name.endswith(".css") else "javascript"
        assert kind in asset.headers["content-type"], (name, asset.headers["content-type"])
    # Nothing is fetched from elsewhere (no CDN): no absolute URLs in the console's files.
    for path in STATIC.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text()), path.name
    paths = api.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/console")]
    assert api.get("/console/no-such-file.js").status_code == 404


# -- in the browser --------------------------------------------------------------------------


def test_a_burst_of_events_reloads_once_and_loads_never_overlap(page: Page) -> None:
    """stream.perBurst, which the project and instance pages reload by: the events of one
    burst make one load, and a load starts only once the one before it has ended."""
    log = page.evaluate(
        """async () => {
          const { perBurst } = await import("./stream.js");
          const log = [];
          let running = 0;
          const load = async () => {
            running += 1;
            log.push(`start ${running}`);
            await new Promise((r) => setTimeout(r, 150));
            running -= 1;
          };
          const reloads = perBurst(load, new AbortController().signal);
          reloads.now();
          for (let i = 0; i < 5; i++) reloads.soon();  // one burst, while the first load runs
          await new Promise((r) => setTimeout(r, 600));
          const stopped = new AbortController();
          perBurst(load, stopped.signal).soon();
          stopped.abort();  // a load still waiting when its page is left never runs
          await new Promise((r) => setTimeout(r, 300));
          return log;
        }"""
    )
    assert log == ["start 1", "start 1"]


def test_create_a_project_and_an_instance_that_runs_then_stop_and_delete_it(page: Page) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/console/"))
    expect(page.get_by_role("heading", name="Projects", level=1)).to_be_visible()

    page.get_by_label("Name").fill("web-demo")
    page.get_by_label("Description").fill("made in the console")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Project web-demo", level=1)).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Created project web-demo")).to_be_visible()

    page.get_by_label("Name").fill("web")
    page.get_by_label("vCPUs").fill("2")
    page.get_by_label("Memory (GiB)").fill("2")
    expect(page.get_by_label("Start it once created")).to_be_checked()
    page.get_by_role("button", name="Create instance").click()
    row = page.locator('tr[data-instance="web"]')
    expect(row.locator(".run-state")).to_have_text("running")
    expect(row.locator(".intended-state")).to_have_text("running")
    expect(row).to_contain_text("2 vCPUs, 2 GiB")
    expect(page.locator(".form-result")).to_contain_text("Created web: running")

    row.get_by_role("link", name="web").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("web")
    expect(page.locator(".summary .run-state")).to_have_text("running")
    expect(page.locator('.timeline li[data-kind="instance.running"]')).to_have_count(1)
    expect(page.locator(".status")).to_contain_text("No status reason")

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator(".action-result")).to_have_text("Stop: it is stopped now.")
    expect(page.locator(".summary .run-state")).to_have_text("stopped")
    expect(page.locator('.timeline li[data-kind="instance.stopped"]')).to_have_count(1)
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("button", name="Delete web").click()
    expect(page.get_by_role("heading", name="Project web-demo", level=1)).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Deleted instance web.")).to_be_visible()
    expect(page.locator('tr[data-instance="web"]')).to_have_count(0)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Projects").click()
    expect(page.get_by_role("link", name="web-demo")).to_be_visible()


def test_a_failed_start_explains_itself_on_every_page(page: Page, api: httpx.Client) -> None:
    project = _project(api, "failing")
    page.goto(f"/console/#/projects/{project}")
    page.get_by_label("Name").fill("huge")
    page.get_by_label("vCPUs").fill("16")  # each sled has 8: no sled can ever hold it
    page.get_by_label("Memory (GiB)").fill("4")
    page.get_by_role("button", name="Create instance").click()

    # The create answered 201, and the form does not pretend it started.
    result = page.locator(".form-result")
    expect(result.get_by_role("alert")).to_contain_text("Created huge, but it did not start")
    reason = api.get("/v1/instances/huge", params={"project": project}).json()["status_reason"]
    assert reason["code"] == "exceeds_sled_size"
    assert reason["transient"] is False
    expect(result).to_contain_text(reason["message"])
    expect(result).to_contain_text(reason["action"])
    expect(result).to_contain_text("needs your action")
    # The project's list shows the reason on the instance's row.
    row = page.locator('tr[data-instance="huge"]')
    expect(row.locator(".run-state")).to_have_text("stopped")
    expect(row.locator(".status-cell")).to_contain_text("exceeds_sled_size")
    expect(row.locator(".status-cell")).to_contain_text(reason["message"])
    expect(row.locator(".status-cell")).to_contain_text("needs your action")

    row.get_by_role("link", name="huge").click()
    status = page.locator(".status")
    expect(status).to_contain_text(reason["message"])
    expect(status.locator(".reason-action")).to_have_text(f"What you can do: {reason['action']}")
    expect(status.locator(".diagnosis")).to_contain_text("2 too small for it")
    failed = page.locator('.timeline li[data-kind="instance.start_failed"]')
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text(reason["message"])
    expect(failed).to_contain_text("current status reason")

    # Starting it again: the 507 is shown with its message and request id, not swallowed.
    page.get_by_role("button", name="Start", exact=True).click()
    error = page.locator(".action-result").get_by_role("alert")
    expect(error).to_contain_text("Start failed (507 InsufficientCapacity)")
    expect(error.locator(".error-message")).to_have_text(reason["message"])
    expect(error.locator(".request-id")).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))
    expect(failed).to_have_count(2)  # the new failure arrived in the timeline by itself

    page.get_by_role("button", name="Why can't it be placed?").click()
    placement = page.locator(".placement")
    expect(placement).to_contain_text("No sled can take it now")
    expect(placement).to_contain_text("exceeds_sled_size")
    expect(placement.locator(".diagnosis")).to_contain_text("all 2 sleds accounted for")


def test_a_crash_appears_in_the_open_timeline_without_a_reload(
    page: Page, api: httpx.Client
) -> None:
    project = _project(api, "crashing")
    inst = _instance(api, project, "victim")
    assert inst["run_state"] == "running"
    _open_instance(page, project, "victim")
    expect(page.locator('.timeline li[data-kind="instance.running"]')).to_have_count(1)
    expect(page.locator('.timeline li[data-kind="instance.failed"]')).to_have_count(0)
    page.evaluate("window.__sameDocument = true")

    r = api.post("/v1/system/sim/instances/victim/crash", params={"project": project})
    assert r.status_code == 204, r.text

    failed = page.locator('.timeline li[data-kind="instance.failed"]')
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("vmm_failure")
    expect(failed).to_contain_text("control plane (vmm failure)")
    expect(page.locator(".timeline li").first).to_have_attribute(
        "data-kind", re.compile(r"instance\.(failed|auto_restart_scheduled)")
    )
    # The instance's state and status reason follow the stream too.
    expect(page.locator(".summary .run-state")).to_have_text("failed")
    expect(page.locator(".status .reason-code")).to_have_text("vmm_failure")
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    # A user does not see the sled it ran on.
    sled_id = failed_reason_internal(api, inst["id"])["sled_id"]
    expect(page.get_by_text(sled_id)).to_have_count(0)


def failed_reason_internal(api: httpx.Client, instance_id: str) -> dict[str, Any]:
    r = api.get(f"/v1/instances/{instance_id}/events", params={"kind": "instance.failed"})
    return dict(r.json()["items"][0]["reason"]["internal"])


def test_operators_see_sled_ids_and_the_sleds_page(
    page: Page, api: httpx.Client, server: ServerProcess
) -> None:
    project = _project(api, "operated")
    _instance(api, project, "wide", ncpus=16)  # its start fails: a diagnosis with every sled
    sled_ids = [s["id"] for s in api.get("/v1/system/hardware/sleds").json()["items"]]
    assert len(sled_ids) == 2

    _open_instance(page, project, "wide")
    status = page.locator(".status")
    expect(status).to_contain_text("exceeds_sled_size")
    expect(page.locator('.timeline li[data-kind="instance.start_failed"]')).to_have_count(1)
    for sid in sled_ids:
        expect(page.get_by_text(sid)).to_have_count(0)
    expect(page.get_by_role("link", name="Sleds")).to_be_hidden()
    page.goto("/console/#/sleds")
    expect(page.get_by_text("The sleds are for operators")).to_be_visible()
    expect(page.locator("table.sleds")).to_have_count(0)

    # The recovery admin is a fleet admin: an operator, by role alone.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Skylight")).to_be_visible()
    _log_in(page, "admin", ADMIN_PASSWORD)
    expect(page.locator("#who-name")).to_contain_text("operator")
    page.goto("/console/#/sleds")
    expect(page.locator("table.sleds tbody tr")).to_have_count(2)
    for sid in sled_ids:
        row = page.locator(f'tr[data-sled-id="{sid}"]')
        expect(row).to_contain_text("in service")
        expect(row).to_contain_text("provisionable")
        expect(row).to_contain_text(" of 8")  # hardware threads reserved of usable
        expect(row).to_contain_text(" of 32 GiB")

    page.goto(f"/console/#/projects/{project}/instances/wide")
    expect(page.get_by_role("link", name="Sleds")).to_be_visible()
    for sid in sled_ids:  # which sled failed which check, for operators
        expect(status.locator(".per-sled")).to_contain_text(sid)
    page.get_by_role("button", name="Why can't it be placed?").click()
    for sid in sled_ids:
        expect(page.locator(".placement .per-sled")).to_contain_text(sid)

    # The session outlives a reload; logging out ends it (the API answers 401 again).
    page.reload()
    expect(status.locator(".per-sled")).to_contain_text(sled_ids[0])
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Skylight")).to_be_visible()
    for sid in sled_ids:
        expect(page.get_by_text(sid)).to_have_count(0)
    expect(page.get_by_role("link", name="Sleds")).to_be_hidden()
    assert page.request.get(f"{server.url}/v1/me").status == 401


def test_errors_show_their_message_and_request_id(page: Page, api: httpx.Client) -> None:
    page.goto("/console/#/projects")
    page.get_by_label("Name").fill("Not-A-Valid-Name")
    page.get_by_role("button", name="Create project").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The project was not created (400 InvalidRequest)")
    expect(alert).to_contain_text("names must begin with a lower case ASCII letter")
    expect(alert.locator(".request-id")).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))

    page.goto("/console/#/projects/nowhere/instances/nothing")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("404 ObjectNotFound")
    expect(alert.locator(".request-id")).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))


def test_the_timeline_resumes_after_the_stream_drops(
    page: Page, api: httpx.Client, server: ServerProcess
) -> None:
    """The server dies under an open timeline; events committed before the console
    reconnects still arrive: it resumes with Last-Event-ID. (Restarts the module's server:
    keep this test last.)"""
    project = _project(api, "resuming")
    inst = _instance(api, project, "steady")
    _open_instance(page, project, "steady")
    page.evaluate("window.__sameDocument = true")
    resumed_from: list[str] = []

    def reconnect(route: Route) -> None:
        last = route.request.headers.get("last-event-id")
        if last is not None and not resumed_from:
            resumed_from.append(last)
            # Committed while the console is not connected: only a resume can deliver it.
            r = api.post(f"/v1/instances/{inst['id']}/stop")
            assert r.status_code == 202, r.text
        route.continue_()

    page.route(re.compile(r"/events/stream"), reconnect)
    server.kill()
    expect(page.locator(".live")).to_contain_text("reconnecting")
    server.start()
    expect(page.locator('.timeline li[data-kind="instance.stopped"]')).to_have_count(1)
    expect(page.locator(".live")).to_have_text(re.compile(r"^Live"))
    assert resumed_from and resumed_from[0].isdigit()
    expect(page.locator(".summary .run-state")).to_have_text("stopped")
    assert page.evaluate("window.__sameDocument") is True


def test_the_cli_device_code_is_confirmed_in_the_console(page: Page, server: ServerProcess) -> None:
    """`skylight login`'s device flow: the code it prints is confirmed by the person signed in
    to the console, and the token it then gets is theirs."""
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        auth = login_flow.start(anonymous)
        assert auth["verification_uri"].endswith("/console/#/device")
        page.goto(f"/console/#/device/{auth['user_code']}")
        expect(page.get_by_label("Code shown by the CLI")).to_have_value(auth["user_code"])
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("status")).to_contain_text("the CLI is logged in as you")
        token = login_flow.poll(anonymous, auth["device_code"], timeout=10)
        me = anonymous.get("/v1/me", headers={"authorization": f"Bearer {token}"}).json()
    assert me["display_name"] == "alice" and me["fleet_viewer"] is False
