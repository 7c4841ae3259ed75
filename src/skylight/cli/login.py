"""``skylight login`` and ``skylight logout``: an access token for the CLI, by Oxide's
device flow (confirm the code in the console) or with a username and password file."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import httpx
import typer

from skylight import login_flow
from skylight.cli import credentials
from skylight.cli.client import DEFAULT_URL, EXIT_FAILED, call, err


def login(
    url: str = typer.Option(DEFAULT_URL, "--url", envvar="SKYLIGHT_URL", help="the Skylight API"),
    silo: str = typer.Option("recovery", help="your silo (with --username)"),
    username: str | None = typer.Option(None, help="log in with a password instead"),
    password_file: Path | None = typer.Option(
        None, help="a file holding the password (with --username)"
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="only print where to confirm"),
    timeout: float = typer.Option(300.0, min=1, help="seconds to wait for the confirmation"),
) -> None:
    """Log in and keep an access token for URL in ~/.config/skylight/credentials.toml."""
    try:
        with httpx.Client(base_url=url, timeout=30.0) as http:
            if username is not None:
                if password_file is None:
                    raise typer.BadParameter("--username needs --password-file")
                password = password_file.read_text().strip()
                token = login_flow.with_password(http, silo, username, password)
            else:
                auth = login_flow.start(http)
                typer.echo(f"Confirm the code {auth['user_code']} at {auth['verification_uri']}")
                if not no_browser:
                    webbrowser.open(f"{auth['verification_uri']}/{auth['user_code']}")
                token = login_flow.poll(http, auth["device_code"], timeout=timeout)
    except login_flow.LoginFailed as exc:
        err.print(f"[bold red]login failed[/]: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    except httpx.HTTPError as exc:
        err.print(f"[bold red]cannot reach Skylight at {url}[/]: {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=30.0, headers=headers) as http:
        me = call(http, "GET", "/v1/me")
        # The newest token is the one just granted; kept so logout can revoke it.
        tokens = call(http, "GET", "/v1/me/access-tokens", params={"limit": 1000})["items"]
    newest = max(tokens, key=lambda t: t["time_created"])["id"] if tokens else ""
    credentials.save(url, token, f"{me['silo_name']}/{me['display_name']}", newest)
    typer.echo(f"Logged in to {url} as {me['display_name']} of silo {me['silo_name']}.")


def logout(
    url: str = typer.Option(DEFAULT_URL, "--url", envvar="SKYLIGHT_URL", help="the Skylight API"),
) -> None:
    """Revoke the token kept for URL (at once, on every replica) and forget it."""
    entry = credentials.forget(url)
    if entry is None:
        typer.echo(f"Not logged in to {url}.")
        return
    token, token_id = entry
    if token_id:
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, timeout=30.0, headers=headers) as http:
            try:
                http.delete(f"/v1/me/access-tokens/{token_id}")
            except httpx.HTTPError as exc:
                err.print(f"could not revoke the token at {url} ({exc}); it was forgotten here")
    typer.echo("Logged out.")
