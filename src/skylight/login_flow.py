"""The client side of logging in, for the CLI, the test suite and the benchmarks: Oxide's
device flow, confirmed by the user's own console session when the password is at hand.

Only an access token comes out; the session used to confirm it is ended at once.
"""

from __future__ import annotations

import time
import uuid

import httpx

# Who asks for tokens (the device flow's client_id): the Skylight CLI.
CLIENT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "skylight:cli"))
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class LoginFailed(Exception):
    """The server refused: the message is its own."""


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", r.text))
    except ValueError:
        return r.text


def start(client: httpx.Client) -> dict[str, str]:
    """Begin a device authorization: ``device_code``, ``user_code``, ``verification_uri``."""
    r = client.post("/device/auth", data={"client_id": CLIENT_ID})
    if r.status_code != 200:
        raise LoginFailed(_message(r))
    return dict(r.json())


def poll(client: httpx.Client, device_code: str, *, timeout: float, interval: float = 1.0) -> str:
    """The access token once the user has confirmed, polling as RFC 8628 asks."""
    deadline = time.monotonic() + timeout
    form = {"grant_type": GRANT, "device_code": device_code, "client_id": CLIENT_ID}
    while True:
        r = client.post("/device/token", data=form)
        if r.status_code == 200:
            return str(r.json()["access_token"])
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if body.get("error") != "authorization_pending" or time.monotonic() > deadline:
            raise LoginFailed(_message(r))
        time.sleep(interval)


def with_password(client: httpx.Client, silo: str, username: str, password: str) -> str:
    """An access token for a user whose password we have: log in (a session), confirm a
    device code with that session, take the token, end the session."""
    r = client.post(f"/v1/login/{silo}/local", json={"username": username, "password": password})
    if r.status_code != 204:
        raise LoginFailed(_message(r))
    session = {"cookie": f"session={r.cookies['session']}", "authorization": ""}
    client.cookies.clear()
    auth = start(client)
    r = client.post("/device/confirm", json={"user_code": auth["user_code"]}, headers=session)
    if r.status_code != 204:
        raise LoginFailed(_message(r))
    token = poll(client, auth["device_code"], timeout=10.0, interval=0.05)
    client.post("/v1/logout", headers=session)
    client.cookies.clear()
    return token
