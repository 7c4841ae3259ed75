"""The one place that turns errors into HTTP: an Oxide ``Error`` body with a request id."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skylight.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    InvalidRequest,
    InvalidValue,
    NotFound,
    OperationFailed,
    ServiceUnavailable,
    SkylightError,
    Unauthenticated,
)
from skylight.events.reasons import CATALOG, redact
from skylight.ids import new_id
from skylight.store import StoreUnavailable
from skylight.wire import JsonObject

log = logging.getLogger(__name__)

# Seconds a client is told to wait when the store cannot be reached: about how long a
# dropped connection takes to be replaced, short enough that a blip costs little.
STORE_RETRY_AFTER = 2

# The API's error code for each domain error ...
ERROR_CODE: dict[type[SkylightError], str] = {
    NotFound: "ObjectNotFound",
    AlreadyExists: "ObjectAlreadyExists",
    Forbidden: "Forbidden",
    Unauthenticated: "Unauthorized",
    InvalidRequest: "InvalidRequest",
    InvalidValue: "InvalidValue",
    Conflict: "Conflict",
    ServiceUnavailable: "ServiceUnavailable",
}
# ... and for each reason code of a failed operation (every code of events/reasons.CATALOG;
# a test holds them together) ...
REASON_ERROR_CODE: dict[str, str] = {
    "insufficient_capacity": "InsufficientCapacity",
    "capacity_in_maintenance": "InsufficientCapacity",
    "exceeds_sled_size": "InsufficientCapacity",
    "anti_affinity_unsatisfiable": "InsufficientCapacity",
    "affinity_conflict": "InsufficientCapacity",
    "affinity_sled_unavailable": "InsufficientCapacity",
    "local_storage_unavailable": "InsufficientCapacity",
    "cpu_platform_unavailable": "InsufficientCapacity",
    "quota_exceeded": "InsufficientCapacity",
    "instance_changed_state": "Conflict",
    "sled_failure": "ServiceUnavailable",
    "vmm_failure": "ServiceUnavailable",
    "operation_stuck": "Internal",
    "internal": "Internal",
}
assert set(REASON_ERROR_CODE) == set(CATALOG), "every reason code answers something"
# ... and the status of each error code.
STATUS: dict[str, int] = {
    "ObjectNotFound": 404,
    "ObjectAlreadyExists": 400,
    "InvalidRequest": 400,
    "InvalidValue": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "Conflict": 409,
    "InsufficientCapacity": 507,
    "ServiceUnavailable": 503,
    "ServiceNotAvailable": 503,
    "Internal": 500,
    "PayloadTooLarge": 413,
    "MethodNotAllowed": 405,
}


def error_code(exc: SkylightError) -> str:
    """The API's error code for a domain error: by its class, or, for a failed operation,
    by its reason's code."""
    if isinstance(exc, OperationFailed):
        return REASON_ERROR_CODE.get(str(exc.reason.get("code")), "Internal")
    for cls in type(exc).__mro__:
        if cls in ERROR_CODE:
            return ERROR_CODE[cls]
    return "Internal"


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = new_id()
        request.state.request_id = rid
    return str(rid)


def error_response(
    request: Request, error_code: str | None, message: str, status: int, **extra: Any
) -> JSONResponse:
    body: JsonObject = {
        "request_id": request_id(request),
        "error_code": error_code,
        "message": message,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers={"x-request-id": body["request_id"]})


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "body"
        if err.get("type") == "json_invalid":
            return f"unable to parse JSON body: {err.get('ctx', {}).get('error', 'invalid JSON')}"
        if err.get("type") == "missing" and loc == "body":
            return "a JSON body is required"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "invalid request: " + "; ".join(parts)


def document(doc: JsonObject) -> JsonObject:
    """Say in the OpenAPI document what the handlers below answer, as the Oxide document
    does: every operation's errors are ``4XX`` and ``5XX`` with an ``Error`` body (never
    FastAPI's default ``422`` with a ``detail`` list, which this API does not send)."""
    from skylight.api.models import Error  # (models is not needed to answer an error)

    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    components.setdefault("responses", {})["Error"] = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for status in ("4XX", "5XX"):
                responses[status] = {"$ref": "#/components/responses/Error"}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> JsonObject:
        if app.openapi_schema is None:
            app.openapi_schema = document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(SkylightError)
    async def _domain(request: Request, exc: SkylightError) -> JSONResponse:
        reason = None
        if isinstance(exc, OperationFailed):
            from skylight.api.deps import is_operator  # (deps imports the control plane)

            reason = redact(exc.reason, operator=is_operator(request))
        code = error_code(exc)
        return error_response(request, code, exc.message, STATUS[code], reason=reason)

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # Not a 500: nothing is wrong with the request or with Skylight's code, and the
        # same request may succeed shortly. What was asked may or may not have been done
        # (the connection can drop during COMMIT); operations are safe to ask again.
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
        response = error_response(
            request,
            "ServiceNotAvailable",
            "the control plane cannot reach its database right now; try again shortly",
            503,
        )
        response.headers["retry-after"] = str(STORE_RETRY_AFTER)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, "InvalidRequest", _describe(list(exc.errors())), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "ObjectNotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}.get(
            exc.status_code, "InvalidRequest"
        )
        message = str(exc.detail) if exc.status_code != 404 else "route not found"
        return error_response(request, code, message, exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(request, "Internal", "Internal Server Error", 500)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes before anything reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(scope, receive, send)
            return
        if length is not None:
            await self.app(scope, receive, send)  # the server holds the body to its length
            return
        # No declared length (a chunked body): read it here, up to the limit, and hand it on.
        # Raising from inside the app's receive instead would reach FastAPI wrapped in an
        # exception group (by the request-id middleware) and come out as a 400.
        buffered: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    def _message(self) -> str:
        return f"request body exceeded maximum size of {self.limit} bytes"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = new_id()
        response = JSONResponse(
            {"request_id": rid, "error_code": "PayloadTooLarge", "message": self._message()},
            status_code=413,
            headers={"x-request-id": rid},
        )
        await response(scope, receive, send)
