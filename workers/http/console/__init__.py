"""The web console: static HTML, JS and CSS served from the package at ``/console``.

The files hold no data and are served without a key; the page asks for a tenant API key once,
keeps it in ``sessionStorage`` and sends it as ``Authorization: Bearer`` on its own calls to the
v1 API, so the console sees exactly what that key may see. A strict Content-Security-Policy
allows only these files (no inline script, no other origin).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from workers.contract import ServiceError

FILES = {"console.js": "text/javascript", "plot.js": "text/javascript",
         "console.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


router = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    """A file of the page, read once per process (the package's files do not change)."""
    return resources.files(__name__).joinpath(name).read_bytes()


@router.get("/console")
async def console_page() -> Response:
    return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/console/")
async def console_slash() -> RedirectResponse:
    return RedirectResponse("/console", status_code=308)


@router.get("/console/{name}")
async def console_asset(name: str) -> Response:
    if name not in FILES:
        raise ServiceError(404, "not_found", f"no console file {name!r}", "name")
    return Response(_read(name), media_type=f"{FILES[name]}; charset=utf-8", headers=HEADERS)
