"""Compiles the repository's grpc.testing protos with grpcio-tools into a temporary package.

The generated modules would live at ``grpc/testing/*_pb2.py`` and import each other as
``grpc.testing``, which clashes with grpcio's own ``grpc`` package, so they are generated
into a temporary directory and their cross-imports rewritten to plain module imports. The
messages keep their proto names (``grpc.testing.SimpleRequest``) in the descriptor pool, and
so on the wire.
"""

import atexit
import os
import re
import shutil
import sys
import tempfile

PROTO_FILES = ("empty.proto", "messages.proto", "test.proto")


def default_proto_root():
    """proto/proto of the repository this script lives in."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "proto", "proto"))


def load(proto_root=None):
    """Returns (empty_pb2, messages_pb2, test_pb2, test_pb2_grpc) compiled from proto_root."""
    from grpc_tools import protoc  # imported late: only needed here
    import importlib.resources

    proto_root = proto_root or default_proto_root()
    sources = [os.path.join(proto_root, "grpc", "testing", name) for name in PROTO_FILES]
    for src in sources:
        if not os.path.isfile(src):
            raise SystemExit(f"proto file not found: {src} (pass --proto-root)")
    out = tempfile.mkdtemp(prefix="peer-protos-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *[os.path.relpath(s, proto_root) for s in sources],
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"grpc_tools.protoc failed on {proto_root}")
    generated = os.path.join(out, "grpc", "testing")
    flat = os.path.join(out, "flat")
    os.makedirs(flat)
    for name in os.listdir(generated):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(generated, name), encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"^from grpc\.testing import ", "import ", text, flags=re.M)
        with open(os.path.join(flat, name), "w", encoding="utf-8") as f:
            f.write(text)
    sys.path.insert(0, flat)
    import empty_pb2
    import messages_pb2
    import test_pb2
    import test_pb2_grpc

    return empty_pb2, messages_pb2, test_pb2, test_pb2_grpc
