"""The web console: static HTML, CSS and JavaScript modules served by the API server.

It has no server side of its own: the pages call the public API (``/v1/...``) from the
browser, like any other client. ``GET /`` sends a browser to it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PATH = "/console"


def mount(app: FastAPI) -> None:
    """Serve the console at ``/console/`` and redirect ``/`` there; neither is in the
    OpenAPI document."""

    @app.get("/", include_in_schema=False)
    async def _root() -> RedirectResponse:
        return RedirectResponse(f"{PATH}/", status_code=307)

    app.mount(PATH, StaticFiles(directory=STATIC, html=True), name="console")
