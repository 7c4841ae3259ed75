"""``skylight sled-agent --sim``: one simulated sled as its own process, reached over HTTP.

The sled is a ``SimRack`` holding one sled (its VMMs and faults in ``sled-agent.db`` in the
agent's data directory, so they outlive a restart of the agent). The API mirrors the
``SledAgent`` interface; every call is idempotent:

* ``PUT /vmms/{id}`` ``{instance_id, ncpus, memory}`` register, ``POST /vmms/{id}/run``,
  ``GET /vmms/{id}`` → ``{vmm_id, instance_id, state}`` (404 when unknown),
  ``POST /vmms/{id}/stop``, ``DELETE /vmms/{id}``, ``POST /vmms/{id}/reboot``,
  ``GET /vmms`` (every VMM, for the control plane's reconciliation), ``GET /health``.
* Faults, as the control plane's ``/v1/system/sim`` routes take them: ``POST /faults``,
  ``GET /faults``, ``DELETE /faults/{id}``; ``POST /crash/{instance_id}``,
  ``POST /power-off``, ``POST /power-on``.

Every route answers only the control plane: a request without its rack credential
(``Authorization: Bearer cp.…``, see ``rack_secret.py``) is refused with 401. The agent's own
requests to the control plane carry its sled credential, which names its serial.

Errors are ``{error_code, message}`` where ``error_code`` is the ``SledAgentError`` kind
(``error``, ``vmm_gone``, ``timeout``, ``unreachable``) so the client raises the same kind.

At start-up the agent registers with the control plane (``POST /v1/system/sled-agents``),
retrying with a capped backoff until a control plane answers; the sled id it gets back is kept
in the data directory, so a restarted agent (same serial) is the same sled. VMMs that die on
their own (crash, power-off) are reported to ``POST /v1/system/sled-agents/{id}/vmm-lost``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from skylight.api.models import FaultCreate
from skylight.config import GiB
from skylight.ids import parse_uuid
from skylight.rack_secret import RackSecret, bearer
from skylight.sled.agent import SledAgentError, VmmSpec
from skylight.sled.sim import Fault, SimRack, SimSledAgent
from skylight.wire import JsonObject

log = logging.getLogger(__name__)

_STATUS = {"error": 409, "vmm_gone": 410, "timeout": 504, "unreachable": 503}
_SECRET_HINT = " (is this agent's --rack-secret-file the control plane's?)"


@dataclass
class AgentConfig:
    url: str  # how the control plane reaches this agent
    control_planes: list[str]
    serial: str
    data_dir: Path
    rack_secret: RackSecret
    cpus: int = 64
    memory_gib: int = 512
    local_storage_gib: int = 2048
    cpu_family: str = "amd_milan"
    start_delay: float = 0.5
    rack_id: str | None = None
    # Registration: first retry after this, doubling up to register_retry_max, then steady.
    register_retry_first: float = 0.1
    register_retry_max: float = 3.0
    # Reports of lost VMMs: attempts made inline before retrying in the background.
    report_attempts: int = 4
    cp_timeout: float = 5.0

    def sled(self) -> JsonObject:
        """The sled as this agent offers it: registered with, and shown by ``/health``."""
        return {
            "serial": self.serial,
            "url": self.url,
            "cpus": self.cpus,
            "memory": self.memory_gib * GiB,
            "local_storage": self.local_storage_gib * GiB,
            "cpu_family": self.cpu_family,
        }


class AgentError(Exception):
    """A request the agent refuses before it reaches the sled (bad input, unknown fault)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class SledAgentService:
    """The agent's state: its sled, its registration, its reports to the control plane."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.rack = SimRack(config.data_dir / "sled-agent.db", config.start_delay)
        self.rack.set_listener(self._vmm_lost)
        self._id_path = config.data_dir / "sled-id"
        self.sled_id: str | None = None
        if self._id_path.exists():
            self.sled_id = self._id_path.read_text().strip() or None
        self.registered = False
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unreported: list[tuple[str, str, str, str]] = []
        self._cp_index = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        credential = self.config.rack_secret.sled_credential(self.config.serial)
        self._client = httpx.AsyncClient(timeout=self.config.cp_timeout, headers=bearer(credential))
        self._spawn(self._register_loop(), "register")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def sled(self) -> SimSledAgent:
        if self.sled_id is None:
            raise SledAgentError(
                "unreachable", "this sled agent has not registered with the control plane yet"
            )
        return self.rack.agent(self.sled_id)

    # -- talking to the control plane ------------------------------------------------------

    async def _post(self, path: str, body: JsonObject) -> httpx.Response:
        """POST to the control plane, trying each configured replica once, in turn."""
        assert self._client is not None
        urls = self.config.control_planes
        last: Exception | None = None
        for i in range(len(urls)):
            base = urls[(self._cp_index + i) % len(urls)].rstrip("/")
            try:
                r = await self._client.post(base + path, json=body)
            except httpx.HTTPError as exc:
                last = exc
                continue
            if r.status_code >= 500:
                last = RuntimeError(f"{base}: HTTP {r.status_code}: {r.text[:300]}")
                continue
            self._cp_index = (self._cp_index + i) % len(urls)
            return r
        raise RuntimeError(f"no control plane answered: {last!r}")

    def registration(self) -> JsonObject:
        body = self.config.sled()
        if self.config.rack_id is not None:
            body["rack_id"] = self.config.rack_id
        return body

    async def register_once(self) -> bool:
        try:
            r = await self._post("/v1/system/sled-agents", self.registration())
        except Exception as exc:
            log.warning("registration with the control plane failed: %s", exc)
            return False
        if r.status_code >= 400:
            hint = _SECRET_HINT if r.status_code == 401 else ""
            log.error("the control plane refused the registration: %s%s", r.text[:500], hint)
            return False
        self._adopt_id(str(r.json()["id"]))
        self.registered = True
        log.info("registered as sled %s (serial %s)", self.sled_id, self.config.serial)
        return True

    def _adopt_id(self, sled_id: str) -> None:
        old = self.sled_id
        if old is not None and old != sled_id:
            # Another control plane (a fresh store): keep the VMMs, under the new id.
            log.warning("the control plane knows this sled as %s (was %s)", sled_id, old)
            for v in self.rack.vmms_on(old):
                v.sled_id = sled_id
                self.rack.save(v)
        self.sled_id = sled_id
        self._id_path.write_text(sled_id)

    async def _register_loop(self) -> None:
        delay = self.config.register_retry_first
        while not await self.register_once():
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.register_retry_max)

    async def _vmm_lost(self, vmm_id: str, cause: str, detail: str) -> None:
        """The rack lost a VMM: tell the control plane (retrying in the background if need be)."""
        sled_id = self.sled_id or ""
        if await self._report(sled_id, vmm_id, cause, detail, self.config.report_attempts):
            return
        self._unreported.append((sled_id, vmm_id, cause, detail))
        if not any(t.get_name() == "report" for t in self._tasks):
            self._spawn(self._report_loop(), "report")

    async def _report(
        self, sled_id: str, vmm_id: str, cause: str, detail: str, attempts: int
    ) -> bool:
        body = {"vmm_id": vmm_id, "cause": cause, "detail": detail}
        delay = 0.1
        for attempt in range(attempts):
            try:
                r = await self._post(f"/v1/system/sled-agents/{sled_id}/vmm-lost", body)
                if r.status_code < 400:
                    return True
                if r.status_code < 500 and r.status_code != 429:
                    log.error("the control plane refused a lost-VMM report: %s", r.text[:300])
                    return True  # a refusal will not change by retrying
                # 503 (its store out of reach) and the like: the report waits, never lost.
                log.warning("lost-VMM report for %s: %s; retrying", vmm_id, r.status_code)
            except Exception as exc:
                log.warning("lost-VMM report for %s failed: %s", vmm_id, exc)
            if attempt + 1 < attempts:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        return False

    async def _report_loop(self) -> None:
        while self._unreported:
            await asyncio.sleep(self.config.register_retry_max)
            for item in list(self._unreported):
                if await self._report(*item, attempts=1):
                    self._unreported.remove(item)


# -- the HTTP API ----------------------------------------------------------------------------


class VmmBody(BaseModel):
    instance_id: str
    ncpus: int = Field(ge=1)
    memory: int = Field(ge=1)


def _uuid(value: str, what: str) -> str:
    if parse_uuid(value) is None:
        raise AgentError(400, "InvalidRequest", f"{what}: not a UUID: {value!r}")
    return value.lower()


def _fault_view(f: Fault) -> JsonObject:
    return asdict(f)


def create_agent_app(config: AgentConfig) -> FastAPI:
    service = SledAgentService(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    def control_plane_only(request: Request) -> None:
        """Only the control plane (or an operator holding the rack secret) drives the sled."""
        header = request.headers.get("authorization")
        if not config.rack_secret.is_control_plane(header):
            what = "missing" if not header else "invalid"
            raise AgentError(
                401,
                "Unauthorized",
                f"credentials {what}: this sled agent answers only the control plane's "
                "rack credential",
            )

    app = FastAPI(
        title="Skylight sled agent (simulated)",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(control_plane_only)],
    )
    app.state.service = service

    @app.exception_handler(SledAgentError)
    async def _sled_error(_r: Request, exc: SledAgentError) -> JSONResponse:
        return JSONResponse(
            {"error_code": exc.kind, "message": exc.message}, status_code=_STATUS.get(exc.kind, 409)
        )

    @app.exception_handler(AgentError)
    async def _agent_error(_r: Request, exc: AgentError) -> JSONResponse:
        return JSONResponse({"error_code": exc.code, "message": exc.message}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in list(exc.errors())[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid value')}")
        return JSONResponse(
            {"error_code": "InvalidRequest", "message": "invalid request: " + "; ".join(parts)},
            400,
        )

    # -- health and inventory --------------------------------------------------------------

    @app.get("/health")
    async def health() -> JsonObject:
        return {
            "sled_id": service.sled_id,
            "registered": service.registered,
            **config.sled(),
            "powered": service.sled_id is None or service.rack.is_powered(service.sled_id),
        }

    @app.get("/vmms")
    async def vmm_list() -> JsonObject:
        sled = service.sled()
        if not service.rack.is_powered(sled.sled_id):
            raise SledAgentError("unreachable", "the sled is powered off")
        items = []
        for v in service.rack.vmms_on(sled.sled_id):
            fresh = service.rack.vmm(v.vmm_id) or v
            items.append(
                {"vmm_id": fresh.vmm_id, "instance_id": fresh.instance_id, "state": fresh.state}
            )
        return {"items": items}

    # -- the SledAgent calls ---------------------------------------------------------------

    @app.put("/vmms/{vmm_id}", status_code=204, response_class=Response)
    async def vmm_register(vmm_id: str, body: VmmBody) -> Response:
        spec = VmmSpec(
            _uuid(vmm_id, "vmm_id"), _uuid(body.instance_id, "instance_id"), body.ncpus, body.memory
        )
        await service.sled().register(spec)
        return Response(status_code=204)

    @app.post("/vmms/{vmm_id}/run", status_code=204, response_class=Response)
    async def vmm_run(vmm_id: str) -> Response:
        await service.sled().ensure_running(_uuid(vmm_id, "vmm_id"))
        return Response(status_code=204)

    @app.get("/vmms/{vmm_id}")
    async def vmm_get(vmm_id: str) -> Any:
        vid = _uuid(vmm_id, "vmm_id")
        sled = service.sled()
        state = await sled.vmm_state(vid)
        if state is None:
            raise AgentError(404, "not_found", f"the sled has no VMM {vid}")
        v = service.rack.vmm(vid)
        return {"vmm_id": vid, "instance_id": v.instance_id if v else None, "state": state}

    @app.post("/vmms/{vmm_id}/stop", status_code=204, response_class=Response)
    async def vmm_stop(vmm_id: str) -> Response:
        await service.sled().stop(_uuid(vmm_id, "vmm_id"))
        return Response(status_code=204)

    @app.delete("/vmms/{vmm_id}", status_code=204, response_class=Response)
    async def vmm_unregister(vmm_id: str) -> Response:
        await service.sled().unregister(_uuid(vmm_id, "vmm_id"))
        return Response(status_code=204)

    @app.post("/vmms/{vmm_id}/reboot", status_code=204, response_class=Response)
    async def vmm_reboot(vmm_id: str) -> Response:
        await service.sled().reboot(_uuid(vmm_id, "vmm_id"))
        return Response(status_code=204)

    # -- faults (the same shapes as /v1/system/sim/faults) ---------------------------------

    @app.post("/faults", status_code=201)
    async def fault_create(body: FaultCreate) -> JsonObject:
        sled = None
        if body.sled is not None:
            if body.sled.lower() not in (service.sled_id, config.serial.lower()):
                raise AgentError(
                    400,
                    "InvalidRequest",
                    f"sled: this agent is sled {service.sled_id} (serial {config.serial}), "
                    f"not {body.sled!r}",
                )
            sled = service.sled_id
        instance = _uuid(body.instance, "instance") if body.instance is not None else None
        fault = service.rack.arm(
            Fault(
                at=body.at,
                kind=body.kind,
                sled=sled,
                instance=instance,
                count=body.count,
                message=body.message,
            )
        )
        return _fault_view(fault)

    @app.get("/faults")
    async def fault_list() -> JsonObject:
        return {"items": [_fault_view(f) for f in service.rack.faults()], "next_page": None}

    @app.delete("/faults/{fault_id}", status_code=204, response_class=Response)
    async def fault_delete(fault_id: str) -> Response:
        if not service.rack.disarm(fault_id):
            raise AgentError(404, "ObjectNotFound", f'not found: fault with id "{fault_id}"')
        return Response(status_code=204)

    @app.post("/crash/{instance_id}", status_code=204, response_class=Response)
    async def crash(instance_id: str) -> Response:
        iid = _uuid(instance_id, "instance_id")
        if not await service.rack.crash_instance(iid):
            raise AgentError(400, "InvalidRequest", "the instance has no VMM on this sled")
        return Response(status_code=204)

    @app.post("/power-off", status_code=204, response_class=Response)
    async def power_off() -> Response:
        await service.rack.power_off(service.sled().sled_id)
        return Response(status_code=204)

    @app.post("/power-on", status_code=204, response_class=Response)
    async def power_on() -> Response:
        await service.rack.power_on(service.sled().sled_id)
        return Response(status_code=204)

    return app


def default_serial(bind: str) -> str:
    """A serial that stays the same for an agent bound to the same address."""
    host, _, port = bind.rpartition(":")
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in host).strip("-") or "host"
    return f"sled-agent-{cleaned}-{port}"
