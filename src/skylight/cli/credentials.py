"""Where the CLI keeps its access tokens: ``~/.config/skylight/credentials.toml`` (mode
0600), one token per API URL; ``SKYLIGHT_TOKEN`` overrides it."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "skylight" / "credentials.toml"


def _read() -> dict[str, dict[str, str]]:
    try:
        data = tomllib.loads(path().read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    hosts = data.get("hosts", {})
    return {k: v for k, v in hosts.items() if isinstance(v, dict)}


def _write(hosts: dict[str, dict[str, str]]) -> None:
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for url, entry in sorted(hosts.items()):
        lines.append(f"[hosts.{json.dumps(url)}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in sorted(entry.items())]
        lines.append("")
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, p)


def token(url: str) -> str | None:
    env = os.environ.get("SKYLIGHT_TOKEN")
    if env:
        return env
    return _read().get(url.rstrip("/"), {}).get("token")


def save(url: str, token: str, user: str, token_id: str) -> None:
    hosts = _read()
    hosts[url.rstrip("/")] = {"token": token, "user": user, "token_id": token_id}
    _write(hosts)


def forget(url: str) -> tuple[str, str] | None:
    """Drop the token kept for ``url``: (token, its id) for revoking it, or None."""
    hosts = _read()
    entry = hosts.pop(url.rstrip("/"), None)
    if entry is None:
        return None
    _write(hosts)
    return entry.get("token", ""), entry.get("token_id", "")
