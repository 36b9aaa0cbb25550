"""gRPC metadata keys of the missions.v1 contract, shared by the service and its clients (docs/clients.md)."""

from __future__ import annotations

__all__ = ["CORRELATION_KEY", "LAST_SEQUENCE_KEY"]

# Request metadata: the correlation id SubmitMission stamps on every event of the mission.
CORRELATION_KEY = "x-correlation-id"

# Trailing metadata of a WatchEvents stream the server ended early: resume after it.
LAST_SEQUENCE_KEY = "missions-last-sequence"
