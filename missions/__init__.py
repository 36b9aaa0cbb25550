"""Shared code of the missions services: the missions.v1 contract and its broker topology.

``missions.Client`` and ``missions.AsyncClient`` are the Python client (``missions.client``),
imported on first use so that the services do not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from missions.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import missions.client

        return getattr(missions.client, name)
    raise AttributeError(f"module 'missions' has no attribute {name!r}")
