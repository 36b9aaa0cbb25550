"""missionctl's entry point: parse, connect, run one command, turn failures into exit codes."""

from __future__ import annotations

import grpc

from missions.ctl.commands import EXIT_INTERRUPTED, EXIT_RPC_BASE, EXIT_USAGE, Command
from missions.ctl.connection import Connection
from missions.ctl.parser import build_parser
from missions.ctl.render import Output, warn
from missions.ctl.service import ChannelFactory, Service

__all__ = ["main"]


def _rpc_failure(exc: grpc.RpcError) -> int:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    warn(f"error: {code.name}: {details}")
    for note in getattr(exc, "__notes__", ()):
        warn(f"hint: {note}")
    number: int = code.value[0]
    return EXIT_RPC_BASE + number


def main(argv: list[str] | None = None, *, connect: ChannelFactory | None = None) -> int:
    """Run missionctl with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    Args:
        argv: The arguments, without the program name.
        connect: Opens the channel to a ``HOST:PORT``; tests pass a grpc_testing channel.
            Default: plaintext, or TLS as the --tls* flags say.

    Returns:
        The exit code; the ``missions.ctl`` docstring lists them.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error and 0 after --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    command: Command = args.command
    out = Output(json_lines=args.output == "json")
    try:
        connection = Connection.from_args(args)
    except ValueError as exc:
        warn(f"missionctl: error: {exc}")
        return EXIT_USAGE
    try:
        with (connect or connection.channel)(args.server) as channel:
            return command(Service(channel, args.timeout, connection.metadata), out, args)
    except grpc.RpcError as exc:
        return _rpc_failure(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
