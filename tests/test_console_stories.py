"""The failure stories, clicked through in the console (issue 13): an automatic restart in
progress, a user's start during its backoff, and a resize from the reason's fix. Each asserts
what the page says; screenshots of the first and the last land in ``docs/``.

Its own server (2 sleds of 8 threads and 32 GiB), with automatic restarts looked for often
and retried after a short backoff, so the stories play out in seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from skylight.testing import ServerProcess
from tests.test_console import (
    EXPECT_TIMEOUT,
    RACK,
    GiB,
    _instance,
    _open_instance,
    _project,
    add_alice,
    alice_page,
    chromium,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DOCS = Path(__file__).resolve().parents[1] / "docs"


# Automatic restarts looked for often and retried after a short backoff.
STORY_PACE = ["--auto-restart-interval", "0.2", "--auto-restart-cooldown", "0"]
STORY_PACE += ["--auto-restart-backoff", "1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        Path(tmp_path_factory.mktemp("stories")),
        args=[*RACK, *STORY_PACE],
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client(timeout=30) as client:
        add_alice(client)
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser, server: ServerProcess, api: httpx.Client) -> Iterator[Page]:
    with alice_page(browser, server, height=1000) as p:
        yield p


def _sleds(api: httpx.Client, state: str) -> None:
    for sled in api.get("/v1/system/hardware/sleds").json()["items"]:
        r = api.put(
            f"/v1/system/hardware/sleds/{sled['id']}/provision-policy", json={"state": state}
        )
        assert r.status_code == 200, r.text


def _events(api: httpx.Client, project: str, name: str, kind: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/instances/{name}/events", params={"project": project, "kind": kind})
    return list(r.json()["items"])


def test_an_automatic_restart_in_progress_and_a_start_during_its_backoff(
    page: Page, api: httpx.Client
) -> None:
    project = _project(api, "restarting")
    _instance(api, project, "web")
    _sleds(api, "non_provisionable")  # no sled takes it: every restart fails, and may pass
    try:
        r = api.post("/v1/system/sim/instances/web/crash", params={"project": project})
        assert r.status_code == 204, r.text
        _open_instance(page, project, "web")
        status = page.locator(".status")
        # The story: since the crash, the crash first, then the attempts; Skylight on it.
        crash = _events(api, project, "web", "instance.failed")[0]
        expect(status.locator(".story-happened")).to_contain_text(crash["reason"]["message"])
        expect(status.locator(".story-happened")).to_contain_text(
            re.compile(r"Automatic restart attempt \d+ failed")
        )
        expect(status.locator(".story-doing")).to_contain_text(
            re.compile(r"Restarting it automatically (at|now)")
        )
        expect(status.locator(".badge")).to_have_text("transient: Skylight retries")
        expect(status.locator(".reason-action")).to_have_count(1)  # the fix, said once
        # Only what the state allows: it is failed, so it can be started, stopped, deleted.
        expect(page.get_by_role("button", name="Reboot")).to_be_disabled()
        expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled()
        page.locator(".status").screenshot(path=str(DOCS / "console-auto-restart.png"))

        # The user presses Start during the backoff: it fails where they clicked, and the
        # page says auto-restart carries on (it does not silently cancel it).
        page.get_by_role("button", name="Start", exact=True).click()
        error = page.locator(".action-result").get_by_role("alert")
        expect(error).to_contain_text("Start failed (507")
        expect(status.locator(".story-happened")).to_contain_text(
            re.compile(r"(A start since then failed|Automatic restart attempt)")
        )
        expect(status.locator(".story-doing")).to_contain_text(
            re.compile(r"Restarting it automatically")
        )
        expect(page.locator(".summary .intended-state")).to_have_text("running")

        # Coalesced repeats sort by their last occurrence: the automatic restart failures,
        # first seen before the user's start, repeat after it and so stand above it.
        def repeats_after_start() -> bool:
            started = _events(api, project, "web", "instance.start_failed")[0]
            auto = _events(api, project, "web", "instance.auto_restart_failed")[0]
            return bool(auto["time_last"] > started["time"])

        expect.set_options(timeout=EXPECT_TIMEOUT)
        for _ in range(150):
            if repeats_after_start():
                break
            page.wait_for_timeout(100)
        assert repeats_after_start()
        page.reload()
        kinds = page.locator(".timeline li")
        expect(kinds.first).to_be_visible()
        order = [
            k
            for k in kinds.evaluate_all("els => els.map(e => e.dataset.kind)")
            if k in ("instance.start_failed", "instance.auto_restart_failed")
        ]
        assert order[0] == "instance.auto_restart_failed", order
    finally:
        _sleds(api, "provisionable")
    # The sleds come back: the next automatic restart succeeds, and the page follows.
    expect(page.locator(".summary .run-state")).to_have_text("running", timeout=30_000)
    expect(page.locator(".status-ok")).to_be_visible()


def test_the_buttons_follow_the_state(page: Page, api: httpx.Client) -> None:
    project = _project(api, "buttons")
    _instance(api, project, "b")
    _open_instance(page, project, "b")
    start = page.get_by_role("button", name="Start", exact=True)
    expect(start).to_be_disabled()
    expect(start).to_have_attribute("title", "It is running already.")
    expect(page.get_by_role("button", name="Delete")).to_be_disabled()
    expect(page.get_by_role("button", name="Resize…")).to_be_disabled()
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".summary .run-state")).to_have_text("stopped")
    expect(start).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    expect(page.get_by_role("button", name="Reboot")).to_be_disabled()
    expect(page.get_by_role("button", name="Delete")).to_be_enabled()


def test_the_fix_is_a_click_away_when_it_is_a_resize(page: Page, api: httpx.Client) -> None:
    project = _project(api, "resizing")
    inst = _instance(api, project, "huge", ncpus=16)  # each sled has 8: no sled holds it
    assert inst["status_reason"]["code"] == "exceeds_sled_size"
    _open_instance(page, project, "huge")
    status = page.locator(".status")
    expect(status.locator(".badge")).to_have_text("needs your action")
    fix = status.get_by_role("button", name="Resize to 8 vCPUs, 1 GiB and start")
    expect(fix).to_be_visible()
    page.locator(".status").screenshot(path=str(DOCS / "console-resize-fix.png"))
    fix.click()
    # The outcome shows where the user clicked, and the page follows the instance.
    expect(status.locator(".fix-result")).to_contain_text("Resized to 8 vCPUs, 1 GiB")
    expect(page.locator(".summary .run-state")).to_have_text("running")
    expect(page.locator(".status-ok")).to_be_visible()
    after = api.get("/v1/instances/huge", params={"project": project}).json()
    assert (after["ncpus"], after["memory"], after["run_state"]) == (8, GiB, "running")


def test_resize_by_hand_then_start(page: Page, api: httpx.Client) -> None:
    project = _project(api, "handresize")
    _instance(api, project, "r", start=False)
    _open_instance(page, project, "r")
    page.get_by_role("button", name="Resize…").click()
    form = page.get_by_role("form", name="Resize")
    form.get_by_label("vCPUs").fill("2")
    form.get_by_label("Memory (GiB)").fill("3")
    form.get_by_label("start it after the change").check()
    form.get_by_role("button", name="Apply").click()
    result = page.locator(".resize-result")
    expect(result).to_contain_text("Resized to 2 vCPUs, 3 GiB")
    expect(result).to_contain_text("Start: it is")
    expect(page.locator(".summary .run-state")).to_have_text("running")
    after = api.get("/v1/instances/r", params={"project": project}).json()
    assert (after["ncpus"], after["memory"]) == (2, 3 * GiB)
