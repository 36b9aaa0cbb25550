"""`missionctl`: the command-line client of MissionService (synchronous gRPC).

Usage::

    missionctl [--server HOST:PORT] [-o {text,json}] [--timeout SECONDS] COMMAND ...

Commands: ``submit``, ``get``, ``list``, ``cancel`` and ``watch`` for missions; ``workers``,
``stats``, ``dead-letters`` and ``redrive`` for operators; ``missionctl COMMAND --help``
describes each. ``--server`` defaults to ``$MISSIONS_SERVER``, else 127.0.0.1:50051.

Security (docs/security.md): ``--tls-ca PEM`` (or ``--tls`` for the system's CAs) connects
with TLS, ``--tls-cert``/``--tls-key`` present a client certificate (mTLS), and the bearer
token comes from ``$MISSIONS_TOKEN``, ``--token-file`` or ``--token``.

Output: ``-o text`` (the default) renders with rich; colours are off when stdout is not a
terminal or ``NO_COLOR`` is set. ``-o json`` prints each response message in proto JSON
(field names as in the .proto), one compact object per line: ``{"mission": ...}`` for
submit, get, cancel and redrive, ``{"missions": [...], "next_page_token": ...}`` for list
and dead-letters (a single object holding every page with ``--all``), ``{"workers": [...]}``
for workers, the GetStatsResponse for stats and ``{"event": ...}`` per event for watch and
``submit --wait``.

Exit codes:
    0       success, including ``watch`` stopped with Ctrl-C.
    1       ``submit --wait``: the mission did not succeed (FAILED or CANCELLED).
    2       usage error: a bad flag or value, e.g. a --payload that is not a JSON object.
    3 + N   an RPC failed with gRPC status code N, e.g. DEADLINE_EXCEEDED (4) -> 7,
            NOT_FOUND (5) -> 8, UNAVAILABLE (14) -> 17. ``error: <STATUS>: <details>``
            goes to stderr.
    130     interrupted with Ctrl-C (any command but ``watch``).

Modules: ``service`` (typed calls), ``connection`` (TLS and token), ``parser`` (flags), ``commands`` (one function per
command), ``render`` (text and JSON output), ``enums`` (how enum values are spelled) and
``app`` (``main``).
"""

from missions.ctl.app import main

__all__ = ["main"]
