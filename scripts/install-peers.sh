#!/usr/bin/env bash
# Installs the independent gRPC peers (grpcio for HTTP/2, aioquic for HTTP/3) that
# client/tests/independent_peers.rs runs against our servers, into a venv at
# ${CARGO_TARGET_DIR:-target}/peers-venv, pinned by scripts/peers-requirements.txt.
# Idempotent: a venv whose stamp matches the requirements and the interpreter is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

target_dir=${CARGO_TARGET_DIR:-$root/target}
case $target_dir in /*) ;; *) target_dir=$root/$target_dir ;; esac
venv=$target_dir/peers-venv
requirements=$root/scripts/peers-requirements.txt
mkdir -p "$target_dir"

# A fresh Debian machine may lack python3 or its venv module; a root shell can add them.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "install-peers: installing python3 and python3-venv with apt-get" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
    else
        echo "install-peers: python3 with the venv module is required" >&2
        exit 1
    fi
fi

# Concurrent runs (two shells, two CI steps) must not build the venv at the same time.
exec 9>"$target_dir/peers-venv.lock"
flock 9

stamp="$(sha256sum "$requirements" | cut -d' ' -f1) $(python3 -c 'import sys; print(sys.version.split()[0])')"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.peers-stamp" 2>/dev/null)" = "$stamp" ] \
    && "$venv/bin/python" -c 'import grpc, grpc_tools.protoc, aioquic, pylsqpack' 2>/dev/null; then
    echo "install-peers: up to date in $venv"
    exit 0
fi

echo "install-peers: creating $venv"
rm -rf "$venv"
python3 -m venv "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$venv/bin/python" -m pip install --quiet --requirement "$requirements"
"$venv/bin/python" -c 'import grpc, grpc_tools.protoc, aioquic, pylsqpack'
echo "$stamp" >"$venv/.peers-stamp"
echo "install-peers: installed $("$venv/bin/python" -m pip freeze | grep -E '^(grpcio|grpcio-tools|aioquic|protobuf)==' | tr '\n' ' ')"
