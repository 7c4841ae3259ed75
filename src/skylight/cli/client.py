"""The CLI's way to the API: one httpx client, and one way to report an API error."""

from __future__ import annotations

from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

from skylight.cli import credentials
from skylight.wire import JsonObject

DEFAULT_URL = "http://127.0.0.1:12220"
err = Console(stderr=True)

# Exit codes: scripts can tell a reason that may pass by itself from one that will not.
EXIT_FAILED = 1
EXIT_TRANSIENT = 3
EXIT_PERMANENT = 4


def client(url: str) -> httpx.Client:
    """A client of the API at ``url``, carrying the token ``skylight login`` kept for it
    (or ``SKYLIGHT_TOKEN``). What the caller is shown is decided by its roles."""
    token = credentials.token(url)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, timeout=60.0, headers=headers)


def fail(response: httpx.Response) -> NoReturn:
    try:
        body: JsonObject = response.json()
    except ValueError:
        body = {"message": response.text}
    err.print(f"[bold red]error[/] {response.status_code} {body.get('error_code') or ''}")
    err.print(body.get("message", ""))
    if response.status_code == 401:
        err.print("[bold]what to do:[/] log in with `skylight login` (or set SKYLIGHT_TOKEN)")
    reason = body.get("reason")
    if reason:
        if reason.get("action"):
            err.print(f"[bold]what to do:[/] {reason['action']}")
        raise typer.Exit(EXIT_TRANSIENT if reason.get("transient") else EXIT_PERMANENT)
    raise typer.Exit(EXIT_FAILED)


def call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        err.print(f"[bold red]cannot reach Skylight at {http.base_url}[/]: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    if response.status_code >= 400:
        fail(response)
    return response.json() if response.content else None
