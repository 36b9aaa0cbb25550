"""The code the README and the docs show, read from them, for the tests that run it as a reader would."""

from __future__ import annotations

import pathlib

__all__ = ["ROOT", "fenced_block", "readme_python_block", "walkthrough_line"]

ROOT = pathlib.Path(__file__).resolve().parents[1]


def fenced_block(document: str, heading: str, language: str) -> str:
    """The first ```` ```language ```` block of the section ``heading`` (a whole line, such as
    ``"### From Python"``) of ``document`` (a path from the repository's root)."""
    text = (ROOT / document).read_text()
    _, found, section = text.partition(f"\n{heading}\n")
    assert found, f"{document} has no heading {heading!r}"
    before, opened, rest = section.partition(f"\n```{language}\n")
    block, closed, _ = rest.partition("\n```\n")
    under = not any(line.startswith("#") for line in before.splitlines())  # no later heading first
    assert opened and closed and under, f"{document}: no {language} block under {heading!r}"
    return f"{block}\n"


def walkthrough_line(containing: str) -> str:
    """The line of the README's missionctl walk-through that contains ``containing``."""
    lines = fenced_block("README.md", "## Walk-through with missionctl", "bash").splitlines()
    found = [line for line in lines if containing in line]
    assert len(found) == 1, f"README's walk-through has {len(found)} lines with {containing!r}"
    return found[0]


def readme_python_block() -> str:
    """The README's walk-through in Python (its "From Python" block)."""
    return fenced_block("README.md", "### From Python", "python")
