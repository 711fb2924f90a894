"""Generate the Python gRPC stubs (with .pyi) from protos/, or check that the committed ones are fresh.

Usage: python scripts/gen_protos.py           # regenerate protos/llmmesh/<service>/v1/*_pb2*.py[i]
       python scripts/gen_protos.py --check   # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
# One versioned package per service, its path matching its proto package (llmmesh.store.v1, ...).
PACKAGE_DIRS = sorted(p.parent.relative_to(PROTO_ROOT) for p in PROTO_ROOT.glob("llmmesh/*/v1/*.proto"))
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    """Run protoc over every .proto under protos/llmmesh/*/v1 into out_dir."""
    protos = sorted(
        str(p.relative_to(PROTO_ROOT)) for d in PACKAGE_DIRS for p in (PROTO_ROOT / d).glob("*.proto")
    )
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_files(root: Path) -> set[Path]:
    """The generated stubs under root, relative to it."""
    return {
        d / p.name
        for d in PACKAGE_DIRS
        if (root / d).is_dir()
        for p in (root / d).iterdir()
        if p.name.endswith(GENERATED_SUFFIXES)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args()
    if not args.check:
        for path in generated_files(PROTO_ROOT):
            (PROTO_ROOT / path).unlink()
        generate(PROTO_ROOT)
        print(f"generated {len(generated_files(PROTO_ROOT))} files under {PROTO_ROOT.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh, committed = generated_files(fresh_root), generated_files(PROTO_ROOT)
        stale = sorted(fresh ^ committed)
        stale += sorted(
            p for p in fresh & committed if not filecmp.cmp(fresh_root / p, PROTO_ROOT / p, shallow=False)
        )
    if stale:
        print("stale generated stubs: " + ", ".join(map(str, stale)), file=sys.stderr)
        print("run: python scripts/gen_protos.py", file=sys.stderr)
        return 1
    print("generated stubs are fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
