from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from tests.support import Stack


@pytest.fixture
async def stack(namespace: str, amqp_url: str, tmp_path: pathlib.Path) -> AsyncIterator[Stack]:
    """A per-test namespace with helpers to start the real service and workers; all killed afterwards."""
    stack = Stack(namespace, amqp_url, tmp_path)
    try:
        yield stack
    finally:
        await stack.close()
