"""The control plane's side of an HTTP sled agent (``skylight sled-agent``).

``HttpSledAgent`` implements ``SledAgent`` over the agent's small HTTP API (see
``skylight/sled_agent.py``). Every call is idempotent on the agent's side, so a call retried after
a lost answer does no harm. Transport failures become ``SledAgentError("unreachable")`` or
``SledAgentError("timeout")``; an agent's error body ``{error_code, message}`` carries the
``SledAgentError`` kind it raised, and is turned back into that kind here. Every request
carries the control plane's rack credential (``rack_secret.py``); agents refuse any without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from skylight.rack_secret import bearer
from skylight.sled.agent import SledAgentError, VmmSpec
from skylight.wire import JsonObject

KINDS = ("error", "vmm_gone", "timeout", "unreachable")


_ATTEMPTS = 3  # per call, for connection errors only


class HttpSledAgent:
    """One sled agent at ``base_url``. Owns one ``httpx.AsyncClient`` (share the instance)."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        credential: str,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: an agent in-process
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            headers=bearer(credential),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        ok_missing: bool = False,
        timeout: float | None = None,
    ) -> httpx.Response | None:
        for attempt in range(_ATTEMPTS):
            try:
                r = await self._client.request(
                    method,
                    path,
                    json=json,
                    timeout=self.timeout if timeout is None else timeout,
                )
                break
            except httpx.TimeoutException as exc:
                raise SledAgentError(
                    "timeout", f"no answer from the sled agent at {self.base_url}: {exc!r}"
                ) from None
            except httpx.HTTPError as exc:
                # A pooled connection the agent closed as the request went out (keep-alive
                # race) looks like this too: every call is idempotent, so try again at once.
                if attempt + 1 < _ATTEMPTS:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                raise SledAgentError(
                    "unreachable", f"cannot reach the sled agent at {self.base_url}: {exc!r}"
                ) from None
        if r.status_code == 404 and ok_missing:
            return None
        if r.status_code >= 400:
            raise _error_from(r, self.base_url)
        return r

    # -- SledAgent -------------------------------------------------------------------------

    async def register(self, spec: VmmSpec) -> None:
        body = {"instance_id": spec.instance_id, "ncpus": spec.ncpus, "memory": spec.memory}
        await self._call("PUT", f"/vmms/{spec.vmm_id}", json=body)

    async def ensure_running(self, vmm_id: str) -> None:
        await self._call("POST", f"/vmms/{vmm_id}/run")

    async def vmm_state(self, vmm_id: str) -> str | None:
        r = await self._call("GET", f"/vmms/{vmm_id}", ok_missing=True)
        if r is None:
            return None
        return str(r.json()["state"])

    async def stop(self, vmm_id: str) -> None:
        await self._call("POST", f"/vmms/{vmm_id}/stop")

    async def unregister(self, vmm_id: str) -> None:
        await self._call("DELETE", f"/vmms/{vmm_id}")

    async def reboot(self, vmm_id: str) -> None:
        await self._call("POST", f"/vmms/{vmm_id}/reboot")

    # -- beyond the protocol: health and reconciliation -------------------------------------

    async def health(self, timeout: float | None = None) -> JsonObject:
        """``{sled_id, serial, ...}``; raises ``SledAgentError`` when the agent is down."""
        r = await self._call("GET", "/health", timeout=timeout)
        assert r is not None
        return dict(r.json())

    async def vmms(self) -> list[JsonObject]:
        """Every VMM the agent holds: ``[{vmm_id, instance_id, state}]``."""
        r = await self._call("GET", "/vmms")
        assert r is not None
        return list(r.json()["items"])


def _error_from(r: httpx.Response, base_url: str) -> SledAgentError:
    try:
        body = r.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("error_code")
    message = str(body.get("message") or r.text[:200] or f"HTTP {r.status_code}")
    if code in KINDS:
        return SledAgentError(str(code), message)
    if r.status_code == 401:  # a replica whose rack secret is not the agent's
        return SledAgentError(
            "error",
            f"the sled agent at {base_url} refused this control plane's rack credential: "
            "do they share one --rack-secret-file?",
        )
    if r.status_code in (502, 503):
        return SledAgentError("unreachable", f"{base_url}: {message}")
    if r.status_code == 504:
        return SledAgentError("timeout", f"{base_url}: {message}")
    return SledAgentError("error", f"HTTP {r.status_code} from {base_url}: {message}")
