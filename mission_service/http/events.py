"""WatchEvents as Server-Sent Events.

Each event is ``id: <sequence>`` and ``data: <the MissionEvent as JSON>``; a heartbeat is an
``event: heartbeat`` whose id is its ``last_sequence``, so the position an EventSource resumes
from (its Last-Event-ID) moves on while nothing matches the filter, as the gRPC heartbeat's
does for the Python client. A ``Last-Event-ID`` header resumes exactly like ``after_sequence``
(and replaces it: a browser reconnects to the same URL). A stream the service ends (too slow,
stopping, an error on the way) ends with ``event: error``, whose data is the error body and
whose id is the position to resume from when it has one: a client resumes with no gap.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from aiohttp import web

from mission_service.http.errors import error_body
from mission_service.http.proto_json import to_json_text
from mission_service.operations import Call, MissionOperations
from missions import errors
from missions.v1 import mission_service_pb2 as pb

__all__ = ["LAST_EVENT_ID", "resume_from", "stream_events"]

LAST_EVENT_ID = "Last-Event-ID"

_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx and the like: pass each event on at once
}


def _frame(data: str, *, sequence: int | None = None, event: str | None = None) -> bytes:
    lines = ([] if sequence is None else [f"id: {sequence}"]) + ([] if event is None else [f"event: {event}"])
    return "\n".join([*lines, f"data: {data}", "", ""]).encode()


def _item_frame(item: pb.WatchEventsResponse) -> bytes:
    if item.HasField("heartbeat"):
        return _frame(to_json_text(item.heartbeat), sequence=item.heartbeat.last_sequence, event="heartbeat")
    return _frame(to_json_text(item.event), sequence=item.event.sequence)


def _error_frame(exc: BaseException) -> bytes:
    _, body = error_body(exc)
    sequence = exc.last_sequence if isinstance(exc, errors.StreamEndedError) else None
    return _frame(json.dumps(body, separators=(",", ":")), sequence=sequence, event="error")


def resume_from(request: web.Request, watch: pb.WatchEventsRequest) -> None:
    """Let ``Last-Event-ID`` set ``watch.after_sequence``."""
    last = request.headers.get(LAST_EVENT_ID)
    if last is None:
        return
    if not last.isdigit() or int(last) >= 2**64:
        raise errors.InvalidArgumentError(LAST_EVENT_ID, f"expected a sequence (an unsigned integer), got {last!r}")
    watch.after_sequence = int(last)


async def _send(response: web.StreamResponse, items: AsyncIterator[pb.WatchEventsResponse]) -> None:
    try:
        async for item in items:
            await response.write(_item_frame(item))
    except OSError:  # the client went away (ConnectionResetError): nothing to tell it
        raise
    except Exception as exc:
        await response.write(_error_frame(exc))


async def stream_events(
    request: web.Request, operations: MissionOperations, watch: pb.WatchEventsRequest, call: Call
) -> web.StreamResponse:
    """Answer ``request`` with the WatchEvents stream of ``watch``; a refused request raises
    before the stream begins (so it gets an HTTP status of its own)."""
    resume_from(request, watch)
    async with operations.WatchEvents(watch, call) as items:
        response = web.StreamResponse(headers=_HEADERS)
        await response.prepare(request)
        # A comment, so that the client sees the stream open before its first event.
        await response.write(b": watching\n\n")
        await _send(response, items)
        await response.write_eof()
        return response
