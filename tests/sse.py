"""A reader of Server-Sent Events (the HTTP API's WatchEvents), for the tests that watch over HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["ServerSentEvent", "read_events"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    id: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


async def read_events(response: aiohttp.ClientResponse) -> AsyncIterator[ServerSentEvent]:
    """The events of an SSE response as an EventSource parses them (comments skipped), until it ends."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
            continue
        if data or fields:
            yield ServerSentEvent(fields.get("event", "message"), fields.get("id"), "\n".join(data))
        fields, data = {}, []
