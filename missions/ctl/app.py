"""missionctl's entry point: parse, resolve the settings, connect, run one command, turn failures into exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

import grpc

from missions import errors
from missions.client import Client, ClientSettings, status_code
from missions.ctl.commands import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_RPC_BASE, EXIT_USAGE, Command
from missions.ctl.output import Output, warn
from missions.ctl.parser import build_parser

__all__ = ["ChannelFactory", "main"]

ChannelFactory = Callable[[str], grpc.Channel]
"""Opens the channel to a HOST:PORT (``Client``'s ``connect``)."""


def _rpc_failure(exc: errors.ServiceError) -> int:
    code = status_code(exc)
    warn(f"error: {code.name}: {exc}")
    for note in getattr(exc, "__notes__", ()):
        warn(f"hint: {note}")
    number: int = code.value[0]
    return EXIT_RPC_BASE + number


def _reader_gone() -> int:
    """Stdout's reader left (``missionctl list | head -1``): stop quietly, as a program killed by
    SIGPIPE would. Stdout then points at /dev/null, so the interpreter's final flush of what is
    still buffered does not fail again (docs.python.org, "Note on SIGPIPE")."""
    with contextlib.suppress(OSError, ValueError):  # a stdout without a file descriptor, as tests capture it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None, *, connect: ChannelFactory | None = None) -> int:
    """Run missionctl with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    Args:
        argv: The arguments, without the program name.
        connect: Opens the channel to a ``HOST:PORT``; tests pass a grpc_testing channel.
            Default: plaintext, or TLS as the --tls* settings say.

    Returns:
        The exit code; the ``missions.ctl`` docstring lists them.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error and 0 after --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "local", None) is not None:  # needs no server, e.g. completion
        code: int = args.local(parser, args)
        return code
    try:
        settings = ClientSettings.from_args(args)
        client = Client(settings=settings, connect=connect)
    except ValueError as exc:
        warn(f"missionctl: error: {exc}")
        return EXIT_USAGE
    command: Command = args.command
    out = Output(settings.output, color=settings.color)
    try:
        with client:
            return command(client, out, args)
    except errors.ServiceError as exc:
        return _rpc_failure(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()
