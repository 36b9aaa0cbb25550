"""The web dashboard (docs/dashboard.md): static files served by the API's own app, at ``/``.

Plain HTML, CSS and ES modules in ``static/`` (no build step, nothing fetched from elsewhere);
the page calls the JSON API and its event stream like any other client. Every response gets
headers that keep a page of this origin from running anything but these files: a strict
Content-Security-Policy (no inline script, no other origin), no sniffing, no framing.
"""

from __future__ import annotations

import pathlib

from aiohttp import web

__all__ = ["STATIC", "add_dashboard"]

STATIC = pathlib.Path(__file__).with_name("static")
_ASSETS = "/dashboard/"

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(_HEADERS)
    if request.path == "/" or request.path.startswith(_ASSETS):
        # Revalidate each time (ETag/Last-Modified): an upgraded service serves its new files at once.
        response.headers["Cache-Control"] = "no-cache"


def add_dashboard(app: web.Application) -> None:
    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app.router.add_get("/", index)
    app.router.add_static(_ASSETS, STATIC)
    app.on_response_prepare.append(_security_headers)
