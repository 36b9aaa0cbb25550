"""The routes of the JSON API, one per MissionService method (AIP-136 custom methods after ``:``),
and the aiohttp application that serves them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from mission_service.http.access import Access
from mission_service.http.dashboard import add_dashboard
from mission_service.http.errors import error_response, http_error_response
from mission_service.http.events import stream_events
from mission_service.http.proto_json import from_json_body, from_query, to_json
from mission_service.http.signin import add_sign_in
from mission_service.operations import MissionOperations
from missions.errors import InvalidArgumentError
from missions.v1 import mission_service_pb2 as pb

__all__ = ["API_PREFIX", "ROUTES", "Route", "build_app"]

API_PREFIX = "/api/v1"
_SERVICE = pb.DESCRIPTOR.services_by_name["MissionService"]
# A mission or schedule id in a path: anything but the separators of the path and of a custom method.
_ID = "{mission_id:[^/:]+}"
_SCHEDULE_ID = "{schedule_id:[^/:]+}"
_MAX_BODY = web.AppKey("max_body_bytes", int)


@dataclass(frozen=True, slots=True)
class Route:
    """``verb path`` calls the MissionService method ``rpc``. A GET (and a DELETE) takes the request's
    fields as query parameters, a POST as a JSON body; ``{mission_id}`` or ``{schedule_id}`` in the
    path sets that field."""

    verb: str
    path: str
    rpc: str

    @property
    def request_type(self) -> type[Message]:
        kind: type[Message] = getattr(pb, _SERVICE.methods_by_name[self.rpc].input_type.name)
        return kind

    @property
    def method(self) -> str:
        """The gRPC method name, which the role policy (mission_service/auth.py) is keyed by."""
        return f"/{_SERVICE.full_name}/{self.rpc}"


ROUTES = (
    Route("GET", f"{API_PREFIX}/missions", "ListMissions"),
    Route("POST", f"{API_PREFIX}/missions", "SubmitMission"),
    Route("POST", f"{API_PREFIX}/missions:batchSubmit", "SubmitMissions"),
    Route("GET", f"{API_PREFIX}/missions/{_ID}", "GetMission"),
    Route("POST", f"{API_PREFIX}/missions/{_ID}:cancel", "CancelMission"),
    Route("POST", f"{API_PREFIX}/missions/{_ID}:redrive", "RedriveMission"),
    Route("GET", f"{API_PREFIX}/events", "WatchEvents"),
    Route("GET", f"{API_PREFIX}/workers", "ListWorkers"),
    Route("GET", f"{API_PREFIX}/stats", "GetStats"),
    Route("GET", f"{API_PREFIX}/dead-letters", "ListDeadLetters"),
    Route("POST", f"{API_PREFIX}/dead-letters:redrive", "RedriveDeadLetters"),
    Route("POST", f"{API_PREFIX}/dead-letters:purge", "PurgeDeadLetters"),
    Route("GET", f"{API_PREFIX}/schedules", "ListSchedules"),
    Route("POST", f"{API_PREFIX}/schedules", "CreateSchedule"),
    Route("GET", f"{API_PREFIX}/schedules/{_SCHEDULE_ID}", "GetSchedule"),
    Route("POST", f"{API_PREFIX}/schedules/{_SCHEDULE_ID}:pause", "PauseSchedule"),
    Route("POST", f"{API_PREFIX}/schedules/{_SCHEDULE_ID}:resume", "ResumeSchedule"),
    Route("DELETE", f"{API_PREFIX}/schedules/{_SCHEDULE_ID}", "DeleteSchedule"),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _request(request: web.Request, route: Route) -> Any:
    """The request message of ``route`` that ``request`` carries."""
    message: Any
    if request.method in ("GET", "DELETE"):
        message = from_query({name: request.query.getall(name) for name in request.query}, route.request_type)
    else:
        # Only JSON: a cross-site page cannot send it without a CORS preflight, which this API
        # never grants (a form or text/plain POST is refused here).
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="the body must be JSON, sent as Content-Type: application/json")
        message = from_json_body(await request.read(), route.request_type)
    for field, value in request.match_info.items():  # mission_id or schedule_id
        if getattr(message, field) and getattr(message, field) != value:
            raise InvalidArgumentError(field, f"the body names {getattr(message, field)!r}, the path {value!r}")
        setattr(message, field, value)
    return message


def _handler(route: Route, operations: MissionOperations, access: Access) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        call = access.call(request, route.method)  # refused callers learn nothing of the request
        message = await _request(request, route)
        if route.rpc == "WatchEvents":
            return await stream_events(request, operations, message, call)
        response = await getattr(operations, route.rpc)(message, call)
        return web.json_response(to_json(response))

    return handle


def _refusal_message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return f"no route {request.method} {request.path} (the API is under {API_PREFIX}/, docs/http.md)"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"{request.method} is not allowed on {request.path}; allowed: {exc.headers.get('Allow', '')}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return f"the body is larger than the {request.app[_MAX_BODY]} bytes a request may have"
    return exc.text or exc.reason


@web.middleware
async def _answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as an AIP-193 body: the service's errors as the gRPC port's, aiohttp's own too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(exc, _refusal_message(request, exc))
    except Exception as exc:
        return error_response(exc)


def build_app(operations: MissionOperations, access: Access, *, max_body_bytes: int) -> web.Application:
    """The JSON API over ``operations``, its callers identified by ``access``."""
    app = web.Application(middlewares=[_answer_errors], client_max_size=max_body_bytes)
    app[_MAX_BODY] = max_body_bytes
    for route in ROUTES:
        app.router.add_route(route.verb, route.path, _handler(route, operations, access))
    add_sign_in(app, access)
    add_dashboard(app)
    return app
