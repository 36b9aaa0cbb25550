"""Regenerate the committed Python code for proto/missions/v1 (run from anywhere).

CI reruns this and fails when `git diff --exit-code missions/v1` shows a change.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "missions" / "v1"
INIT = '"""Generated code for the missions.v1 contract. Do not edit: run scripts/gen_protos.py."""\n'


def main() -> int:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    for stale in OUT.glob("*_pb2*.py*"):
        stale.unlink()
    include = str(pathlib.Path(protoc.__file__).parent / "_proto")
    # mypy-protobuf's plugins sit next to this interpreter; they emit typed .pyi for the
    # messages and for the gRPC stubs and servicers.
    bindir = pathlib.Path(sys.executable).parent
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={ROOT}",
        f"--mypy_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        f"--mypy_grpc_out={ROOT}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        return int(code)
    (OUT / "__init__.py").write_text(INIT)
    shutil.rmtree(OUT / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
