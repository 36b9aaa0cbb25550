"""`missionctl`: the command-line client of MissionService (synchronous gRPC).

Usage::

    missionctl [--server HOST:PORT] [-o {text,json,jsonl}] [--timeout SECONDS] COMMAND ...

Commands: ``submit`` (``--wait`` follows it with a progress bar), ``get``, ``list``,
``cancel`` and ``watch`` (a live table on a terminal) for missions; ``workers``, ``stats``,
``top`` (a live view of workers, queues and throughput), ``dead-letters`` and ``redrive``
for operators; ``completion bash|zsh`` prints a shell completion script. docs/missionctl.md
is the manual; ``missionctl COMMAND --help`` describes each command.

Settings (``missions/client/_settings.py``, shared with ``missions.Client``): each global
option comes from its flag, else its ``MISSIONS_*`` variable, else the config file
(``$XDG_CONFIG_HOME/missions/missionctl.toml``), else its default. Security
(docs/security.md): ``--tls-ca``/``--tls`` for TLS, ``--tls-cert``/``--tls-key`` for mTLS,
and ``--token-file``/``--token`` for the bearer token.

Output (``output``): ``-o text`` renders with rich, colour only on a terminal without
``NO_COLOR`` (``--color`` overrides); ``-o json`` prints each response as one proto JSON
document per line; ``-o jsonl`` prints one item per line (``{"mission": ...}``,
``{"event": ...}``, ``{"worker": ...}``, ...).

Exit codes:
    0       success, including ``watch`` and ``top`` stopped with Ctrl-C.
    1       ``submit --wait``: the mission did not succeed (FAILED or CANCELLED).
    2       usage error: a bad flag, variable or config file, or an id prefix
            that starts several mission ids.
    3 + N   an RPC failed with gRPC status code N, e.g. DEADLINE_EXCEEDED (4) -> 7,
            NOT_FOUND (5) -> 8, UNAVAILABLE (14) -> 17. ``error: <STATUS>: <details>``
            goes to stderr.
    130     interrupted with Ctrl-C (any command but ``watch`` and ``top``).
    141     stdout's reader went away (``missionctl list | head -1``): nothing on stderr,
            the status of a process stopped by SIGPIPE (128 + 13).

Modules: ``app`` (``main``), ``parser`` (flags), ``service`` (typed calls), ``commands``
(one function per command), ``board`` (the live watch table), ``top``, ``completion``,
``output`` (text, JSON, JSON lines), ``render`` (text views) and ``enums`` (how enum
values are spelled).
"""

from missions.ctl.app import main

__all__ = ["main"]
