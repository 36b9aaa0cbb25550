"""The HTTP/JSON face of MissionService (docs/http.md): the same operations, messages, tokens and
errors as the gRPC port, on aiohttp in the service's event loop."""
