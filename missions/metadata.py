"""What the missions.v1 contract fixes beyond the protos, shared by the service and its clients
(docs/clients.md): the default address and the gRPC metadata keys."""

from __future__ import annotations

__all__ = ["CORRELATION_KEY", "DEFAULT_ADDRESS", "LAST_SEQUENCE_KEY"]

# Where mission-service listens unless told otherwise, and so where its clients look first.
DEFAULT_ADDRESS = "127.0.0.1:50051"

# Request metadata: the correlation id SubmitMission stamps on every event of the mission.
CORRELATION_KEY = "x-correlation-id"

# Trailing metadata of a WatchEvents stream the server ended early: resume after it.
LAST_SEQUENCE_KEY = "missions-last-sequence"
