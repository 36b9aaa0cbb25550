"""The README's Python walk-through is valid Python, and docs/clients.md shows the same block.

tests/e2e/test_walkthrough_client.py runs it against the real stack.
"""

from __future__ import annotations

from tests.docs_blocks import fenced_block, readme_python_block


def test_the_readmes_python_walk_through_compiles() -> None:
    compile(readme_python_block(), "README.md (From Python)", "exec")


def test_docs_clients_shows_the_readmes_python_walk_through() -> None:
    assert fenced_block("docs/clients.md", "## The Python client", "python") == readme_python_block()
