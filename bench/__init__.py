"""Benchmarks: timing against the real processes and broker (tests assert behaviour, bench measures it).

Run one with ``python -m bench.<name>`` from the repository root, e.g.
``.venv/bin/python -m bench.watch_fanout --help``.
"""

__all__: list[str] = []
