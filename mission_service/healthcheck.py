"""`python -m mission_service.healthcheck [HOST:PORT] [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]`.

Exits 0 when the service is SERVING. For container HEALTHCHECKs and exec probes; the
health service needs no token. With TLS on the port, give the CA that signed the
server's certificate (and, with mTLS, a client certificate).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from missions.metadata import DEFAULT_ADDRESS
from missions.options import variable
from missions.tls import TlsConfigError, TlsFiles

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mission_service.healthcheck")
    parser.add_argument("target", nargs="?", default=variable("MISSIONS_SERVER") or DEFAULT_ADDRESS)
    parser.add_argument("--tls-ca", type=pathlib.Path, help="CA of the server's certificate: probe over TLS")
    parser.add_argument("--tls-cert", type=pathlib.Path, help="client certificate, when the port requires mTLS")
    parser.add_argument("--tls-key", type=pathlib.Path, help="key of --tls-cert")
    args = parser.parse_args(argv)
    files = TlsFiles(args.tls_ca, args.tls_cert, args.tls_key)
    try:
        files.validate()
    except TlsConfigError as exc:
        parser.error(str(exc))
    target = args.target
    channel = grpc.secure_channel(target, files.channel_credentials()) if files.ca else grpc.insecure_channel(target)
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as exc:
            print(f"{target}: {exc.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{target}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
