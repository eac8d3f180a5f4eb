#!/usr/bin/env bash
# Installs the Prometheus server for server/tests/cli_serve.rs (a real Prometheus scrapes
# `zone-server --metrics` and the test reads back through its HTTP API):
# `apt-get install -y --no-install-recommends prometheus` (Debian ships 2.42).
# Idempotent: does nothing when `prometheus` is already on PATH. Where it cannot install (no
# apt-get, not root) it prints why and exits 0: that test then skips with a printed reason.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
    echo "install-prometheus: $(prometheus --version 2>&1 | head -n 1) already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: apt-get not available; install prometheus yourself" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-prometheus: not root; run \`sudo apt-get install -y prometheus\` yourself" >&2
    exit 0
fi

echo "install-prometheus: installing prometheus with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; }
# A fresh machine may have no package lists yet.
if ! install; then
    if ! { apt-get update -qq && install; }; then
        echo "install-prometheus: apt-get could not install prometheus; its test will skip" >&2
        exit 0
    fi
fi
# The Debian package enables a system service; the test starts its own server.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
echo "install-prometheus: installed $(prometheus --version 2>&1 | head -n 1)"
